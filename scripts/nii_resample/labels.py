"""Label maps: per-label linear interpolation and arg-max, so no label value is ever invented.

B-spline (or plain linear) interpolation of label values averages neighbouring labels into
values that mean something else (between 3 "liver" and 5 "kidney" lies 4 "spleen").
Instead each label's indicator is interpolated on its own and every output voxel takes the
label with the largest interpolated share, as nnU-Net does with one-hot segmentations.
Smoother than nearest neighbour, and each label's volume is kept closely (tests measure it).
Each label only costs work inside its bounding box, so atlases with 100+ labels stay fast.
"""

from __future__ import annotations

import numpy as np


def sample_positions(n_in: int, n_out: int, step: float | None = None) -> np.ndarray:
    """Input continuous indices sampled by the output grid (the field of view kept, or
    `step` input voxels apart around the centre: engine.grid_origin)."""
    from .engine import grid_positions

    return grid_positions(n_in, n_out, False, step)


def _linear_along(block: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of `block` along `axis` at `positions` (clamped at the edges)."""
    n = block.shape[axis]
    positions = np.clip(positions, 0.0, n - 1)
    lower = np.floor(positions).astype(np.intp)
    upper = np.minimum(lower + 1, n - 1)
    weight = (positions - lower).astype(np.float32)
    shape = [1] * block.ndim
    shape[axis] = -1
    weight = weight.reshape(shape)
    low = np.take(block, lower, axis=axis)
    high = np.take(block, upper, axis=axis)
    return low + weight * (high - low)


# Voxels per slab when scanning a whole label map: the scans' temporaries (8 bytes a voxel)
# stay at ~32 MB instead of growing with the input (a 400x400x240 map: 300 MB more).
SLAB_VOXELS = 1 << 22


def _slabs(labels: np.ndarray):
    """(offset along the last axis, view) for slabs of about SLAB_VOXELS voxels."""
    per_plane = max(1, int(np.prod(labels.shape[:-1])))
    step = max(1, SLAB_VOXELS // per_plane)
    for start in range(0, labels.shape[-1], step):
        yield start, labels[..., start : start + step]


def _label_counts(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label values present and their voxel counts (bincount when the range is small: O(n))."""
    low, high = int(labels.min()), int(labels.max())
    if high - low < 1 << 24:
        counts = np.zeros(high - low + 1, np.int64)
        for _, slab in _slabs(labels):
            # Widen before subtracting: int16 - min would wrap around for ranges over 32767.
            shifted = slab.astype(np.intp).ravel(order="K") - low
            counts += np.bincount(shifted, minlength=counts.size)
        values = np.flatnonzero(counts)
        return (values + low).astype(labels.dtype), counts[values]
    return np.unique(labels, return_counts=True)


def _merge_boxes(box, other, offset: int):
    """Union of two bounding boxes; `other` is shifted by `offset` along the last axis."""
    other = other[:-1] + (slice(other[-1].start + offset, other[-1].stop + offset),)
    if box is None:
        return other
    return tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(box, other))


def _bounding_boxes(labels: np.ndarray, values) -> dict:
    """{label: tuple of slices} of each label's bounding box; positive labels slab by slab."""
    boxes = {}
    positive = [value for value in values if value > 0]
    if positive and int(labels.max()) < 1 << 24:
        from scipy.ndimage import find_objects

        merged = dict.fromkeys(positive)
        for offset, slab in _slabs(labels):
            found = find_objects(np.maximum(slab, 0).astype(np.int32), int(labels.max()))
            for value in positive:
                if found[int(value) - 1] is not None:
                    merged[value] = _merge_boxes(merged[value], found[int(value) - 1], offset)
        boxes = {value: box for value, box in merged.items() if box is not None}
    for value in values:
        if value not in boxes:  # zero or negative labels, or huge label values
            where = np.nonzero(labels == value)
            boxes[value] = tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)
    return boxes


def _in_plane_share(box: np.ndarray, value, positions) -> np.ndarray:
    """The share of `value` in `box` (a label map's 3-D block) interpolated along the first
    two axes at `positions[0]`, `positions[1]`, slab by slab of the last axis, so the float
    copy of the block never exists whole (a label's box can be most of the volume)."""
    in_plane = np.empty((positions[0].size, positions[1].size, box.shape[2]), np.float32)
    for offset, slab in _slabs(box):
        share = (slab == value).astype(np.float32)
        share = _linear_along(_linear_along(share, 0, positions[0]), 1, positions[1])
        in_plane[:, :, offset : offset + slab.shape[2]] = share
    return in_plane


def _output_slabs(shape) -> list[slice]:
    """Slices of the last axis of an output block, about SLAB_VOXELS voxels each."""
    step = max(1, SLAB_VOXELS // max(1, shape[0] * shape[1]))
    return [slice(start, min(start + step, shape[2])) for start in range(0, shape[2], step)]


def resample_label_map(labels: np.ndarray, new_shape, steps=None) -> np.ndarray:
    """Resample a 3-D integer label map onto `new_shape` (`steps`: a target spacing's grid,
    nii_resample.grids); the output keeps the input's type."""
    old_shape = labels.shape
    new_shape = tuple(int(n) for n in new_shape)
    positions = [
        sample_positions(n_in, n_out, step)
        for n_in, n_out, step in zip(old_shape, new_shape, steps or [None] * 3)
    ]
    values, counts = _label_counts(labels)
    # The most frequent label (the background) is never interpolated itself: its share is
    # 1 - the sum of the others, so it costs nothing however large it is.
    background = values[int(np.argmax(counts))]
    others = [value for value in values if value != background]
    boxes = _bounding_boxes(labels, others) if others else {}
    result = np.full(new_shape, background, dtype=labels.dtype)
    best_share = np.zeros(new_shape, dtype=np.float32)
    other_total = np.zeros(new_shape, dtype=np.float32)
    for value in others:
        box_in, box_out = [], []
        for axis, bounds in enumerate(boxes[value]):
            # One voxel of margin: the linear kernel's support.
            first, last = bounds.start - 1, bounds.stop
            pos = positions[axis]
            selected = np.flatnonzero((pos > first) & (pos < last))
            if selected.size == 0:
                break
            lo_in, hi_in = max(first, 0), min(last, old_shape[axis] - 1) + 1
            box_in.append(slice(lo_in, hi_in))
            box_out.append((selected[0], selected[-1] + 1, pos[selected] - lo_in))
        else:
            in_plane = _in_plane_share(labels[tuple(box_in)], value, [p for *_, p in box_out])
            (x0, x1, _), (y0, y1, _), (z0, z1, z_positions) = box_out
            # The last axis, output slab by slab: no output-sized float temporaries.
            for part in _output_slabs((x1 - x0, y1 - y0, z1 - z0)):
                share = _linear_along(in_plane, 2, z_positions[part])
                window = (slice(x0, x1), slice(y0, y1), slice(z0 + part.start, z0 + part.stop))
                wins = share > best_share[window]
                result[window][wins] = value
                best_share[window][wins] = share[wins]
                other_total[window] += share
    # Where the background's share is at least the best other label's, it wins back.
    for part in _output_slabs(new_shape):
        window = (slice(None), slice(None), part)
        result[window][(1.0 - other_total[window]) >= best_share[window]] = background
    return result


# --- Telling label maps from images by header and content (docs/label_detection.md) -------

# NIfTI-1 intent codes whose voxels are label indices (nifti1.h).
LABEL_INTENTS = {1002: "NIFTI_INTENT_LABEL", 1003: "NIFTI_INTENT_NEURONAME"}
# A label map has at most this many distinct values (atlases: up to ~1000 parcels).
MAX_LABELS = 2000
# ... and at least this share of its non-background voxels inside uniform regions (equal to
# their next neighbours along all three axes). Measured: label maps >= 0.41 (a 4 mm tissue
# map, thin ribs), images <= 0.26 (noise-free MRI at 20 grey levels; real scans <= 0.14).
MIN_UNIFORM = 0.33
# Neighbour statistics use up to this many pairs of adjacent slices (cost bound).
SAMPLE_SLICE_PAIRS = 16


def sample_slices(frame: np.ndarray) -> np.ndarray:
    """Evenly spaced pairs of adjacent slices along the 3rd axis (the whole frame if small),
    so that every neighbour along all three axes can be compared at a bounded cost."""
    n = frame.shape[2]
    if n <= 2 * SAMPLE_SLICE_PAIRS:
        return frame
    starts = np.unique(np.linspace(0, n - 2, SAMPLE_SLICE_PAIRS).round().astype(np.intp))
    return frame[:, :, np.stack([starts, starts + 1], axis=1).ravel()]


def _stack_slabs(data: np.ndarray):
    """`data` (3-D or more) as slabs of about SLAB_VOXELS voxels along its last axes: passes
    over them make no full-size copy."""
    stack = data.reshape(data.shape[:2] + (-1,), order="F")
    step = max(1, SLAB_VOXELS // max(1, stack.shape[0] * stack.shape[1]))
    for start in range(0, stack.shape[2], step):
        yield stack[:, :, start : start + step]


def _value_counts(data: np.ndarray, limit: int):
    """(values, counts) of integer-valued `data`, or None if it has more than `limit` values."""
    low, high = int(data.min()), int(data.max())
    if high - low < 1 << 24:
        counts = np.zeros(high - low + 1, np.int64)
        for slab in _stack_slabs(data):
            # Widen before subtracting: int16 - min would wrap around for ranges over 32767.
            widened = slab.ravel(order="K").astype(np.intp) - low
            counts += np.bincount(widened, minlength=counts.size)
        values = np.flatnonzero(counts)
        return None if values.size > limit else (values + low, counts[values])
    values, counts = np.unique(data, return_counts=True)
    return None if values.size > limit else (values, counts)


def uniform_fraction(sample: np.ndarray, background) -> float:
    """Among voxels not of the `background` (most frequent) value, the share inside a uniform
    region: whose next neighbours along all three axes have the same value (along the 3rd
    axis: the other slice of its sampled pair; axes of one voxel are skipped). Noise and
    smooth ramps keep it low."""
    pairs = sample.shape[2] // 2
    lower = sample[:, :, 0 : 2 * pairs : 2] if pairs else sample
    cut_x = slice(0, -1) if sample.shape[0] > 1 else slice(None)
    cut_y = slice(0, -1) if sample.shape[1] > 1 else slice(None)
    here = lower[cut_x, cut_y]
    counted = here != background
    total = int(np.count_nonzero(counted))
    if total == 0:
        return 1.0  # nothing but background: an empty mask (constant either way)
    if sample.shape[0] > 1:
        counted &= lower[1:, cut_y] == here
    if sample.shape[1] > 1:
        counted &= lower[cut_x, 1:] == here
    if pairs:
        counted &= sample[:, :, 1 : 2 * pairs : 2][cut_x, cut_y] == here
    return int(np.count_nonzero(counted)) / total


def _not_whole_reason(data: np.ndarray) -> str | None:
    """Why float `data` is not a set of whole numbers below 2^31 (None if it is)."""
    if np.array_equal(data, np.round(data)):  # False where NaN
        if np.abs(data).max() < 2**31:  # also refuses infinities
            return None
        return "content: values beyond 2^31 or infinite (image)"
    if np.isnan(data).any():
        return "content: NaN values (image)"
    return "content: fractional values (image)"


def _check_all_voxels(data: np.ndarray, limit: int) -> tuple[str | None, int]:
    """(why the whole volume is no label map or None, its number of distinct values)."""
    if data.dtype.kind == "f":
        for slab in _stack_slabs(data):
            reason = _not_whole_reason(slab)
            if reason:
                return reason, 0
    counted = _value_counts(data, limit)
    if counted is None:
        return f"content: more than {limit} distinct values (image)", 0
    return None, counted[0].size


def detect_label_map(header, data: np.ndarray) -> tuple[bool, str]:
    """(is it a label map?, the short reason for the manifest), from the NIfTI intent code,
    else from the content: finite whole numbers, at most MAX_LABELS distinct values, and at
    least MIN_UNIFORM of the non-background voxels inside uniform regions (measured on
    sampled slices of the first frame; docs/label_detection.md has the figures)."""
    intent = int(header["intent_code"])
    if intent in LABEL_INTENTS:
        return True, f"header intent {LABEL_INTENTS[intent]}"
    frame = data.reshape(data.shape[:3] + (-1,), order="F")[..., 0]
    sample = sample_slices(frame)
    # The sample refuses most images cheaply; only a candidate is checked in full.
    if data.dtype.kind == "f":
        reason = _not_whole_reason(sample)
        if reason:
            return False, reason
    counted = _value_counts(sample, MAX_LABELS)
    if counted is None:
        return False, f"content: more than {MAX_LABELS} distinct values (image)"
    uniform = uniform_fraction(sample, counted[0][np.argmax(counted[1])])
    if uniform < MIN_UNIFORM:
        return False, f"content: {uniform:.0%} uniform (image)"
    reason, distinct = _check_all_voxels(data, MAX_LABELS)
    if reason:
        return False, reason
    values = "value" if distinct == 1 else "values"
    return True, f"content: {distinct} distinct integer {values}, {uniform:.0%} uniform"


def resample_labels(labels, out_shape, index_map, method="volume_preserving", outside=0):
    """Placeholder (arg-max of linear shares, scipy) until the volume-keeping method lands."""
    from scipy.ndimage import affine_transform

    values = np.unique(labels)
    best = np.full(tuple(out_shape), -1.0, np.float32)
    result = np.full(tuple(out_shape), outside, labels.dtype)
    for value in values:
        share = affine_transform((labels == value).astype(np.float32), index_map[:3, :3],
                                 index_map[:3, 3], tuple(out_shape), order=1, mode="nearest")
        wins = share > best
        result[wins], best[wins] = value, share[wins]
    inside = affine_transform(np.ones(labels.shape, np.float32), index_map[:3, :3],
                              index_map[:3, 3], tuple(out_shape), order=0, mode="constant", cval=0)
    result[inside == 0] = outside
    return result
