"""What a run does: its datasets, each with its grids and volumes, and where every output goes.

Shared by the workflow (workflow/rules/common.smk) and the Python API. Every problem is one
sentence (ConfigError, InputFolderError) raised before any job runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ConfigError, InputFolderError
from .formatting import numbers_text
from .settings import (
    RESAMPLED_SUFFIX,
    VOLUME_SUFFIXES,
    check_output_location,
    discover_volumes,
    resolve_grids,
    resampled_path,
    volume_prefix,
)


def dataset_configs(config: dict) -> dict:
    """{dataset name: checked config}; a config without `datasets` is one dataset, None."""
    return dict(config["datasets"]) if config.get("datasets") else {None: config}


def _inside(path: Path, folders) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def discover_tree(nii_folder, excluded=()) -> dict[str, Path]:
    """{relative key: path} for every NIfTI volume in `nii_folder` and its sub-folders; the
    key is the relative path without suffix ("sub-01/anat/sub-01_T1w"). Hidden folders and
    files, `excluded` folders (every dataset's output_path) and *_resampled.nii.gz outputs
    are never inputs."""
    root = Path(nii_folder)
    discover_volumes(root) if not root.is_dir() else None  # its one-line refusal
    excluded = [Path(p).resolve() for p in excluded]
    volumes: dict[str, Path] = {}
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        subfolders[:] = sorted(
            name for name in subfolders
            if not name.startswith(".") and not _inside((here / name).resolve(), excluded)
        )
        for name in sorted(files):
            prefix = volume_prefix(name)
            if prefix is None or name.startswith(".") or name.endswith(RESAMPLED_SUFFIX):
                continue
            key = (here / prefix).relative_to(root).as_posix()
            if key in volumes:
                both = sorted([str(volumes[key]), str(here / name)])
                raise InputFolderError(
                    f"{both[0]} and {both[1]} would be written to the same output; keep one"
                )
            volumes[key] = here / name
    if not volumes:
        discover_volumes(root)  # says what the folder holds instead
    return dict(sorted(volumes.items()))


# --- Output layout: the one home of every path the workflow writes ---------------------
# A grid's files are under its root (grid["root"]), a volume's named by its key (its
# relative path without suffix); each function takes a concrete key, or the rules' pattern
# of keys ("{prefix}", recursive: "{rel}{prefix}", Snakemake wildcards).


def output_file(grid: dict, key: str, saving_mode: str) -> Path:
    """A volume's output: the usual layout under the grid's folder, in its relative folder."""
    folder, _, prefix = key.rpartition("/")
    return resampled_path(Path(grid["root"]) / folder, prefix, saving_mode)


def output_pattern(root: str, saving_mode: str, recursive: bool) -> str:
    """output_file as a Snakemake pattern ({rel}: the folder below nii_folder, empty or
    ending in "/"; {prefix}: the volume's name), from the same layout function."""
    below = resampled_path(".", "{prefix}", saving_mode).as_posix()
    return f"{root}/{'{rel}' if recursive else ''}{below}"


def record_file(root: str, key: str) -> str:
    """A volume's record (nii_resample.records), written by its job."""
    return f"{root}/records/{key}.tsv"


def failure_record_file(root: str, key: str) -> str:
    """A failed volume's one-line reason."""
    return f"{root}/records/failed/{key}.tsv"


def log_file(root: str, rule: str, key: str) -> str:
    return f"{root}/logs/{rule}/{key}.log"


def qc_picture(root: str, key: str) -> str:
    """A volume's QC picture (`qc: true`)."""
    return f"{root}/qc/{key}.png"


def dataset_qc_pictures(out: str) -> dict[str, str]:
    """A dataset's QC overview and manifest table (`qc: true`), under its output_path."""
    return {
        "overview": f"{out}/qc/dataset/overview.png",
        "table": f"{out}/qc/dataset/manifest.html",
    }


def _check_rule_names(configs: dict) -> None:
    """Rule names carry dataset and grid names with other characters as "_" (common.smk):
    two names that differ only there would define one rule twice."""
    seen: dict[str, str] = {}
    for name, dataset in configs.items():
        for grid in dataset.get("grids") or {None: None}:
            label = " ".join(repr(n) for n in (name, grid) if n)
            key = "_".join(re.sub(r"\W", "_", n) for n in (name, grid) if n)
            if key in seen:
                raise ConfigError(
                    f"{seen[key]} and {label} differ only in characters other than letters, "
                    "digits and _ (their rules would share one name); rename one"
                )
            seen[key] = label


def dataset_cases(volumes: dict, setting) -> dict:
    """{member key: (its case image's path, role, why)} (nii_resample.cases)."""
    from .cases import find_cases

    return {
        key: (volumes[image], role, why)
        for key, (image, role, why) in find_cases(volumes, setting).items()
    }


def fingerprint_lines(planned: dict) -> list[str]:
    """What a dataset's spacing rules chose, one line per grid, and whether that changed
    since the last run (nii_resample.fingerprint)."""
    if not planned["fingerprints"]:
        return []
    from .fingerprint import changed_spacings

    out = planned["config"]["output_path"]
    lines = [
        f"{out}: desired_spacing {f['rule']} = "
        f"{numbers_text(f['spacing'], separator=', ')} mm ({f['volumes']} volumes' headers)"
        for f in planned["fingerprints"].values()
    ]
    return lines + changed_spacings(out, planned["fingerprints"])


def plan_run(config: dict) -> list[dict]:
    """Every dataset of a checked config: {"name", "config", "grids", "volumes", "cases",
    "fingerprints"} (cases: dataset_cases; fingerprints: the spacing rules' results, the
    grids then hold the chosen spacing). Refuses
    two datasets sharing an output_path and two (dataset, grid, volume) with one output."""
    configs = dataset_configs(config)
    outputs = [Path(c["output_path"]).resolve() for c in configs.values()]
    seen: dict[Path, str] = {}
    for name, out in zip(configs, outputs):
        if out in seen:
            raise ConfigError(
                f"datasets {seen[out]!r} and {name!r} both write to output_path {str(out)!r} "
                "(their manifests would overwrite each other); give each its own output_path"
            )
        seen[out] = name
    _check_rule_names(configs)
    plan, written = [], {}
    for name, dataset in configs.items():
        where = f"dataset {name!r}: " if name else ""
        try:
            if dataset["recursive"]:
                volumes = discover_tree(dataset["nii_folder"], outputs)
            else:
                volumes = discover_volumes(dataset["nii_folder"])
            check_output_location(dataset)
        except (ConfigError, InputFolderError) as problem:
            raise type(problem)(f"{where}{problem}") from None
        grids = resolve_grids(dataset)
        for grid in grids:
            for key, path in volumes.items():
                out = output_file(grid, key, dataset["saving_mode"]).resolve()
                source = f"{path}" + (f" (dataset {name!r})" if name else "")
                if out in written:
                    raise ConfigError(
                        f"{written[out]} and {source} would both be written to {out}; "
                        "give them different output paths"
                    )
                written[out] = source
        cases = dataset_cases(volumes, dataset["cases"])
        fingerprints = {}
        if any(isinstance(grid.get("desired_spacing"), str) for grid in grids):
            from .fingerprint import resolve_spacing_rules

            fingerprints = resolve_spacing_rules(name, dataset, grids, volumes, cases)
        plan.append(
            {"name": name, "config": dataset, "grids": grids, "volumes": volumes,
             "cases": cases, "fingerprints": fingerprints}
        )
    return plan


__all__ = [
    "plan_run", "discover_tree", "output_file", "output_pattern", "record_file",
    "failure_record_file", "log_file", "qc_picture", "dataset_qc_pictures",
    "dataset_configs", "VOLUME_SUFFIXES",
]
