"""Label maps: per-label linear interpolation, so no label value is ever invented.

B-spline (or plain linear) interpolation of label values averages neighbouring labels into
values that mean something else (between 3 "liver" and 5 "kidney" lies 4 "spleen").
Instead each label's indicator is interpolated on its own (its "share" of every output
voxel). `linear_argmax` gives every voxel the label of largest share, as nnU-Net does with
one-hot segmentations: smooth, but thin and small structures shrink (up to 16 % measured).
`volume_preserving` (the default) adds a per-label offset to the shares before the arg-max,
the offsets solved so that every label keeps its volume (docs/benchmarks.md, "Label
volumes"). Each label only costs work inside its bounding box, so atlases with 100+ labels
stay fast; `resample_labels` serves any affine grid.
"""

from __future__ import annotations

import numpy as np


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


# --- Resampling: per-label shares, then arg-max or volume-preserving assignment -----------

LABEL_METHODS = ("volume_preserving", "linear_argmax", "nearest")
# A share below this is no candidate, above 1 - this a sure label: float32 sums of shares
# drift by ~1e-7, and a label that needs a voxel where it has 1e-5 gets it from elsewhere.
SHARE_EPS = 1e-5
# Threshold sweeps of the volume-preserving assignment after the entropic offsets.
MAX_SWEEPS = 8
# ... then single-voxel moves along shortest paths finish the counts: each costs a pass over
# the candidates, so at most REPAIR_WORK candidate visits per slab (500 moves for an atlas's
# 100 k candidates; a slab with millions keeps the few-voxel error of the sweeps).
REPAIR_WORK = 5 * 10**7
# Off-diagonal terms of an index map below this (relative) are rounding: separable path.
SEPARABLE_TOLERANCE = 1e-9


class _Shares:
    """The labels' interpolated shares, added box by box: the arg-max label of every output
    voxel and, with `collect`, the sparse (voxel, label, share) entries of the voxels that
    several labels share (the candidates of the volume-preserving assignment)."""

    def __init__(self, shape, background, dtype, collect: bool):
        self.shape = tuple(int(n) for n in shape)
        self.background = background
        self.result = np.full(self.shape, background, dtype=dtype)
        self.best = np.zeros(self.shape, np.float32)
        self.total = np.zeros(self.shape, np.float32)
        self.collect = collect
        # Entries are ~10 bytes each (there can be millions): 4-byte voxel numbers.
        self.index_type = np.int32 if np.prod(self.shape) < 2**31 else np.int64
        self.voxels, self.label_runs, self.shares = [], [], []

    def add(self, index: int, value, corner, share: np.ndarray) -> None:
        """`share` of label `value` (number `index` in the sorted values) in the output block
        whose first voxel is `corner`."""
        window = tuple(slice(c, c + n) for c, n in zip(corner, share.shape))
        wins = share > self.best[window]
        self.result[window][wins] = value
        self.best[window][wins] = share[wins]
        self.total[window] += share
        if self.collect:
            where = np.nonzero((share > SHARE_EPS) & (share < 1 - SHARE_EPS))
            if where[0].size:
                global_index = tuple(w + c for w, c in zip(where, corner))
                flat = np.ravel_multi_index(global_index, self.shape)
                self.voxels.append(flat.astype(self.index_type))
                self.label_runs.append((index, where[0].size))
                self.shares.append(share[where])

    def arg_max(self) -> np.ndarray:
        """Where the background's share (1 - the others') is at least the best other's, it
        wins back; the arg-max label map."""
        for part in _output_slabs(self.shape):
            window = (slice(None), slice(None), part)
            self.result[window][(1.0 - self.total[window]) >= self.best[window]] = self.background
        self.best = None
        return self.result

    def entries(self, background_index: int):
        """(flat voxel, label index, share) of every candidate, the background's included."""
        voxels, runs, shares = self.voxels, list(self.label_runs), self.shares
        for part in _output_slabs(self.shape):
            other = self.total[:, :, part]
            where = np.nonzero((other > SHARE_EPS) & (other < 1 - SHARE_EPS))
            if where[0].size:
                flat = np.ravel_multi_index((where[0], where[1], where[2] + part.start), self.shape)
                voxels.append(flat.astype(self.index_type))
                runs.append((background_index, flat.size))
                shares.append(1.0 - other[where])
        self.total = self.voxels = self.shares = self.label_runs = None
        if not voxels:
            return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
        indices = [index for index, _ in runs]
        label_type = np.int16 if max(indices) < 2**15 else np.int32
        labels = np.repeat(np.array(indices, label_type), [size for _, size in runs])
        voxels = np.concatenate(voxels)
        return voxels, labels, np.concatenate(shares)


def _targets(fov_counts, ratio: float, available: int, background_index: int, carry=None):
    """(Voxel count each label should get, what rounding left over): its input voxels inside
    the output field of view times the voxel volume ratio (plus `carry`, a previous slab's
    leftover), rounded by largest remainder; the background the rest."""
    raw = fov_counts * ratio + (0.0 if carry is None else carry)
    raw[background_index] = 0.0
    targets = np.maximum(np.floor(raw), 0).astype(np.int64)
    missing = int(round(raw.sum())) - int(targets.sum())
    if missing > 0:
        targets[np.argsort(targets - raw, kind="stable")[:missing]] += 1
    targets[background_index] = 0
    targets[background_index] = max(0, available - int(targets.sum()))
    left = raw - targets
    left[background_index] = 0.0
    return targets, left


# Entropic (Sinkhorn) stages: temperature and most iterations at each.
SINKHORN_STAGES = ((0.1, 30), (0.03, 30), (0.01, 40), (0.003, 60))
# ... fewer for millions of candidates (at most this many candidate visits per stage): the
# threshold sweeps and the repair finish what the entropic offsets leave.
SINKHORN_WORK = 2 * 10**7


def _entropic_offsets(voxel_of, starts, label_of, score, take, background_index):
    """Offsets from Sinkhorn scaling of the sparse entries (soft counts = targets), cooled
    in stages: all labels move together, so chains of labels (a nucleus inside a lobe
    inside the background) settle in a few iterations, where one label at a time jams."""
    n_labels = take.size
    candidates = np.bincount(label_of, minlength=n_labels)
    wanted = np.clip(take, 0, candidates).astype(np.float64)
    others = np.arange(n_labels) != background_index
    wanted[background_index] = 0.0
    wanted[background_index] = np.clip(starts.size - wanted.sum(), 0, candidates[background_index])
    offsets = np.zeros(n_labels)
    # A label that must take nothing (or everything) has no finite price: left at 0 here,
    # the threshold sweeps settle it.
    free = (wanted > 0) & (wanted < candidates)
    log_wanted = np.log(np.maximum(wanted, 1e-300))
    scaled = np.empty(score.size)
    per_voxel = np.empty(score.size)
    # Close enough for the threshold sweeps to finish: half a voxel, or 1 % of a large label.
    tolerance = 0.5 + 0.01 * wanted
    for temperature, iterations in SINKHORN_STAGES:
        for _ in range(min(iterations, max(5, SINKHORN_WORK // max(1, score.size)))):
            np.take(offsets, label_of, out=scaled)
            scaled += score
            scaled /= temperature
            top = np.maximum.reduceat(scaled, starts)
            scaled -= np.take(top, voxel_of, out=per_voxel)
            np.exp(scaled, out=scaled)
            total = np.add.reduceat(scaled, starts)
            scaled /= np.take(total, voxel_of, out=per_voxel)
            soft = np.bincount(label_of, weights=scaled, minlength=n_labels)
            update = free & (soft > 0)
            offsets[update] += temperature * (log_wanted[update] - np.log(soft[update]))
            offsets -= offsets[background_index]
            if (np.abs(soft - wanted) <= tolerance)[free & others].all():
                break
    del scaled, per_voxel
    return offsets


def _winners(voxel_of, starts, label_of, score, offsets) -> np.ndarray:
    """Label index of the highest score + offset of every shared voxel (the first on a tie)."""
    value = np.take(offsets, label_of)
    value += score
    top = np.maximum.reduceat(value, starts)
    value -= np.take(top, voxel_of)
    first = np.flatnonzero(value == 0.0)
    del value
    first = first[np.r_[True, voxel_of[first[1:]] != voxel_of[first[:-1]]]]
    return label_of[first]


def _neighbourhood(own, voxel_of, starts, sizes):
    """Entries of the voxels where a label has the entries `own`, and where each voxel's run
    of them starts (for reduceat)."""
    vox = voxel_of[own]
    run = sizes[vox]
    run_starts = np.r_[0, np.cumsum(run)[:-1]]
    within = np.arange(int(run.sum())) - np.repeat(run_starts, run)
    return np.repeat(starts[vox], run) + within, run_starts


def _cheapest_per_edge(edge, loss, entry):
    """The smallest loss of each edge, with its entry."""
    order = np.lexsort((loss, edge))
    first = order[np.r_[True, edge[order[1:]] != edge[order[:-1]]]]
    return edge[first], loss[first], entry[first]


def _cheapest_moves(voxel_of, label_of, score, offsets, winners, held):
    """Edges a -> b (as a * n_labels + b) of the label graph: the cheapest voxel that label
    a holds and b could take, its loss of score + offset, and b's entry there (in chunks)."""
    n_labels = offsets.size
    held_value = score[held] + offsets[winners]
    found = []
    for start in range(0, label_of.size, CHUNK):
        part = slice(start, start + CHUNK)
        voxel, label = voxel_of[part], label_of[part]
        holder = winners[voxel]
        other = np.flatnonzero(label != holder)
        value = score[part][other] + offsets[label[other]]
        loss = np.maximum(held_value[voxel[other]] - value, 0.0)
        edge = holder[other].astype(np.int64) * n_labels + label[other]
        found.append(_cheapest_per_edge(edge, loss, other + start))
    return _cheapest_per_edge(*(np.concatenate(column) for column in zip(*found)))


def _repair(voxel_of, starts, label_of, score, offsets, winners, take, background_index,
            max_moves):
    """Exact counts from an optimal but off-count assignment (successive shortest paths on
    the small graph of labels): an edge a -> b costs the cheapest voxel of a that b could
    take (its loss of score + offset); Dijkstra from the labels with too many voxels to the
    nearest one with too few, one voxel moved along each edge of the path, and the offsets
    raised by the distances, so every voxel keeps its best label under the new offsets."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    n_labels = take.size
    wanted = take.copy()
    wanted[background_index] = 0
    wanted[background_index] = starts.size - wanted.sum()
    surplus = np.bincount(winners, minlength=n_labels) - wanted
    # Each voxel's entry of its current label.
    held = np.flatnonzero(label_of == winners[voxel_of])
    held = held[np.r_[True, voxel_of[held[1:]] != voxel_of[held[:-1]]]]
    for _ in range(max_moves):
        if not (surplus > 0).any() or not (surplus < 0).any():
            break
        edge, loss, entries = _cheapest_moves(voxel_of, label_of, score, offsets, winners, held)
        # csr drops zero weights: a tight edge (loss 0) is kept as a tiny one.
        graph = csr_matrix((loss + 1e-12, divmod(edge, n_labels)), shape=(n_labels, n_labels))
        distance, previous, _ = dijkstra(graph, indices=np.flatnonzero(surplus > 0),
                                         min_only=True, return_predecessors=True)
        reachable = np.flatnonzero((surplus < 0) & np.isfinite(distance))
        if reachable.size == 0:
            break
        target = reachable[np.argmin(distance[reachable])]
        by_edge = dict(zip(edge.tolist(), entries.tolist()))
        node = target
        while previous[node] >= 0:
            entry = by_edge[int(previous[node]) * n_labels + int(node)]
            winners[voxel_of[entry]] = node
            held[voxel_of[entry]] = entry
            node = previous[node]
        surplus[node] -= 1
        surplus[target] += 1
        offsets += np.minimum(np.nan_to_num(distance, posinf=distance[target]), distance[target])
    return winners


def _transport(voxel_of, starts, label_of, score, take, background_index) -> np.ndarray:
    """The winning label index of each shared voxel: the highest score plus a per-label
    offset, the offsets found so that label l wins `take[l]` voxels (a transportation
    problem; the offsets are its dual prices). Sinkhorn scaling gives all offsets at once;
    then, given the others' offsets, label l's count is a threshold on its margin over the
    best other label at each of its voxels, so each label in turn gets its exact offset (a
    partition; Gauss-Seidel on the dual), for a few sweeps; where labels fighting over tied
    voxels stall those, shortest-path moves (_repair) finish the counts. The background
    keeps offset 0 and takes the rest."""
    n_labels = take.size
    candidates = np.bincount(label_of, minlength=n_labels)
    # A label cannot take more voxels than it is a candidate for (a thin label whose whole
    # support is smaller than its volume), nor fewer than none.
    take = np.clip(take, 0, candidates)
    by_label = np.argsort(label_of, kind="stable").astype(voxel_of.dtype)
    bounds = np.r_[0, np.cumsum(candidates)]
    sizes = np.diff(np.r_[starts, label_of.size])
    offsets = _entropic_offsets(voxel_of, starts, label_of, score, take, background_index)
    for sweep in range(MAX_SWEEPS + 1):
        winners = _winners(voxel_of, starts, label_of, score, offsets)
        off = np.bincount(winners, minlength=n_labels) != take
        off[background_index] = False
        if not off.any():
            return winners
        if sweep == MAX_SWEEPS:
            return _repair(voxel_of, starts, label_of, score, offsets, winners, take,
                           background_index, min(2000, REPAIR_WORK // max(1, score.size)))
        for index in np.flatnonzero(off):
            own = by_label[bounds[index] : bounds[index + 1]]
            if own.size == 0:
                continue
            around, run_starts = _neighbourhood(own, voxel_of, starts, sizes)
            others = score[around] + offsets[label_of[around]]
            others[label_of[around] == index] = -np.inf
            # Label `index` takes a voxel iff margin + its offset > 0.
            margin = score[own] - np.maximum.reduceat(others, run_starts)
            need, size = int(take[index]), own.size
            if need <= 0:
                offsets[index] = -margin.max()
            elif need >= size:
                offsets[index] = -margin.min() + 1e-12
            else:
                pair = np.partition(margin, (size - need - 1, size - need))
                offsets[index] = -(pair[size - need - 1] + pair[size - need]) / 2.0
    return winners


def _label_indices(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Index of each voxel's label in the sorted `values`."""
    return np.searchsorted(values, labels).astype(np.int32)


# Candidates per chunk where a pass over millions of them would need big temporaries.
CHUNK = 1 << 20


def _raster_key(input_position, shape_in, voxels) -> np.ndarray:
    """A number in (0, 1) that orders voxels by their input position, raster order (the
    same whatever the output grid's axis order or flips)."""
    key = np.zeros(voxels.size)
    for start in range(0, voxels.size, CHUNK):
        position = input_position(voxels[start : start + CHUNK])
        part = key[start : start + CHUNK]
        for axis, n in enumerate(shape_in):
            part *= n + 2
            part += position[axis] + 1.0
    return key / float(np.prod([n + 2 for n in shape_in]))


def _assign_volumes(shares: _Shares, inside, values, targets, background_index, input_position,
                    shape_in) -> np.ndarray:
    """The arg-max map with its shared voxels inside `inside` re-assigned so that every
    label has its target voxel count (voxels outside the input's field of view keep theirs).
    `input_position(flat voxels)`: their (3, n) input continuous indices."""
    result = shares.arg_max()
    voxels, label_of, share = shares.entries(background_index)
    flat_result = result.reshape(-1)
    if not inside.all():
        keep = inside.reshape(-1)[voxels]
        voxels, label_of, share = voxels[keep], label_of[keep], share[keep]
        del keep
    order = np.argsort(voxels, kind="stable")
    voxels = voxels[order]
    label_of = label_of[order]
    share = share[order]
    del order
    new_voxel = np.r_[True, voxels[1:] != voxels[:-1]] if voxels.size else np.zeros(0, bool)
    sizes = np.diff(np.r_[np.flatnonzero(new_voxel), voxels.size])
    # A voxel with one candidate (the rest below SHARE_EPS) is that label's, at no cost.
    shared = np.repeat(sizes > 1, sizes)
    voxels, label_of, share = voxels[shared], label_of[shared], share[shared]
    sizes = sizes[sizes > 1]
    if sizes.size == 0:  # no voxel shared by two labels (an identity grid)
        return result
    starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.intp)
    voxel_of = np.repeat(np.arange(sizes.size, dtype=np.int32), sizes)
    problem = voxels[starts]
    counts = np.zeros(values.size, np.int64)
    for part in _output_slabs(result.shape):
        window = (slice(None), slice(None), part)
        counts += np.bincount(
            _label_indices(values, result[window][inside[window]]), minlength=values.size
        )
    shared_now = _label_indices(values, flat_result[problem])
    fixed = counts - np.bincount(shared_now, minlength=values.size)
    take = targets - fixed
    # Equal shares (a regular grid's boundary plane) are split by a tiny ramp along the
    # raster order of the input, different for every label: a threshold can stop part-way
    # through a plane of ties, and the part a label takes is one compact piece, not salt
    # and pepper (and the same piece for a permuted or flipped output grid).
    ramp = (np.arange(values.size) * 0.6180339887498949) % 1.0 + 0.5
    del voxels
    key = _raster_key(input_position, shape_in, problem)
    score = ramp[label_of]
    for start in range(0, score.size, CHUNK):
        part = slice(start, start + CHUNK)
        score[part] *= 1e-6 * key[voxel_of[part]]
        score[part] += share[part]
    del share, key
    winners = _transport(voxel_of, starts, label_of, score, take, background_index)
    flat_result[problem] = values[winners]
    return result


def _fov_counts_separable(labels, values, positions, scales) -> np.ndarray:
    """Voxels of each label whose centres lie inside the output's field of view."""
    box = []
    for n, pos, scale in zip(labels.shape, positions, scales):
        low, high = pos[0] - scale / 2.0, pos[-1] + scale / 2.0
        # Half-open [low, high): adjacent slabs never count a voxel centre twice.
        box.append(slice(max(0, int(np.ceil(low - 1e-9))), min(n, int(np.ceil(high - 1e-9)))))
    counts = np.zeros(values.size, np.int64)
    view = labels[tuple(box)]
    if view.size:
        present, numbers = _label_counts(view)
        counts[np.searchsorted(values, present)] = numbers
    return counts


def _inside_separable(shape_in, positions) -> np.ndarray:
    """Output voxels whose input position lies within [-0.5, n - 0.5] on every axis."""
    masks = [(pos >= -0.5 - 1e-9) & (pos <= n - 0.5 + 1e-9) for n, pos in zip(shape_in, positions)]
    return masks[0][:, None, None] & masks[1][None, :, None] & masks[2][None, None, :]


def _resample_separable(labels, positions, scales, method, outside, original=None):
    """Labels sampled at per-axis input positions (`scales`: input voxels per output voxel);
    output voxels beyond the input's field of view get `outside` (None: the edge label).
    `original`: (input axis, positions along it) of each axis of a transposed or flipped
    `labels` view, so that ties are broken in the input's own raster order."""
    inside = _inside_separable(labels.shape, positions)
    if method == "nearest":
        # Round half up, as ITK's nearest-neighbour interpolator (engine.py).
        nearest = [
            np.clip(np.floor(pos + 0.5), 0, n - 1).astype(np.intp)
            for n, pos in zip(labels.shape, positions)
        ]
        result = labels[np.ix_(*nearest)]
    else:
        if original is None:
            original = [(axis, pos) for axis, pos in enumerate(positions)]
        result = _separable_shares(labels, positions, method, inside, scales, original)
    if outside is not None:
        result[~inside] = outside
    return result


def _add_separable_shares(shares: _Shares, labels, values, background, boxes, positions):
    """Every label's share (but the background's) at the per-axis `positions`, into `shares`."""
    for index, value in enumerate(values):
        if value == background:
            continue
        box_in, box_out = [], []
        for axis, bounds in enumerate(boxes[value]):
            # One voxel of margin: the linear kernel's support.
            first, last = bounds.start - 1, bounds.stop
            pos = positions[axis]
            selected = np.flatnonzero((pos > first) & (pos < last))
            if selected.size == 0:
                break
            lo_in, hi_in = max(first, 0), min(last, labels.shape[axis] - 1) + 1
            box_in.append(slice(lo_in, hi_in))
            box_out.append((selected[0], selected[-1] + 1, pos[selected] - lo_in))
        else:
            in_plane = _in_plane_share(labels[tuple(box_in)], value, [p for *_, p in box_out])
            (x0, x1, _), (y0, y1, _), (z0, z1, z_positions) = box_out
            # The last axis, output slab by output slab: no output-sized float temporaries.
            for part in _output_slabs((x1 - x0, y1 - y0, z1 - z0)):
                share = _linear_along(in_plane, 2, z_positions[part])
                shares.add(index, value, (x0, y0, z0 + part.start), share)
            del in_plane


# Output voxels solved at once by volume_preserving: a larger output is solved in slabs of
# its first axis, each with the targets of its own field of view (the rounding carried
# over), so the candidates and the solver's arrays stay ~100 MB however large the output.
SOLVE_VOXELS = 1 << 21


def _separable_shares(labels, positions, method, inside, scales, original):
    """linear_argmax or volume_preserving on the separable (per-axis) grid."""
    out_shape = tuple(pos.size for pos in positions)
    values, counts = _label_counts(labels)
    # The most frequent label (the background) is never interpolated itself: its share is
    # 1 - the sum of the others, so it costs nothing however large it is.
    background_index = int(np.argmax(counts))
    background = values[background_index]
    others = [value for value in values if value != background]
    boxes = _bounding_boxes(labels, others) if others else {}
    if method != "volume_preserving":
        shares = _Shares(out_shape, background, labels.dtype, False)
        _add_separable_shares(shares, labels, values, background, boxes, positions)
        return shares.arg_max()
    ratio = 1.0 / float(np.prod(scales))
    shape_in = [0] * 3
    for n, (axis, _) in zip(labels.shape, original):
        shape_in[axis] = n
    result = np.empty(out_shape, labels.dtype)
    carry = np.zeros(values.size)
    planes = max(1, SOLVE_VOXELS // max(1, out_shape[1] * out_shape[2]))
    for start in range(0, out_shape[0], planes):
        part = slice(start, min(start + planes, out_shape[0]))
        slab_positions = [positions[0][part], positions[1], positions[2]]
        slab_shape = (part.stop - part.start,) + out_shape[1:]
        shares = _Shares(slab_shape, background, labels.dtype, True)
        _add_separable_shares(shares, labels, values, background, boxes, slab_positions)
        fov = _fov_counts_separable(labels, values, slab_positions, scales)
        available = int(np.count_nonzero(inside[part]))
        targets, carry = _targets(fov, ratio, available, background_index, carry)

        def input_position(voxels, first=part.start, shape=slab_shape):
            coordinates = list(np.unravel_index(voxels, shape))
            coordinates[0] = coordinates[0] + first
            position = np.empty((3, voxels.size))
            for coordinate, (axis, along) in zip(coordinates, original):
                position[axis] = along[coordinate]
            return position

        result[part] = _assign_volumes(shares, inside[part], values, targets,
                                       background_index, input_position, shape_in)
        del shares
    return result


def resample_label_map(
    labels: np.ndarray, new_shape, steps=None, method: str = "linear_argmax"
) -> np.ndarray:
    """Resample a 3-D integer label map onto `new_shape` (`steps`: a target spacing's grid,
    nii_resample.grids) by `method` (LABEL_METHODS); the output keeps the input's type.
    Beyond the input's field of view (a spacing grid larger than the input) the edge
    labels continue, as they always did."""
    from .nifti import resampling_index_map

    index_map = resampling_index_map(labels.shape, new_shape, steps)
    positions = [
        index_map[axis, axis] * np.arange(int(n), dtype=np.float64) + index_map[axis, 3]
        for axis, n in enumerate(new_shape)
    ]
    scales = [index_map[axis, axis] for axis in range(3)]
    return _resample_separable(labels, positions, scales, method, None)


def _signed_permutation(linear: np.ndarray):
    """(input axis read by each output axis, its sign) if `linear` is a scaled signed
    permutation (a diagonal with flips and axis swaps), else None."""
    size = np.abs(linear)
    small = size <= SEPARABLE_TOLERANCE * size.max()
    for axis in (0, 1):
        if not (np.count_nonzero(~small, axis=axis) == 1).all():
            return None
    axes = np.argmax(size, axis=0)  # column c (output axis) -> row (input axis)
    return axes, np.sign(linear[axes, np.arange(3)])


def resample_labels(
    labels: np.ndarray,
    out_shape,
    index_map: np.ndarray,
    method: str = "volume_preserving",
    outside=0,
) -> np.ndarray:
    """3-D integer label map onto a grid of `out_shape` voxels; index_map (4x4): output
    voxel index -> input continuous voxel index (any rotation/permutation/scaling).
    method: volume_preserving | linear_argmax | nearest. Output voxels whose input position
    lies outside the input's field of view (continuous index < -0.5 or > n - 0.5 on any
    axis) get `outside`.

    A diagonal map, with axis swaps and flips, takes the exact separable path; any other
    the general one (scipy's trilinear affine_transform of each label's indicator box)."""
    if method not in LABEL_METHODS:
        raise ValueError(f"label method {method!r}: expected one of {', '.join(LABEL_METHODS)}")
    index_map = np.asarray(index_map, dtype=np.float64)
    out_shape = tuple(int(n) for n in out_shape)
    linear, shift = index_map[:3, :3], index_map[:3, 3]
    permutation = _signed_permutation(linear)
    if permutation is None:
        return _resample_general(labels, out_shape, index_map, method, outside)
    # Axis swaps and flips are views of the input: the exact separable path serves them.
    axes, signs = permutation
    view = labels.transpose(axes)
    positions, scales, original = [], [], []
    for out_axis, (in_axis, sign) in enumerate(zip(axes, signs)):
        pos = linear[in_axis, out_axis] * np.arange(out_shape[out_axis]) + shift[in_axis]
        original.append((int(in_axis), pos))
        if sign < 0:
            view = np.flip(view, out_axis)
            pos = (labels.shape[in_axis] - 1) - pos
        positions.append(pos)
        scales.append(abs(linear[in_axis, out_axis]))
    return _resample_separable(view, positions, scales, method, outside, original)


def _mapped_coordinate(index_map, axis, shape, corner):
    """Input continuous index along `axis` of every voxel of an output block."""
    grids = [np.arange(n, dtype=np.float64) + c for n, c in zip(shape, corner)]
    row = index_map[axis]
    return (
        row[0] * grids[0][:, None, None]
        + row[1] * grids[1][None, :, None]
        + (row[2] * grids[2] + row[3])[None, None, :]
    )


def _inside_general(shape_in, out_shape, index_map) -> np.ndarray:
    """Output voxels whose input position lies within [-0.5, n - 0.5] on every axis."""
    inside = np.ones(out_shape, bool)
    for part in _output_slabs(out_shape):
        block = (out_shape[0], out_shape[1], part.stop - part.start)
        for axis, n in enumerate(shape_in):
            coordinate = _mapped_coordinate(index_map, axis, block, (0, 0, part.start))
            inside[:, :, part] &= (coordinate >= -0.5 - 1e-9) & (coordinate <= n - 0.5 + 1e-9)
    return inside


def _fov_counts_general(labels, values, out_shape, index_map) -> np.ndarray:
    """Voxels of each label whose centres lie inside the output's field of view."""
    inverse = np.linalg.inv(index_map)
    ends = [[0, n - 1] for n in labels.shape]
    corners = np.array(np.meshgrid(*ends, indexing="ij")).reshape(3, -1)
    mapped = inverse[:3, :3] @ corners + inverse[:3, 3:]
    limits = np.array(out_shape)[:, None] - 0.5
    if ((mapped >= -0.5 - 1e-9) & (mapped <= limits + 1e-9)).all():  # convex: all inside
        counts = np.zeros(values.size, np.int64)
        present, numbers = _label_counts(labels)
        counts[np.searchsorted(values, present)] = numbers
        return counts
    counts = np.zeros(values.size, np.int64)
    for offset, slab in _slabs(labels):
        inside = np.ones(slab.shape, bool)
        for axis, n in enumerate(out_shape):
            coordinate = _mapped_coordinate(inverse, axis, slab.shape, (0, 0, offset))
            inside &= (coordinate >= -0.5 - 1e-9) & (coordinate <= n - 0.5 + 1e-9)
        counts += np.bincount(_label_indices(values, slab[inside]), minlength=values.size)
    return counts


def _output_box(index_map, low, high, out_shape):
    """Output voxels (a box, as slices) whose input positions can fall in [low, high]."""
    inverse = np.linalg.inv(index_map)
    corners = np.array(np.meshgrid(*zip(low, high), indexing="ij")).reshape(3, -1)
    mapped = inverse[:3, :3] @ corners + inverse[:3, 3:]
    first = np.maximum(np.floor(mapped.min(axis=1)), 0).astype(int)
    last = np.minimum(np.ceil(mapped.max(axis=1)) + 1, out_shape).astype(int)
    return first, last


def _share_blocks(labels, value, box, out_shape, index_map):
    """(first voxel, block) of the trilinear share of `value` on the output grid, for the
    output box that its input bounding `box` can reach, output slab by output slab."""
    from scipy.ndimage import affine_transform

    linear, shift = index_map[:3, :3], index_map[:3, 3]
    # One voxel of margin (the linear kernel's support); at the input's edges the edge
    # value continues to -0.5 / n - 0.5 (mode "nearest"), as on the separable path.
    low = [b.start - 1 if b.start > 0 else -0.5 for b in box]
    high = [b.stop if b.stop < n else n - 0.5 for b, n in zip(box, labels.shape)]
    first, last = _output_box(index_map, low, high, out_shape)
    if (last <= first).any():
        return
    corner_in = np.array([max(b.start - 1, 0) for b in box])
    block_in = tuple(slice(c, min(b.stop + 1, n)) for c, b, n in zip(corner_in, box, labels.shape))
    indicator = (labels[block_in] == value).view(np.uint8)
    size = tuple(int(n) for n in last - first)
    for part in _output_slabs(size):
        corner = (int(first[0]), int(first[1]), int(first[2]) + part.start)
        offset = linear @ np.array(corner, np.float64) + shift - corner_in
        yield corner, affine_transform(
            indicator, linear, offset=offset,
            output_shape=(size[0], size[1], part.stop - part.start),
            order=1, mode="nearest", output=np.float32,
        )


def _resample_general(labels, out_shape, index_map, method, outside):
    """Any affine index map: each label's indicator box through scipy's trilinear
    affine_transform, output slab by output slab (memory bounded as the separable path)."""
    from scipy.ndimage import affine_transform

    linear, shift = index_map[:3, :3], index_map[:3, 3]
    inside = _inside_general(labels.shape, out_shape, index_map)
    if method == "nearest":
        result = np.empty(out_shape, labels.dtype)
        for part in _output_slabs(out_shape):
            offset = shift + linear[:, 2] * part.start
            result[:, :, part] = affine_transform(
                labels, linear, offset=offset, output_shape=result[:, :, part].shape,
                order=0, mode="nearest", output=labels.dtype,
            )
    else:
        values, counts = _label_counts(labels)
        background_index = int(np.argmax(counts))
        background = values[background_index]
        shares = _Shares(out_shape, background, labels.dtype, method == "volume_preserving")
        others = [value for value in values if value != background]
        boxes = _bounding_boxes(labels, others) if others else {}
        for index, value in enumerate(values):
            if value != background:
                blocks = _share_blocks(labels, value, boxes[value], out_shape, index_map)
                for corner, share in blocks:
                    shares.add(index, value, corner, share)
        if method == "volume_preserving":
            fov = _fov_counts_general(labels, values, out_shape, index_map)
            ratio = 1.0 / abs(float(np.linalg.det(linear)))
            targets, _ = _targets(fov, ratio, int(np.count_nonzero(inside)), background_index)

            def input_position(voxels):
                coordinates = np.array(np.unravel_index(voxels, out_shape), np.float64)
                return linear @ coordinates + shift[:, None]

            result = _assign_volumes(shares, inside, values, targets, background_index,
                                     input_position, labels.shape)
        else:
            result = shares.arg_max()
    if outside is not None:
        result[~inside] = outside
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


def value_counts(data: np.ndarray, limit: int):
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
    counted = value_counts(data, limit)
    if counted is None:
        return f"content: more than {limit} distinct values (image)", 0
    return None, counted[0].size


def detect_label_map(header, data: np.ndarray) -> tuple[bool, str]:
    """(is it a label map?, the short reason for the manifest), from the NIfTI intent code,
    else from the content: finite whole numbers, and exactly two values (a mask) or at most
    MAX_LABELS distinct values with at least MIN_UNIFORM of the non-background voxels inside
    uniform regions (measured on sampled slices of the first frame; docs/label_detection.md
    has the figures)."""
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
    counted = value_counts(sample, MAX_LABELS)
    if counted is None:
        return False, f"content: more than {MAX_LABELS} distinct values (image)"
    if counted[0].size == 2:
        # Two values are a mask however speckled (a 0/255 mask is no image to B-spline
        # into 254 invented grey levels), if the whole volume holds no third one.
        reason, distinct = _check_all_voxels(data, MAX_LABELS)
        if reason is None and distinct == 2:
            return True, "content: 2 integer values (a mask)"
    uniform = uniform_fraction(sample, counted[0][np.argmax(counted[1])])
    if uniform < MIN_UNIFORM:
        return False, f"content: {uniform:.0%} uniform (image)"
    reason, distinct = _check_all_voxels(data, MAX_LABELS)
    if reason:
        return False, reason
    values = "value" if distinct == 1 else "values"
    return True, f"content: {distinct} distinct integer {values}, {uniform:.0%} uniform"
