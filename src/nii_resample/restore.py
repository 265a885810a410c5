"""The way back: predictions made on the resampled grid, restored onto the original scans' grids.

Each prediction is matched to a manifest row by name (`match_predictions`), then resampled
in world coordinates onto the exact grid of that row's input (nii_resample.ongrid), with
the input's header (codes, units, intent, description) and the prediction's data type and
values (`restore_volume`). Label maps go label-wise (0 outside the prediction's field of
view), images and probability maps by B-spline, clamped to their range (outside: their
minimum).
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from pathlib import Path

import numpy as np

from .api import ResamplingFailed
from .errors import VolumeError
from .formatting import numbers_text, seconds_since, size_text

# The restore manifest's columns (README.md, "Back to the original grid").
RESTORE_COLUMNS = (
    "prediction",
    "input_path",
    "output_path",
    "status",
    "reason",
    "matched_by",
    "kind",
    "kind_reason",
    "pixel_type",
    "prediction_size",
    "prediction_spacing",
    "restored_size",
    "restored_spacing",
    "outside_voxels",
    "min_before",
    "max_before",
    "min_after",
    "max_after",
    "seconds",
)
MANIFEST_NAME = "restore_manifest.tsv"
CHANNEL = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")
# How a name matched, best first: the output's own name is unique; a case image (channel
# stripped) beats its label map, whose prediction it is (both share a grid in a case).
MATCH_ORDER = ("output name", "case name", "input name")


def stem(name: str) -> str:
    """A NIfTI file name without `.nii.gz` / `.nii`."""
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def restored_name(input_path) -> str:
    """The restored file's name: the input's, always gzipped (`ct.nii` -> `ct.nii.gz`)."""
    return stem(Path(input_path).name) + ".nii.gz"


def _row_keys(row: dict) -> list[tuple[str, str, int]]:
    """(name, how, channel) under which a manifest row can be found."""
    input_stem = stem(Path(row["input_path"]).name)
    keys = [(stem(Path(row["output_path"]).name), "output name", 0),
            (input_stem, "input name", 0)]
    channel = CHANNEL.fullmatch(input_stem)
    if channel:
        keys.append((channel["case"], "case name", int(channel["channel"])))
    return keys


def match_predictions(names, rows) -> dict:
    """{prediction file name: (manifest row, how it matched) or a one-line error}, from the
    ok rows of a manifest. Rows of one input (several grids) count as one candidate."""
    index: dict[str, list] = {}
    for row in rows:
        if row.get("status") == "ok":
            for key, how, channel in _row_keys(row):
                index.setdefault(key, []).append((MATCH_ORDER.index(how), channel, row, how))
    matches = {}
    for name in names:
        found = index.get(stem(name), [])
        if not found:
            matches[name] = f"{name}: no ok row of the manifest has this case, input or output name"
            continue
        best = min(found, key=lambda item: item[:2])
        inputs = {item[2]["input_path"] for item in found if item[:2] == best[:2]}
        if len(inputs) > 1:
            listed = ", ".join(sorted(inputs))
            matches[name] = f"{name}: matches several inputs of the manifest ({listed})"
        else:
            matches[name] = (best[2], best[3])
    return matches


def find_input(path: str, manifest: Path) -> Path:
    """A manifest's input path: as written (relative to the working folder), else relative
    to the manifest's folder or its parent (a manifest moved with its dataset)."""
    for candidate in (Path(path), manifest.parent / path, manifest.parent.parent / path):
        if candidate.is_file():
            return candidate
    return Path(path)


def is_declared_label_map(name: str, patterns) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _holds(dtype: np.dtype, low, high) -> bool:
    if dtype.kind not in "iu":
        return dtype.kind == "f"
    info = np.iinfo(dtype)
    return info.min <= low and high <= info.max


def given_kind(name: str, label_maps, row: dict, how: str) -> dict:
    """restore_volume's kind options: a label_maps pattern, or for a resampled output itself
    (the round trip) the kind its manifest row says; else None, decided from the file."""
    if is_declared_label_map(name, label_maps):
        return {"label_map": True, "kind_reason": "matched label_maps"}
    if how == "output name" and row.get("kind") in ("label_map", "image"):
        return {"label_map": row["kind"] == "label_map",
                "kind_reason": f"the manifest's kind of {name}"}
    return {"label_map": None}


def restored_type(label_map: bool, prediction_dtype, values_dtype, input_dtype, low,
                  high) -> np.dtype:
    """The restored file's storage type: for integer predictions and label maps the input's
    integer type when it holds every predicted value (and 0, the background), else the
    prediction's own (or, for labels it cannot hold after its scaling, their integer type)."""
    prediction_dtype, input_dtype = np.dtype(prediction_dtype), np.dtype(input_dtype)
    if not (label_map or prediction_dtype.kind in "iu"):
        return prediction_dtype
    if label_map:
        low, high = min(low, 0), max(high, 0)
    if input_dtype.kind in "iu" and _holds(input_dtype, low, high):
        return input_dtype
    return prediction_dtype if _holds(prediction_dtype, low, high) else np.dtype(values_dtype)


def prediction_kind(prediction) -> tuple[bool, str]:
    """(label map?, why) for a prediction of unknown kind: a label intent, or integers with at
    most MAX_LABELS values (networks write segmentations as integers, images as floats),
    else by content (labels.detect_label_map: whole-number floats in uniform regions)."""
    from .labels import MAX_LABELS, detect_label_map, value_counts

    data = prediction.data
    if data.dtype.kind in "iu" and int(prediction.header["intent_code"]) == 0:
        counted = value_counts(data, MAX_LABELS)
        if counted is not None:
            return True, f"integers, {counted[0].size} distinct values"
        return False, f"integers, more than {MAX_LABELS} distinct values (image)"
    return detect_label_map(prediction.header, data)


def restored_header(original, dtype, prediction, label_map: bool):
    """The original input's header (codes, units, intent, description) for the prediction's
    values: its type, and its scaling for images (labels: none, values are exact labels)."""
    from .labels import LABEL_INTENTS

    header = original.copy()
    header.set_data_dtype(dtype)
    if label_map:
        header.set_slope_inter(None, None)
    else:
        header["scl_slope"] = prediction.header["scl_slope"]
        header["scl_inter"] = prediction.header["scl_inter"]
    header["cal_min"], header["cal_max"] = 0, 0  # the input's display window is not ours
    if not label_map and int(header["intent_code"]) in LABEL_INTENTS:
        # Probabilities restored onto a label map's grid: a label intent would make every
        # reader (this one too) take them for labels.
        header.set_intent("none")
    return header


def _label_frames(prediction, label_why: str) -> np.ndarray:
    """A label prediction's values as exact labels (its own scaling applied, if any)."""
    from .volume import label_values

    slope, inter = prediction.intensity_scaling
    data = prediction.data
    if (slope, inter) != (1.0, 0.0):
        data = data * slope + inter
    return label_values(prediction.path, data, label_why)


def restore_volume(
    prediction_path,
    input_path,
    out_path,
    *,
    label_map: bool | None = None,
    kind_reason: str = "",
    label_interpolation: str | None = None,
    interpolation: str | None = None,
    antialias: bool | None = None,
    compression_level: int | None = None,
    threads: int = 1,
) -> dict:
    """Resample `prediction_path` onto the grid of `input_path` (its original scan) and
    write `out_path` atomically with the input's header; returns the restore manifest row.
    `label_map` None decides from the header and the voxels (`prediction_kind`);
    `kind_reason` says why it was given.
    Raises VolumeError with a one-line reason naming the file."""
    from .nifti import itk_geometry, read_volume, write_volume
    from .ongrid import check_overlap, index_map, reference_grid, sample_image
    from .options import DEFAULTS
    from .volume import range_columns, resample_frame_onto, value_summary

    started = time.perf_counter()
    prediction_path, out_path = Path(prediction_path), Path(out_path)
    prediction = read_volume(prediction_path)
    try:
        grid = reference_grid(input_path)
    except VolumeError as error:
        raise VolumeError(f"{prediction_path.name}: its original input {error}") from None
    grid.source = f"original input: {input_path}"
    mapping = index_map(prediction.affine, grid.affine)
    check_overlap(prediction_path, prediction.spatial_shape, mapping, grid)
    if label_map is None:
        label_map, kind_reason = prediction_kind(prediction)
    else:
        kind_reason = kind_reason or ("given as label_map" if label_map else "given as image")
    options = {
        "label_map": label_map,
        "label_why": kind_reason if label_map else "",
        "label_interpolation": label_interpolation or DEFAULTS["label_interpolation"],
        "interpolation": interpolation or DEFAULTS["interpolation"],
        "antialias": DEFAULTS["antialias"] if antialias is None else bool(antialias),
        "threads": threads,
    }
    data = _label_frames(prediction, f"is a label map ({kind_reason})") if label_map \
        else prediction.data
    low, high, _, _ = value_summary(data)
    if not np.isfinite(low):
        raise VolumeError(f"{prediction_path.name}: every voxel is NaN or infinite")
    dtype = restored_type(label_map, prediction.data.dtype, data.dtype,
                          grid.geometry.get_data_dtype(), low, high)
    source = prediction if data is prediction.data else _with_data(prediction, data)
    frames = data.reshape(prediction.spatial_shape + (-1,), order="F")
    restored = np.empty(grid.shape + (frames.shape[3],), dtype, order="F")
    for index in range(frames.shape[3]):
        restored[..., index] = resample_frame_onto(source, frames[..., index], grid, mapping,
                                                   options)
    restored = restored.reshape(grid.shape + prediction.data.shape[3:], order="F")
    inside = sample_image(np.ones(prediction.spatial_shape), grid.shape, mapping, "nearest",
                          1, 0.0)
    new_low, new_high, _, _ = value_summary(restored)
    old, new = itk_geometry(prediction.affine), itk_geometry(grid.affine)
    row = {
        "prediction": str(prediction_path),
        "input_path": str(input_path),
        "output_path": str(out_path),
        "status": "ok",
        "reason": "",
        "kind": "label_map" if label_map else "image",
        "kind_reason": kind_reason,
        "pixel_type": str(np.dtype(dtype)),
        "prediction_size": size_text(prediction.data.shape),
        "prediction_spacing": numbers_text(old["spacing"]),
        "restored_size": size_text(restored.shape),
        "restored_spacing": numbers_text(new["spacing"]),
        "outside_voxels": int(inside.size - np.count_nonzero(inside)),
        # Label values are exact labels (their scaling applied by _label_frames).
        **range_columns((1.0, 0.0) if label_map else prediction.intensity_scaling,
                        (low, high), (new_low, new_high)),
    }
    header = restored_header(grid.geometry, dtype, prediction, label_map)
    level = DEFAULTS["compression_level"] if compression_level is None else compression_level
    write_volume(out_path, header, restored, grid.affine, level, geometry=grid.geometry)
    row["seconds"] = seconds_since(started)
    return row


def _with_data(prediction, data):
    """The prediction with other voxels (resample_frame_onto types its output from them)."""
    from dataclasses import replace

    return replace(prediction, data=data)


def run_restore_job(job: dict) -> list[dict]:
    """A worker's restore job ({"task": "restore", "in_path": prediction, "input": original,
    "outputs": [{"out_path", "options"}]}): its row, or a failed row with a one-line reason."""
    from .api_worker import remove_output
    from .errors import failure_reason

    [output] = job["outputs"]
    try:
        row = restore_volume(job["in_path"], job["input"], output["out_path"],
                             **output["options"])
    except Exception as error:  # every failure must end as a one-line reason
        remove_output(output["out_path"])
        row = failed_restore(job["in_path"], job["input"], output["out_path"],
                             failure_reason(Path(job["in_path"]).name, error))
    return [row]


def failed_restore(prediction, input_path, out_path, reason: str) -> dict:
    return {"prediction": str(prediction), "input_path": str(input_path or ""),
            "output_path": str(out_path or ""), "status": "failed", "reason": reason}


def prediction_files(folder: Path, output: Path) -> list[Path]:
    """The NIfTI files under `folder` (sub-folders too: a case-mode output is one folder per
    volume), leaving out `output` if it lies inside, and hidden files and folders (atomic
    writes' temporary files, the workflow's `.decoded` copies)."""
    output = output.resolve()
    found = []
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.name.endswith((".nii.gz", ".nii")) and not hidden and path.is_file():
            if output not in path.resolve().parents:
                found.append(path)
    return found


def plan_restore(predictions: Path, output: Path, manifest: Path, label_maps) -> tuple:
    """(jobs for the worker processes, failed rows of the files that cannot be matched)."""
    from .records import read_rows

    rows = read_rows(manifest)
    if rows and "input_path" not in rows[0]:
        raise ValueError(f"{manifest.name}: not a manifest of nii_resample (no input_path column)")
    files = prediction_files(predictions, output)
    if not files:
        raise FileNotFoundError(f"{predictions}: no .nii.gz or .nii predictions found")
    by_name = {}
    for path in files:
        by_name.setdefault(path.name, []).append(path)
    matches = match_predictions(by_name, rows)
    jobs, failures, targets = [], [], {}
    for name, paths in by_name.items():
        match = matches[name]
        for path in paths:
            if len(paths) > 1:
                failures.append(failed_restore(path, "", "", f"{name}: {len(paths)} predictions "
                                               "of this name in sub-folders; one is expected"))
            elif isinstance(match, str):
                failures.append(failed_restore(path, "", "", match))
            else:
                row, how = match
                input_path = find_input(row["input_path"], manifest)
                out_path = output / restored_name(input_path)
                targets.setdefault(str(out_path), []).append(path)
                jobs.append({"task": "restore", "in_path": str(path), "input": str(input_path),
                             "matched_by": how, "outputs": [{
                                 "out_path": str(out_path), "grid": "",
                                 "options": given_kind(name, label_maps, row, how)}]})
    clashing = {out for out, paths in targets.items() if len(paths) > 1}
    for job in [job for job in jobs if job["outputs"][0]["out_path"] in clashing]:
        jobs.remove(job)
        others = [p.name for p in targets[job["outputs"][0]["out_path"]]
                  if str(p) != job["in_path"]]
        failures.append(failed_restore(
            job["in_path"], job["input"], "", f"{Path(job['in_path']).name}: restores onto the "
            f"same input as {', '.join(others)} ({Path(job['input']).name}); give one of them"))
    return jobs, failures


def write_restore_manifest(path: Path, rows: list[dict]) -> None:
    from .files import atomic_write_bytes
    from .records import tsv_bytes

    atomic_write_bytes(path, tsv_bytes(RESTORE_COLUMNS, rows))


def check_patterns(label_maps) -> list[str]:
    if isinstance(label_maps, (str, os.PathLike)) or not all(
        isinstance(p, str) and p for p in label_maps
    ):
        raise ValueError(f"label_maps must be a list of glob patterns, got {label_maps!r}")
    return list(label_maps)


def restore_dataset(predictions, output, manifest, *, label_maps=(), cores: int | None = None,
                    progress: bool | None = None) -> list[str]:
    """Restore every prediction in `predictions` (`.nii.gz`/`.nii`, sub-folders too) onto the
    original grid of the input it is matched to in `manifest` (a manifest.tsv of
    nii_resample), as `output/<input file name>` (`.nii.gz`), with
    `output/restore_manifest.tsv`. Files matching a `label_maps` glob pattern are label maps;
    the others are decided from their header and voxels. Returns the written paths, in
    prediction order. Raises FileNotFoundError for a missing folder or manifest or no
    predictions, ValueError for bad arguments, and ResamplingFailed (RestoreFailed) after
    all the others are written if some cannot be matched or restored."""
    from .api import progress_bar, run_in_workers, worker_count

    predictions, output, manifest = Path(predictions), Path(output), Path(manifest)
    label_maps = check_patterns(label_maps)
    workers = worker_count(cores)
    if not predictions.is_dir():
        raise FileNotFoundError(f"{predictions}: no such folder of predictions")
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such manifest")
    if output.resolve() == predictions.resolve():
        raise ValueError(f"{output}: the output folder must not be the predictions' folder")
    jobs, failures = plan_restore(predictions, output, manifest, label_maps)
    output.mkdir(parents=True, exist_ok=True)
    rows = list(failures)
    if jobs:
        workers = min(workers, len(jobs))
        # Few predictions (often one or two at a time): the spare cores go to SimpleITK.
        threads = max(1, (cores or os.cpu_count() or 1) // workers)
        for job in jobs:
            job["outputs"][0]["options"]["threads"] = threads
        with progress_bar(len(jobs), progress) as bar:
            bar.set_description("Restoring")
            answers = run_in_workers(jobs, workers, bar.update)
        by_prediction = {job["in_path"]: job for job in jobs}
        for row in answers:
            if "prediction" not in row:  # its worker died: a manifest's failed row
                job = by_prediction[row["input_path"]]
                row = failed_restore(job["in_path"], job["input"], row["output_path"],
                                     row["reason"])
            row["matched_by"] = by_prediction[row["prediction"]]["matched_by"]
            rows.append(row)
    rows.sort(key=lambda row: row["prediction"])
    write_restore_manifest(output / MANIFEST_NAME, rows)
    written = [row["output_path"] for row in rows if row["status"] == "ok"]
    failed = [row for row in rows if row["status"] != "ok"]
    if failed:
        raise RestoreFailed(failed, written)
    return written


class RestoreFailed(ResamplingFailed):
    """Some predictions could not be restored (the others were); `failures` lists why."""

    def __init__(self, failures: list[dict], written: list[str]):
        super().__init__(failures, written)
        lines = [f"{len(failures)} prediction(s) could not be restored:"]
        lines += [f"  {failure['reason']}" for failure in failures]
        self.args = ("\n".join(lines),)
