"""Memory a resample job needs, from the input's header alone (for `mem_mb` at planning time).

A cluster kills a job that uses more than it asked for, so the request must cover the job's
real peak for every path a volume can take: image (fast or itk engine), label map (volume
preserving, linear arg-max or nearest), 4-D series, non-finite values. The coefficients below are bytes per
voxel, fitted on measured peaks (docs/benchmarks.md, "Memory per job") with a margin;
tests/test_memory.py measures real jobs against this estimate.
"""

from __future__ import annotations

import math
from pathlib import Path

MEGABYTE = 1024 * 1024
# Interpreter, numpy, nibabel, scipy (and SimpleITK for the itk engine) once imported:
# measured 50 MiB (fast), 73 MiB (label maps), 192 MiB (itk) for a tiny volume.
BASE_MB = {"fast": 120, "itk": 260}
# The itk engine holds float64 copies of the whole input (the blurred frame, SimpleITK's
# image and its B-spline coefficients): bytes per input voxel, on top of the stored data.
ITK_BYTES_PER_INPUT_VOXEL = 26
# Fast engine: float32 intermediates after the first (most shrinking) pass.
FAST_BYTES_PER_INPUT_VOXEL = 2
# Output side of an image: the float32 result, the stored-type array and its encoded bytes.
IMAGE_BYTES_PER_OUTPUT_VOXEL = 8  # + 2 x itemsize
# Label maps (linear arg-max): the result, the best and the total share (float32), and one
# label's share interpolated in-plane (in_plane, below); the rest is done slab by slab.
LABEL_BYTES_PER_OUTPUT_VOXEL = 12  # + itemsize
# ... plus the slab-by-slab temporaries (labels.SLAB_VOXELS voxels at up to ~24 bytes each).
LABEL_SCRATCH_MB = 120
# Volume-preserving labels hold the result and the field-of-view mask for the whole output,
# and solve it in slabs of labels.SOLVE_VOXELS voxels: each slab's shares (8 bytes a voxel),
# its candidates and the solver's arrays, ~60 bytes a solved voxel at most (measured: 14
# labels that each span the whole volume, 8-voxel blocks, up- and downsampled).
VOLUME_PRESERVING_BYTES_PER_OUTPUT_VOXEL = 1  # + itemsize
VOLUME_PRESERVING_BYTES_PER_SOLVED_VOXEL = 60
# Non-finite voxels (normalised interpolation): the finite mask and the zero-filled copy of
# the frame (float32) and their resampled pair.
NONFINITE_BYTES_PER_INPUT_VOXEL = 8
NONFINITE_BYTES_PER_OUTPUT_VOXEL = 8
# Label maps onto a given grid (a rotated reference): the volume-keeping solver's arrays for
# the whole output (measured 790 MiB peak for 160x160x100 -> 300x300x200, 14 labels
# spanning the volume; tests/test_memory.py).
ONTO_GRID_LABEL_BYTES_PER_OUTPUT_VOXEL = 40
# A gzip stream of NIfTI data rarely compresses below 1/5; used when the header is unreadable.
UNREADABLE_GZIP_RATIO = 5


def estimate_mem_mb(
    shape,
    itemsize: int,
    desired_volume,
    *,
    engine: str = "fast",
    kind: str = "auto",
    label_interpolation: str = "volume_preserving",
    floating: bool = False,
    file_bytes: int = 0,
    attempt: int = 1,
    reorients: bool = False,
    onto_grid: bool = False,
) -> int:
    """MiB a job needs for a volume of `shape` (3-D or more; axes past the third are frames)
    stored with `itemsize` bytes a voxel, resampled to `desired_volume`.

    `kind` is "image", "label_map" or "auto" (decided in the job from the content: the
    larger of the two is asked for); `floating` adds the non-finite path's working set;
    `reorients` (an `orientation` other than keep) the reordered copy of the input, beside
    the stored one while it is made (and all along in the API's workers, which keep the
    volume read for every grid); `shape` is then the new orientation's. Each retry
    (`attempt`) asks for proportionally more.
    """
    voxels_in = math.prod(int(n) for n in shape[:3])
    frames = math.prod(max(int(n), 1) for n in shape[3:])
    voxels_out = math.prod(int(n) for n in desired_volume)
    # The decompressed voxels stay for the whole job; while reading, the file's bytes too.
    stored = itemsize * voxels_in * frames
    per_input = ITK_BYTES_PER_INPUT_VOXEL if engine == "itk" else FAST_BYTES_PER_INPUT_VOXEL
    image = (
        stored
        + per_input * voxels_in
        + (IMAGE_BYTES_PER_OUTPUT_VOXEL + 2 * itemsize) * voxels_out * frames
    )
    if floating:
        image += (
            NONFINITE_BYTES_PER_INPUT_VOXEL * voxels_in
            + NONFINITE_BYTES_PER_OUTPUT_VOXEL * voxels_out
        )
    working = image
    if kind != "image" and label_interpolation != "nearest":
        from .labels import SOLVE_VOXELS

        in_plane = 4 * int(desired_volume[0]) * int(desired_volume[1]) * int(shape[2])
        if label_interpolation == "volume_preserving":
            output = (VOLUME_PRESERVING_BYTES_PER_OUTPUT_VOXEL + itemsize) * voxels_out
            output += VOLUME_PRESERVING_BYTES_PER_SOLVED_VOXEL * min(voxels_out, SOLVE_VOXELS)
            if onto_grid:  # the general (rotated-grid) path solves the output in one piece
                output += ONTO_GRID_LABEL_BYTES_PER_OUTPUT_VOXEL * voxels_out
        else:
            output = (LABEL_BYTES_PER_OUTPUT_VOXEL + itemsize) * voxels_out
        label = (
            stored
            + in_plane
            + output
            + itemsize * voxels_out * frames
            + LABEL_SCRATCH_MB * MEGABYTE
        )
        working = label if kind == "label_map" else max(image, label)
    total = file_bytes + working + (stored if reorients else 0)
    base = BASE_MB["itk" if engine == "itk" and kind != "label_map" else "fast"]
    return int(attempt * (base + total / MEGABYTE))


def estimate_job_mem_mb(path, options: dict, attempt: int = 1) -> int:
    """The memory request (MB) of a job with these options (settings.job_options) on the
    input at `path`: its header is read once, for both the voxels it writes
    (ongrid.planned_size) and its own size; never raises."""
    from .ongrid import planned_size, reoriented_header

    try:
        header = reoriented_header(path, options.get("orientation", "keep"))
    except Exception as problem:  # sized from the file; the job will say why
        header = problem
    size = planned_size(path, options, header=header)
    return estimate_mem_mb_for_file(path, size, options, attempt, header=header)


def estimate_mem_mb_for_file(
    path, desired_volume, options: dict, attempt: int = 1, header=None
) -> int:
    """estimate_mem_mb for the file at `path` with a job's options (settings.job_options);
    never raises: an unreadable header (the job will say why) is sized from the file.
    `header`: already read and reoriented (ongrid.reoriented_header), or the exception
    reading it raised; None: read it here."""
    from .ongrid import reoriented_header

    path = Path(path)
    orientation = options.get("orientation", "keep")
    try:
        file_bytes = path.stat().st_size
    except OSError:
        file_bytes = 0
    try:
        if header is None:
            header = reoriented_header(path, orientation)
        if isinstance(header, Exception):
            raise header
        shape = [int(n) for n in header.get_data_shape()]
        dtype = header.get_data_dtype()
        itemsize, floating = dtype.itemsize, dtype.kind == "f"
        if len(shape) < 3:
            shape += [1] * (3 - len(shape))
    except Exception:
        shape, itemsize, floating = [UNREADABLE_GZIP_RATIO * file_bytes // 2, 1, 1], 2, False
    # Onto a given grid (nii_resample.ongrid) images go through SimpleITK on float64
    # copies of the input: the itk engine's working set.
    given_grid = options.get("reference") or options.get("case_reference")
    return estimate_mem_mb(
        shape,
        itemsize,
        desired_volume,
        engine="itk" if given_grid else options.get("engine", "fast"),
        kind=options.get("kind", "label_map" if options.get("label_map") else "auto"),
        label_interpolation=options.get("label_interpolation", "volume_preserving"),
        floating=floating,
        file_bytes=file_bytes,
        attempt=attempt,
        reorients=orientation != "keep",
        onto_grid=bool(given_grid),
    )
