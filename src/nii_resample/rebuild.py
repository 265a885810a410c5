"""Rebuild a per-volume record deleted by hand, from its input and output volumes.

Everything in a record but the job's `seconds` is a property of the two files (and of the
options the volume was resampled with), so a lost record costs a read, not a resample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import RecordNotRebuilt, VolumeError
from .formatting import size_text
from .nifti import fov_corners, read_volume
from .orientation import reorient_volume

REBUILT_REASON = "record rebuilt from the files"


def rebuild_record(in_path, out_path, options: dict) -> dict:
    """The record `volume.resample_volume` wrote for `out_path`, read back from the files.

    `options` are the volume's job options (settings.job_options). `seconds` is left empty
    and `reason` says the record was rebuilt. Raises RecordNotRebuilt naming the problem.
    """
    from .grids import changes_text, own_grid
    from .volume import (
        decide_kind,
        downsamples,
        fixed_grid,
        geometry_columns,
        grid_columns,
        range_columns,
        value_summary,
    )

    in_path, out_path = Path(in_path), Path(out_path)
    try:
        source, target = read_volume(in_path), read_volume(out_path)
    except VolumeError as error:
        raise RecordNotRebuilt(str(error)) from None
    source, orientation = reorient_volume(source, options.get("orientation", "keep"))
    spec = {key: options.get(key) for key in
            ("desired_volume", "desired_spacing", "crop_or_pad", "pad_to_multiple")}
    try:
        grid = fixed_grid(in_path, spec, options.get("reference"), options.get("case_reference"),
                          options.get("orientation", "keep"))
    except VolumeError as error:
        raise RecordNotRebuilt(str(error)) from None
    own = own_grid(source.spatial_shape, source.affine, spec) if grid is None else None
    size, expected = (own.shape, own.affine) if grid is None else (grid.shape, grid.affine)
    check_is_resample_of(source, target, size, expected)
    # The job's options say "kind" (auto: decided from the header and voxels, as the job did).
    label_map, kind_reason = decide_kind(
        source, options.get("kind", "auto"), options.get("kind_reason", "")
    )
    low, high, nonfinite_in, _ = value_summary(source.data)
    new_low, new_high, nonfinite_out, _ = value_summary(target.data)
    # As volume.resample_volume decides it: no blur before nearest, none for label maps.
    antialias = bool(options["antialias"]) and options["interpolation"] != "nearest"
    record = {
        "input_path": str(in_path),
        "output_path": str(out_path),
        "status": "ok",
        "reason": REBUILT_REASON,
        "kind": "label_map" if label_map else "image",
        "kind_reason": kind_reason,
        "engine": options["engine"],
        "interpolation": options["label_interpolation"] if label_map else options["interpolation"],
        "antialias": antialias and not label_map and downsamples(source, own, grid),
        **grid_columns(source, grid),
        "orientation": orientation,
        "crop_or_pad": changes_text(own.changes) if own is not None else "",
        **geometry_columns(source, target.data.shape, expected),
        **range_columns(target.intensity_scaling, (low, high), (new_low, new_high)),
        "nonfinite_in": nonfinite_in,
        "nonfinite_out": nonfinite_out,
        "seconds": "",
    }
    return record


def check_is_resample_of(source, target, desired_volume, expected) -> None:
    """The output must be the input on the target grid (`expected`: its affine): same field
    of view (each corner to 1e-6 of the coordinates' size: NIfTI stores float32), size,
    pixel type and extra axes."""
    name = (f"{target.path.name} is not {source.path.name} resampled to "
            f"{size_text(desired_volume)}")
    if tuple(target.spatial_shape) != tuple(int(n) for n in desired_volume):
        raise RecordNotRebuilt(f"{name}: it has {size_text(target.data.shape)} voxels")
    if target.data.dtype != source.data.dtype or target.data.shape[3:] != source.data.shape[3:]:
        raise RecordNotRebuilt(f"{name}: its pixel type or 4th axis differ")
    corners = fov_corners(desired_volume)
    wanted, found = corners @ expected.T, corners @ np.asarray(target.affine, float).T
    scale = max(1.0, float(np.abs(wanted).max()))
    distance = float(np.abs(wanted - found).max())
    if distance > 1e-6 * scale:
        raise RecordNotRebuilt(f"{name}: its field of view is {distance:.3g} mm away")

