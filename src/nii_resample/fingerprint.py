"""A target spacing chosen from the dataset itself (`desired_spacing: median` or `nnunet`).

Read from headers only, before any job: each volume's voxel spacing and size on its three
spatial axes (a 4-D series: the spatial ones; with `orientation`, in that orientation).
Case members (label maps, other channels) take their image's grid and do not vote.

`nnunet` is nnU-Net v2's planner rule (ExperimentPlanner.determine_fullres_target_spacing):
the per-axis median, except on the axis of the largest median spacing when it is
anisotropic (median spacing over 3x the others' largest, and median size under 1/3 of the
others' smallest): that axis takes the 10th percentile of its spacings, and, if that is
finer than the others' largest median spacing, that spacing + 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .formatting import numbers_text

ANISOTROPY = 3.0  # nnU-Net's ANISO_THRESHOLD
RESULT_FILE = "dataset.json"


def header_spacings(paths, orientation: str = "keep") -> tuple[np.ndarray, np.ndarray]:
    """(spacings, sizes): N x 3 arrays from the volumes' checked headers."""
    from .nifti import checked_header, itk_geometry

    spacings, sizes = [], []
    for path in paths:
        header = checked_header(path)
        if orientation != "keep":
            from .orientation import reorient_header

            header = reorient_header(header, orientation)[0]
        spacings.append(itk_geometry(header.get_best_affine())["spacing"])
        sizes.append([int(n) for n in header.get_data_shape()[:3]])
    return np.asarray(spacings, np.float64), np.asarray(sizes, np.float64)


def target_spacing(rule: str, spacings: np.ndarray, sizes: np.ndarray) -> list[float]:
    """The spacing `rule` chooses for volumes of these spacings and sizes (N x 3)."""
    target = np.percentile(spacings, 50, axis=0)
    if rule == "median":
        return [float(v) for v in target]
    size = np.percentile(sizes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [axis for axis in range(3) if axis != worst]
    coarsest_other = max(target[axis] for axis in others)
    anisotropic_spacing = target[worst] > ANISOTROPY * coarsest_other
    anisotropic_voxels = size[worst] * ANISOTROPY < min(size[axis] for axis in others)
    if anisotropic_spacing and anisotropic_voxels:
        chosen = float(np.percentile(spacings[:, worst], 10))
        if chosen < coarsest_other:
            chosen = max(coarsest_other, chosen) + 1e-5
        target[worst] = chosen
    return [float(v) for v in target]


def statistics(spacings: np.ndarray, sizes: np.ndarray) -> dict:
    """Per-axis statistics written to dataset.json (what the rule saw)."""
    def per_axis(values, q):
        return [float(v) for v in np.percentile(values, q, axis=0)]

    return {
        "volumes": int(len(spacings)),
        "spacing_median": per_axis(spacings, 50),
        "spacing_min": [float(v) for v in spacings.min(axis=0)],
        "spacing_max": [float(v) for v in spacings.max(axis=0)],
        "spacing_p10": per_axis(spacings, 10),
        "spacing_p90": per_axis(spacings, 90),
        "size_median": per_axis(sizes, 50),
    }


def resolve_spacing_rules(name, config: dict, grids: list[dict], volumes: dict,
                          cases: dict) -> dict:
    """Replace each grid's `desired_spacing: median|nnunet` by the spacing it chooses for
    this dataset (in place; labels say it); returns {grid label: fingerprint} for
    dataset.json. Case members do not vote: they take their image's grid."""
    from .settings import SHAPE_KEYS, spacing_label

    fingerprints, seen = {}, None  # the headers are read once for every rule grid
    for grid in grids:
        rule = grid.get("desired_spacing")
        if not isinstance(rule, str):
            continue
        if seen is None:
            voters = [path for key, path in volumes.items() if key not in cases]
            try:
                seen = header_spacings(voters, config.get("orientation", "keep"))
            except Exception as error:  # VolumeError: a header that cannot vote
                where = f"dataset {name!r}: " if name else ""
                raise ConfigError(
                    f"{where}desired_spacing {rule} needs every volume's header: {error}"
                ) from None
        spacings, sizes = seen
        spacing = target_spacing(rule, spacings, sizes)
        grid["desired_spacing"] = spacing
        shaping = {k: grid[k] for k in SHAPE_KEYS if k in grid}
        text = spacing_label(spacing, shaping)
        grid["label"] = f"{grid['name']}: {rule} {text}" if grid.get("name") else f"{rule} {text}"
        fingerprints[grid["label"]] = {
            "grid": grid.get("name"),
            "rule": rule,
            "spacing": spacing,
            "orientation": config.get("orientation", "keep"),
            **statistics(spacings, sizes),
        }
    return fingerprints


def changed_spacings(output_path, fingerprints: dict) -> list[str]:
    """One line per grid whose chosen spacing differs from the one in output_path's
    dataset.json (volumes were added or removed): its volumes are redone."""
    path = Path(output_path) / RESULT_FILE
    try:
        before = json.loads(path.read_text(encoding="utf-8"))["grids"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    lines = []
    for fingerprint in fingerprints.values():
        old = next((g for g in before if g.get("grid") == fingerprint["grid"]
                    and g.get("rule") == fingerprint["rule"]), None)
        if old and old.get("spacing") != fingerprint["spacing"]:
            new_text = numbers_text(fingerprint["spacing"], separator=", ")
            old_text = numbers_text(old["spacing"], separator=", ")
            lines.append(
                f"{fingerprint['rule']} spacing of {output_path} is now {new_text} mm "
                f"({fingerprint['volumes']} volumes; {old_text} mm in {path}): every volume "
                "of that grid is redone"
            )
    return lines


def dataset_json(fingerprints: dict) -> bytes:
    """output_path/dataset.json: the spacing each rule chose, and what it saw."""
    document = {"grids": list(fingerprints.values())}
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")
