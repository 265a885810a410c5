"""Resample one NIfTI volume onto a grid of `desired_volume` voxels with the same field of view."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .antialias import antialias_sigmas, gaussian_blur, shrinks
from .engine import grid_origin
from .grids import changes_text, own_grid, size_ratios
from .errors import VolumeError
from .formatting import exact_text, number_text, seconds_since, size_text
from .labels import detect_label_map, resample_label_map
from .settings import ENGINES, INTERPOLATIONS, KINDS, LABEL_INTERPOLATIONS, parse_choice
from .files import remove_stale_partials
from .nifti import Volume, itk_geometry, read_volume, write_volume
from .ongrid import (
    case_grid,
    check_overlap,
    grid_offset_mm,
    index_map,
    itk_index_image,
    reference_grid,
    resample_image_onto,
    step_ratios,
)
from .orientation import parse_orientation, reorient_volume


def resample_with_itk(
    frame: np.ndarray, desired_volume, interpolation: str, threads: int, steps=None
) -> np.ndarray:
    """Reference path: SimpleITK's own Resample, on the voxel-index grid.

    The field-of-view-preserving transform is a pure per-axis scaling of voxel indices
    (nifti.resampled_affine), whatever the spacing, origin and direction, so it is run in
    index space: unit spacing, zero origin, identity direction in; spacing f = old/new size
    and origin (f - 1) / 2 out (with `steps`, a target spacing: that spacing, centred;
    engine.grid_origin). The samples are the same as on the physical grid (to ~1e-12
    voxel), but nearest-neighbour ties (exact .5 positions) no longer depend on how the
    physical coordinates happen to round: the fast engine decides them the same way.
    """
    import SimpleITK as sitk

    image, interpolator = itk_index_image(frame, interpolation, threads)
    grid = [
        grid_origin(n_in, int(n_out), step)
        for n_in, n_out, step in zip(frame.shape[:3], desired_volume, steps or [None] * 3)
    ]
    resampled = sitk.Resample(
        image,
        [int(n) for n in desired_volume],
        sitk.Transform(),
        interpolator,
        [origin for origin, _ in grid],
        [spacing for _, spacing in grid],
        np.eye(3).ravel().tolist(),
        0.0,
        sitk.sitkFloat64,
    )
    return sitk.GetArrayViewFromImage(resampled).T.copy(order="F")


def resample_with_fast_engine(
    frame: np.ndarray,
    desired_volume,
    interpolation: str,
    threads: int,
    sigmas=None,
    precision=None,
    steps=None,
) -> np.ndarray:
    from .engine import resample_array

    if precision is None:
        precision = working_precision(frame.dtype)
    return resample_array(
        frame,
        tuple(desired_volume),
        interpolation,
        precision=precision,
        threads=threads,
        antialias_sigmas=sigmas,
        scanline_axis=0,  # nibabel's x, ITK's scanline
        steps=steps,
    )


def working_precision(dtype: np.dtype):
    """The fast engine's arithmetic type for data of `dtype`."""
    return np.float64 if dtype == np.float64 else np.float32


def to_stored_type(resampled: np.ndarray, low, high, dtype: np.dtype) -> np.ndarray:
    """Clamp to the input's range (B-spline overshoots), round integers to nearest, cast."""
    np.clip(resampled, low, high, out=resampled)
    if dtype.kind in "iu":
        np.rint(resampled, out=resampled)
    return resampled.astype(dtype, copy=False)


def value_summary(data: np.ndarray):
    """(min, max of the finite values, number of NaN/inf voxels, finite mask or None when
    every voxel is finite), from one pass of isfinite (integers: none at all)."""
    if data.dtype.kind != "f":
        return data.min(), data.max(), 0, None
    finite = np.isfinite(data)
    nonfinite = int(data.size - np.count_nonzero(finite))
    if nonfinite == 0:
        return data.min(), data.max(), 0, None
    if nonfinite == data.size:
        return float("nan"), float("nan"), nonfinite, finite
    # masked reductions: 10-20x faster than copying data[finite]
    low = np.min(data, where=finite, initial=np.inf)
    return low, np.max(data, where=finite, initial=-np.inf), nonfinite, finite


def label_values(path: Path, frame: np.ndarray, why: str = "matched label_maps") -> np.ndarray:
    """A label map's values as integers; float-typed maps must hold whole numbers."""
    if frame.dtype.kind in "iu":
        return frame
    if not np.all(np.isfinite(frame)) or not np.array_equal(frame, np.round(frame)):
        raise VolumeError(
            f"{path.name}: {why} but holds non-integer values; "
            "label maps must contain whole-number labels"
        )
    return frame.astype(np.int64)


def decide_kind(volume: Volume, kind: str, kind_reason: str) -> tuple[bool, str]:
    """(label map?, why) for the volume: `kind` as given, or for "auto" from its NIfTI intent
    code and its voxels (labels.detect_label_map: a few ms, done on the data just read)."""
    if kind == "auto":
        return detect_label_map(volume.header, volume.data)
    return kind == "label_map", kind_reason or f"given as {kind}"


def resample_frame(
    volume: Volume, frame: np.ndarray, desired_volume, options: dict, known=None
) -> np.ndarray:
    """One 3-D frame onto the target grid, in the stored type of the input (clamped to the
    frame's own finite range). `known`: the frame's value_summary when the caller has it."""
    dtype = volume.data.dtype
    if options["label_map"]:
        labels = label_values(volume.path, frame, options["label_why"])
        method = options["label_interpolation"]
        if method != "nearest":
            return resample_label_map(labels, desired_volume, options["steps"], method).astype(dtype)
        options = {**options, "interpolation": "nearest", "antialias": False}
        frame = labels
    sigmas = (
        antialias_sigmas(frame.shape, desired_volume, options["steps"])
        if options["antialias"]
        else (0.0,) * 3
    )
    low, high, _, finite = known if known is not None else value_summary(frame)
    if finite is None:
        resampled = interpolate(frame, desired_volume, options, sigmas)
    else:
        resampled = interpolate_missing(frame, finite, desired_volume, options, sigmas)
    return to_stored_type(resampled, low, high, dtype)


def interpolate(frame, desired_volume, options, sigmas, precision=None) -> np.ndarray:
    """`frame` on the target grid, unclamped floats, with the options' engine and interpolation.

    The same Gaussian prefilter for both engines (they differ only in the interpolation): the
    fast engine folds it into its per-axis passes (no full-size float copies); the itk
    reference blurs the whole frame first with scipy.
    """
    if options["engine"] == "fast":
        return resample_with_fast_engine(
            frame,
            desired_volume,
            options["interpolation"],
            options["threads"],
            sigmas if any(sigmas) else None,
            precision,
            options.get("steps"),
        )
    if any(sigmas):
        frame = gaussian_blur(frame, sigmas, np.float64)
    return resample_with_itk(
        frame, desired_volume, options["interpolation"], options["threads"], options.get("steps")
    )


def interpolate_missing(frame, finite, desired_volume, options, sigmas) -> np.ndarray:
    """Normalised interpolation: NaN/inf voxels are missing data, not values.

    The values (missing set to 0) and the finite mask go through exactly the same operator;
    their ratio is the interpolation of the finite neighbours alone. Where the resampled mask
    is under 0.5 the output voxel is mostly missing and becomes NaN. Elsewhere the divisor is
    >= 0.5, so nothing blows up; what B-spline over/undershoot is left, the caller's clamp to
    the finite input range removes.
    """
    values = np.where(finite, frame, np.zeros((), frame.dtype))
    precision = working_precision(frame.dtype)
    if options["engine"] == "fast":
        weights_in = finite  # bool: the engine casts blocks to `precision` as it goes
    else:
        weights_in = finite.astype(values.dtype)  # SimpleITK has no boolean pixel type
    resampled = interpolate(values, desired_volume, options, sigmas, precision)
    del values
    weights = interpolate(weights_in, desired_volume, options, sigmas, precision)
    known = weights >= 0.5
    np.divide(resampled, weights, out=resampled, where=known)
    resampled[~known] = np.nan
    return resampled


def resample_frame_onto(volume: Volume, frame: np.ndarray, grid, mapping, options: dict,
                        known=None) -> np.ndarray:
    """One 3-D frame onto a given grid in world coordinates (nii_resample.ongrid), in the
    input's stored type: label maps label-wise (outside the input's field of view 0), images
    interpolated (outside: the frame's minimum, a CT's air), clamped to the frame's range."""
    dtype = volume.data.dtype
    if options["label_map"]:
        from .labels import resample_labels

        labels = label_values(volume.path, frame, options["label_why"])
        method = options["label_interpolation"]
        return resample_labels(labels, grid.shape, mapping, method, outside=0).astype(dtype)
    low, high, _, finite = known if known is not None else value_summary(frame)
    resampled = resample_image_onto(frame, finite, grid.shape, mapping, options, low)
    return to_stored_type(resampled, low, high, dtype)


def padding(volume: Volume, stored_low, pad_value=None):
    """What padded image voxels hold, as a stored value: the input's minimum (a CT's air,
    an MRI's background), or `pad_value` (physical, the input's scaling undone)."""
    if pad_value is None:
        return stored_low
    slope, inter = volume.intensity_scaling
    value = (float(pad_value) - inter) / slope
    dtype = volume.data.dtype
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        value = np.rint(value)
        if not info.min <= value <= info.max:  # clipping would silently change it
            low, high = sorted((info.min * slope + inter, info.max * slope + inter))
            raise VolumeError(
                f"{volume.path.name}: pad_value {pad_value:g} cannot be stored in its "
                f"{dtype} voxels (with its scaling they hold {low:g} to {high:g})"
            )
    return value


def fixed_grid(in_path: Path, spec: dict, reference, case_reference,
               orientation: str = "keep"):
    """The given grid the volume must land on (nii_resample.ongrid), or None for its own
    (`spec`: the grid options, grids.own_grid)."""
    if reference is not None:
        return reference_grid(reference)
    if case_reference is None or Path(case_reference).resolve() == in_path.resolve():
        return None
    try:
        return case_grid(case_reference, spec, orientation)
    except VolumeError as error:
        raise VolumeError(f"{in_path.name}: its case image {error}") from None


def downsamples(volume: Volume, own, grid) -> bool:
    """Whether some axis of `volume` shrinks onto its output grid (`own`, grids.own_grid,
    when `grid` is None, else the fixed `grid`): the input voxels per output voxel that
    its anti-aliasing blur takes (volume.resample_frame, ongrid.resample_image_onto).
    The manifest's `antialias` column, in the job's record and in a rebuilt one."""
    if grid is None:
        ratios = size_ratios(volume.spatial_shape, own.inner_shape, own.steps)
    else:
        ratios = step_ratios(index_map(volume.affine, grid.affine))
    return shrinks(ratios)


def grid_columns(volume: Volume, grid) -> dict:
    """Which grid the volume took, and how far its own grid was from that one's source."""
    if grid is None:
        return {"target_grid": "own", "grid_offset_mm": ""}
    if grid.source_affine is not None:  # a case: the image's input grid
        other = (grid.source_affine, grid.source_shape)
    else:
        other = (grid.affine, grid.shape)
    offset = grid_offset_mm(volume.affine, volume.spatial_shape, *other)
    return {"target_grid": grid.source, "grid_offset_mm": float(number_text(offset))}


def geometry_columns(volume: Volume, new_shape, new_affine) -> dict:
    """The manifest's columns on the two grids (records.RECORD_COLUMNS), shared with the
    records rebuilt from the files (nii_resample.rebuild). `volume`: the input once
    reoriented, so that before and after compare axis by axis."""
    old, new = itk_geometry(volume.affine), itk_geometry(new_affine)
    return {
        "pixel_type": str(volume.data.dtype),
        "original_size": size_text(volume.data.shape),
        "original_spacing": exact_text(old["spacing"]),
        "original_origin": exact_text(old["origin"]),
        "direction": exact_text(old["direction"].ravel()),
        "header_geometry": volume.header_geometry,
        "new_size": size_text(new_shape),
        "new_spacing": exact_text(new["spacing"]),
        "new_origin": exact_text(new["origin"]),
    }


def range_columns(scaling, before, after) -> dict:
    """min/max before and after as physical values: stored values with `scaling` (slope,
    intercept: the input's) applied (the manifest's and the restore manifest's columns)."""
    slope, inter = scaling
    return {
        "min_before": float(before[0]) * slope + inter,
        "max_before": float(before[1]) * slope + inter,
        "min_after": float(after[0]) * slope + inter,
        "max_after": float(after[1]) * slope + inter,
    }


def resample_volume(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    desired_volume=None,
    *,
    desired_spacing=None,
    engine: str = "fast",
    interpolation: str = "bspline",
    antialias: bool = True,
    label_map: bool = False,
    kind: str | None = None,
    kind_reason: str = "",
    label_interpolation: str = "volume_preserving",
    compression_level: int = 1,
    threads: int = 1,
    before_commit=None,
    volume: Volume | None = None,
    orientation: str = "keep",
    reference=None,
    case_reference=None,
    crop_or_pad=None,
    pad_to_multiple: int = 1,
    pad_value=None,
) -> dict:
    """Resample `in_path` to `desired_volume` = (X, Y, Z) voxels, or to `desired_spacing`
    (mm per axis), and write `out_path` atomically.

    desired_volume: new spacing = old spacing x old size / new size; the origin moves by
    D (new - old spacing) / 2 so that the outer corners of the field of view stay put.
    desired_spacing: max(1, round(n s / t)) voxels of exactly that spacing, the centre of
    the field of view kept (nii_resample.grids). Images use
    `interpolation` (clamped to the input range, integers rounded to nearest), with a
    Gaussian anti-aliasing prefilter on shrinking axes when `antialias`; label maps use
    `label_interpolation` and never get a label that was not in the input. `kind` is
    "label_map", "image" or "auto" (decided from the header and the voxels; the manifest's
    `kind_reason` says why); without it, `label_map` chooses. A 4-D series is
    resampled frame by frame, keeping its 4th axis. Returns the manifest row; raises
    VolumeError with a one-line reason naming the file. `before_commit(row)`, if given, is
    called with the row once the output is complete, just before it is renamed into place
    (the workflow writes the row there, so a volume never exists without its row).
    `volume`: `in_path` already read (nifti.read_volume), to resample it onto several grids
    with one read and decode (the Python API's grids). `orientation`: "keep" or an axis
    code such as "RAS": the voxels are first reordered and flipped (never interpolated) to
    it (nii_resample.orientation); X, Y, Z then name that orientation's axes.
    `reference`: a volume whose grid (shape, affine) the output takes exactly, instead of
    desired_volume/desired_spacing. `case_reference`: the case's image; the output takes
    that image's output grid (on desired_volume/desired_spacing), computed from its header
    alone, bit for bit as the image's own job does (nii_resample.ongrid).
    `crop_or_pad` (X, Y, Z) and `pad_to_multiple` (with desired_spacing): the grid is then
    centre-cropped or padded to that shape on the same lattice (grids.own_grid): only the
    kept voxels are resampled; padding holds the input's minimum (`pad_value`, a physical
    value, for images), 0 for label maps.
    """
    started = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    parse_choice("engine", engine, ENGINES)
    parse_choice("interpolation", interpolation, INTERPOLATIONS)
    parse_choice("label_interpolation", label_interpolation, LABEL_INTERPOLATIONS)
    orientation = parse_orientation(orientation)
    kind = parse_choice("kind", kind or ("label_map" if label_map else "image"), KINDS)
    if (desired_volume is None) == (desired_spacing is None) and reference is None:
        raise ValueError("give exactly one of desired_volume and desired_spacing")
    options = {
        "engine": engine,
        "interpolation": interpolation,
        # Nearest neighbour promises input values only: a blur before it would break that.
        "antialias": bool(antialias) and interpolation != "nearest",
        "label_interpolation": label_interpolation,
        "threads": threads,
    }
    remove_stale_partials(out_path)
    if volume is None:
        volume = read_volume(in_path)
    volume, orientation_text = reorient_volume(volume, orientation)
    stored_low, stored_high, nonfinite_in, finite = value_summary(volume.data)
    if not np.isfinite(stored_low):
        raise VolumeError(f"{in_path.name}: every voxel is NaN or infinite")
    spec = {"desired_volume": desired_volume, "desired_spacing": desired_spacing,
            "crop_or_pad": crop_or_pad, "pad_to_multiple": pad_to_multiple}
    grid = fixed_grid(in_path, spec, reference, case_reference, orientation)
    if grid is None:
        own = own_grid(volume.spatial_shape, volume.affine, spec)
        desired_volume, options["steps"] = own.inner_shape, own.steps
    else:
        own, mapping = None, index_map(volume.affine, grid.affine)
        check_overlap(in_path, volume.spatial_shape, mapping, grid)
        desired_volume, options["steps"] = grid.shape, None
    label_map, kind_reason = decide_kind(volume, kind, kind_reason)
    options["label_map"] = label_map
    # Only a forced or intent-coded map can hold fractions (content detection refuses them).
    intent = kind_reason.startswith("header intent")
    options["label_why"] = f"has {kind_reason}" if intent else "matched label_maps"
    frames = volume.data.reshape(volume.spatial_shape + (-1,), order="F")
    if grid is None and own.kept is not None:  # cropped or padded: padding first
        fill = 0 if label_map else padding(volume, stored_low, pad_value)
        resampled = np.full(own.shape + (frames.shape[3],), fill, volume.data.dtype, order="F")
        box = own.kept + (slice(None),)
    else:
        resampled = np.empty(desired_volume + (frames.shape[3],), volume.data.dtype, order="F")
        box = (slice(None),) * 4
    known = None  # a series: each frame its own range and mask
    if frames.shape[3] == 1:
        mask = None if finite is None else finite.reshape(frames.shape, order="F")[..., 0]
        known = (stored_low, stored_high, nonfinite_in, mask)
    del finite
    for index in range(frames.shape[3]):
        if grid is None:
            resampled[box[:3] + (index,)] = resample_frame(
                volume, frames[..., index], desired_volume, options, known
            )
        else:
            resampled[..., index] = resample_frame_onto(
                volume, frames[..., index], grid, mapping, options, known
            )
    # Keep the axes beyond the third (time, or a trailing singleton) as the input had them.
    out_shape = own.shape if grid is None else grid.shape
    resampled = resampled.reshape(tuple(out_shape) + volume.data.shape[3:], order="F")
    new_affine = own.affine if grid is None else grid.affine
    new_low, new_high, nonfinite_out, _ = value_summary(resampled)
    row = {
        "input_path": str(in_path),
        "output_path": str(out_path),
        "status": "ok",
        "reason": "",
        "kind": "label_map" if label_map else "image",
        "kind_reason": kind_reason,
        "engine": engine,
        "interpolation": label_interpolation if label_map else interpolation,
        "antialias": options["antialias"] and not label_map and downsamples(volume, own, grid),
        **grid_columns(volume, grid),
        "crop_or_pad": changes_text(own.changes) if grid is None else "",
        "orientation": orientation_text,
        **geometry_columns(volume, resampled.shape, new_affine),
        **range_columns(volume.intensity_scaling, (stored_low, stored_high),
                        (new_low, new_high)),
        "nonfinite_in": nonfinite_in,
        "nonfinite_out": nonfinite_out,
        "seconds": None,  # at the end of the write, below
    }

    def finish_row():
        row["seconds"] = seconds_since(started)
        if before_commit is not None:
            before_commit(row)

    geometry = None if grid is None else grid.geometry
    write_volume(
        out_path, volume.header, resampled, new_affine, compression_level, finish_row,
        geometry=geometry,
    )
    return row
