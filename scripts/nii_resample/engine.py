"""Fast separable resampling of N-D arrays onto a field-of-view preserving voxel grid.

`resample_array` is a numpy re-implementation of what SimpleITK's ``Resample`` computes for
a pure per-axis scaling (identity direction, unit input spacing, zero origin, output spacing
``n_in / n_out`` and origin ``(spacing - 1) / 2``; the outer voxel edges stay put):

* output index ``j`` on an axis samples the input at ``x = (j + 0.5) * n_in / n_out - 0.5``;
* ``"bspline"``: cubic B-spline = itk::BSplineDecompositionImageFilter (causal + anticausal
  IIR with pole ``sqrt(3) - 2``, mirror boundary, the same causal initialisation: a
  18-term truncated sum for lines longer than 18, the exact mirror sum otherwise) followed by
  itk::BSplineInterpolateImageFunction (4 taps per axis, mirrored indices, ITK's weight
  formulas, the support chosen with ITK's ``floor(float(x))``);
* ``"linear"``: itk::LinearInterpolateImageFunction, which clamps to the edge voxel for
  ``x < 0`` and ``x > n - 1`` (those occur when upsampling);
* ``"nearest"``: itk::NearestNeighborInterpolateImageFunction, i.e. round half up.

Because the transform is a per-axis scaling, the N-D operation separates exactly into 1-D
passes (prefilter + interpolation along one axis at a time); the passes commute, so the axis
that shrinks most goes first and every later pass works on a smaller array. An axis whose
size does not change is left untouched (ITK reproduces it up to ~1e-10). Each pass works on
cache-sized blocks of lines in the requested precision, so the only large allocations are
the per-pass results.

Sample positions are computed in float64 with the same operations ITK uses for the grid
above (``origin + spacing * j`` on all axes except the last numpy axis -- ITK's x, its
scanline axis -- where ITK interpolates between the first sample and one past the last).
For bspline/linear this is irrelevant (1e-16), but for nearest it decides exact .5 ties
(e.g. 512 -> 224 voxels puts every 7th output plane on a tie): those round up in exact
arithmetic, but ITK rounds whatever float64 value it computed, and so do we. (With another
spacing/origin, ITK's own tie outcome would differ in the same arbitrary way.)

Known ITK deviation: on an axis of length 2 that is upsampled (n_out >= 3) ITK's mirror
boundary maps tap index 3 to -1 and reads outside the line (a neighbouring line's
coefficient, or memory before the buffer: the result is not even deterministic). This
module uses the correct mirror there (index 3 -> 1).

Only numpy is imported (``concurrent.futures`` lazily when ``threads > 1``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["INTERPOLATIONS", "resample_array"]

INTERPOLATIONS = ("bspline", "linear", "nearest")

# Cubic B-spline prefilter constants, computed as itk::BSplineDecompositionImageFilter does.
_POLE = math.sqrt(3.0) - 2.0
_GAIN = (1.0 - _POLE) * (1.0 - 1.0 / _POLE)  # applied by ITK to the data; folded into weights
_TOLERANCE = 1e-10  # ITK's default m_Tolerance
_HORIZON = int(math.ceil(math.log(_TOLERANCE) / math.log(abs(_POLE))))  # 18

# Block geometry: a block is (P, n, Q) lines-by-samples in the working precision.
_BLOCK_BYTES = 4 << 20  # target size of one block buffer
_MIN_ROW = 512  # shortest contiguous run worth a row-wise recursion; else transpose blocks


# --------------------------------------------------------------------------- validation


def _check_args(data, new_shape, interpolation, precision, threads):
    if not isinstance(data, np.ndarray):
        data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"data must have a real numeric dtype, got {data.dtype}")
    if data.ndim == 0:
        raise ValueError("data must have at least one axis")
    if data.size == 0:
        raise ValueError(f"data must not be empty, got shape {data.shape}")

    if isinstance(new_shape, (str, bytes)):
        raise ValueError(f"new_shape must be a sequence of ints, got {new_shape!r}")
    try:
        shape = tuple(new_shape)
    except TypeError:
        raise ValueError(f"new_shape must be a sequence of ints, got {new_shape!r}") from None
    if len(shape) != data.ndim:
        raise ValueError(
            f"new_shape has {len(shape)} entries but data has {data.ndim} axes "
            f"(shape {data.shape})"
        )
    out_shape = []
    for n in shape:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"new_shape entries must be ints, got {n!r} in {shape!r}")
        if n < 1:
            raise ValueError(f"new_shape entries must be positive, got {n} in {shape!r}")
        out_shape.append(int(n))

    if not isinstance(interpolation, str) or interpolation.lower() not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
        )
    try:
        dtype = np.dtype(precision)
    except TypeError:
        raise ValueError(f"precision must be np.float32 or np.float64, got {precision!r}") from None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"precision must be np.float32 or np.float64, got {precision!r}")

    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)):
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return data, tuple(out_shape), interpolation.lower(), dtype, int(threads)


# --------------------------------------------------------------------------- 1-D geometry


def _positions(n_in: int, n_out: int, scanline: bool) -> np.ndarray:
    """Continuous input index of each output sample, computed the way ITK does (float64)."""
    spacing = (1.0 * n_in) / n_out
    origin = 0.0 + (spacing - 1.0) / 2.0
    j = np.arange(n_out, dtype=np.float64)
    if scanline:
        # ResampleImageFilter::LinearThreadedGenerateData: start + alpha * (end - start),
        # with `end` the (virtual) sample one past the last one of the scanline.
        end = origin + spacing * n_out
        return origin + (j / n_out) * (end - origin)
    return origin + spacing * j  # Image::TransformIndexToPhysicalPoint


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Mirror (whole-sample symmetric) boundary, period 2(n - 1), as ITK for n >= 3."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx > n - 1, period - idx, idx)


def _taps(kind: str, n_in: int, n_out: int, scanline: bool):
    """Indices (taps, n_out) and float64 weights (taps, n_out) of the 1-D interpolation."""
    x = _positions(n_in, n_out, scanline)
    if kind == "nearest":
        # itk::Math::RoundHalfIntegerUp == RoundHalfIntegerToEven(2x + 0.5) >> 1.
        idx = np.rint(2.0 * x + 0.5).astype(np.int64) >> 1
        return np.clip(idx, 0, n_in - 1)[None], np.ones((1, n_out))
    if kind == "linear":
        base = np.maximum(np.floor(x).astype(np.int64), 0)
        dist = x - base
        dist[dist <= 0.0] = 0.0  # x < 0: the first voxel's value
        upper = base + 1
        dist[upper > n_in - 1] = 0.0  # x > n - 1: the last voxel's value
        upper = np.minimum(upper, n_in - 1)
        return np.stack([base, upper]), np.stack([1.0 - dist, dist])
    # Cubic B-spline (itk::BSplineInterpolateImageFunction, spline order 3).
    first = np.floor(x.astype(np.float32)).astype(np.int64)  # floor(static_cast<float>(x))
    w = x - first
    w3 = (1.0 / 6.0) * w * w * w
    w0 = (1.0 / 6.0) + 0.5 * w * (w - 1.0) - w3
    w2 = w + w0 - 2.0 * w3
    w1 = 1.0 - w0 - w2 - w3
    idx = _mirror(first[None] + np.arange(-1, 3)[:, None], n_in)
    return idx, np.stack([w0, w1, w2, w3]) * _GAIN


def _causal_init_weights(n: int) -> np.ndarray:
    """Weights of the causal initial value c[0] = sum_k v[k] * s[k] (ITK, mirror boundary)."""
    z = _POLE
    if _HORIZON < n:  # "accelerated loop": truncated sum
        v = np.empty(_HORIZON)
        v[0] = 1.0
        zn = z
        for k in range(1, _HORIZON):
            v[k] = zn
            zn *= z
        return v
    # "full loop": exact mirror-boundary sum
    v = np.empty(n)
    iz = 1.0 / z
    z2n = z ** float(n - 1)
    v[0] = 1.0
    v[n - 1] = z2n
    z2n *= z2n * iz
    zn = z
    for k in range(1, n - 1):
        v[k] = zn + z2n
        zn *= z
        z2n *= iz
    return v / (1.0 - zn * zn)


# --------------------------------------------------------------------------- block kernels


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(a: int, multiple: int) -> int:
    return _ceil_div(a, multiple) * multiple


class _Pass:
    """One 1-D resampling pass along axis 1 of a C-contiguous (outer, n, inner) view."""

    def __init__(self, src3, dst3, idx, weights, prefilter, dtype):
        self.src3, self.dst3, self.dtype = src3, dst3, dtype
        outer, n, inner = src3.shape
        self.n, self.n_out = n, dst3.shape[1]
        self.prefilter = prefilter and n > 1
        self.idx = [np.ascontiguousarray(i, dtype=np.intp) for i in idx]
        self.weights = [np.ascontiguousarray(w, dtype=dtype).reshape(-1, 1) for w in weights]
        if self.prefilter:
            self.init_w = [dtype.type(v) for v in _causal_init_weights(n)]
            self.z = dtype.type(_POLE)
            self.anti = dtype.type(_POLE / (_POLE * _POLE - 1.0))
        self.outer, self.inner = outer, inner
        line_bytes = n * dtype.itemsize
        # Row mode: the recursion runs over (P, Q) slabs whose rows are contiguous runs of
        # Q samples. Transposed mode (the axis is innermost in memory, inner < _MIN_ROW):
        # blocks of P lines are copied into (n, P * inner) buffers, processed as rows of
        # P * inner samples, and transposed back on output.
        self.transposed = inner < _MIN_ROW
        if self.transposed or inner * line_bytes <= _BLOCK_BYTES:
            self.p = max(1, min(outer, _BLOCK_BYTES // (inner * line_bytes)))
            self.q = inner
        else:
            self.p = 1
            chunks = max(1, round(inner * line_bytes / _BLOCK_BYTES))
            self.q = min(inner, _round_up(_ceil_div(inner, chunks), 64))
        self.blocks = self._blocks()

    def _blocks(self):
        p, q = self.p, self.q
        return [
            (o, min(o + p, self.outer), i, min(i + q, self.inner))
            for o in range(0, self.outer, p)
            for i in range(0, self.inner, q)
        ]

    def split(self, parts: int):
        """Use smaller blocks if there are fewer than `parts` of them (for threads)."""
        if len(self.blocks) >= parts:
            return
        if self.p > 1:
            self.p = _ceil_div(self.outer, parts)
        elif not self.transposed and self.q >= 128:
            self.q = _round_up(_ceil_div(self.inner, parts), 64)
        self.blocks = self._blocks()

    # -- worker ---------------------------------------------------------------------------

    def run(self, blocks):
        cache = {}
        for blk in blocks:
            self._block(blk, cache)

    def _buffers(self, shape_pq, cache):
        """Per-worker scratch: (P, n, Q) data, (P, n_out, Q) taps, and two (P, Q) rows."""
        bufs = cache.get(shape_pq)
        if bufs is None:
            p, q = shape_pq
            dt = self.dtype
            buf = np.empty((p, self.n, q), dt)
            rows = [buf[:, k] for k in range(self.n)]
            bufs = (buf, rows, np.empty((p, self.n_out, q), dt), np.empty((p, q), dt), np.empty((p, q), dt))
            if self.transposed:
                bufs += (np.empty((p, self.n_out, q), dt),)
            cache[shape_pq] = bufs
        return bufs

    def _block(self, blk, cache):
        o0, o1, i0, i1 = blk
        src = self.src3[o0:o1, :, i0:i1]
        if self.transposed:
            # (P, n, inner) -> (n, P, inner) viewed as (1, n, P * inner)
            bufs = self._buffers((1, (o1 - o0) * (i1 - i0)), cache)
            buf = bufs[0]
            np.copyto(buf.reshape(self.n, o1 - o0, i1 - i0), src.transpose(1, 0, 2), casting="unsafe")
        else:
            bufs = self._buffers((o1 - o0, i1 - i0), cache)
            buf = bufs[0]
            np.copyto(buf, src, casting="unsafe")
        _, rows, tmp, acc, scratch = bufs[:5]
        if self.prefilter:
            self._prefilter(rows, acc, scratch)
        if self.transposed:
            res = bufs[5]
            self._interpolate(buf, res, tmp)
            dst = self.dst3[o0:o1, :, i0:i1]
            np.copyto(dst, res.reshape(self.n_out, o1 - o0, i1 - i0).transpose(1, 0, 2))
        else:
            self._interpolate(buf, self.dst3[o0:o1, :, i0:i1], tmp)

    def _prefilter(self, rows, acc, tmp):
        """In-place cubic B-spline prefilter (without the gain) along the row list."""
        mul, add, sub = np.multiply, np.add, np.subtract
        n, z = self.n, self.z
        # causal initialisation: c[0] = sum_k v[k] c[k]
        init_w = self.init_w
        mul(rows[0], init_w[0], out=acc)
        for k in range(1, len(init_w)):
            mul(rows[k], init_w[k], out=tmp)
            add(acc, tmp, out=acc)
        np.copyto(rows[0], acc)
        # causal recursion: c[k] += z c[k-1]
        prev = rows[0]
        for k in range(1, n):
            cur = rows[k]
            mul(prev, z, out=tmp)
            add(cur, tmp, out=cur)
            prev = cur
        # anticausal initialisation: c[n-1] = z / (z^2 - 1) (z c[n-2] + c[n-1])
        last = rows[n - 1]
        mul(rows[n - 2], z, out=tmp)
        add(tmp, last, out=tmp)
        mul(tmp, self.anti, out=last)
        # anticausal recursion: c[k] = z (c[k+1] - c[k])
        nxt = last
        for k in range(n - 2, -1, -1):
            cur = rows[k]
            sub(nxt, cur, out=cur)
            mul(cur, z, out=cur)
            nxt = cur

    def _interpolate(self, buf, dst, tmp):
        """dst[:, j] = sum_t w_t[j] * buf[:, idx_t[j]] along axis 1."""
        idx, weights = self.idx, self.weights
        np.take(buf, idx[0], axis=1, out=tmp, mode="clip")
        np.multiply(tmp, weights[0], out=dst)
        for t in range(1, len(idx)):
            np.take(buf, idx[t], axis=1, out=tmp, mode="clip")
            np.multiply(tmp, weights[t], out=tmp)
            np.add(dst, tmp, out=dst)


def _resample_axis(arr, axis, n_out, kind, scanline, dtype, executor, threads):
    """Resample C-contiguous `arr` along `axis` to `n_out` samples -> new C-contiguous array."""
    shape = arr.shape
    n = shape[axis]
    outer = math.prod(shape[:axis])
    inner = math.prod(shape[axis + 1 :])
    out = np.empty(shape[:axis] + (n_out,) + shape[axis + 1 :], dtype)
    src3 = arr.reshape(outer, n, inner)
    dst3 = out.reshape(outer, n_out, inner)
    if n == 1:  # ITK: every tap reads the single sample, weights sum to 1
        np.copyto(dst3, src3, casting="unsafe")
        return out
    idx, weights = _taps(kind, n, n_out, scanline)
    job = _Pass(src3, dst3, idx, weights, kind == "bspline", dtype)
    if executor is None:
        job.run(job.blocks)
    else:
        job.split(threads)
        parts = min(threads, len(job.blocks))
        futures = [executor.submit(job.run, job.blocks[k::parts]) for k in range(parts)]
        for f in futures:
            f.result()
    return out


def _memory_order(arr: np.ndarray) -> list:
    """Axes from outermost to innermost in memory."""
    if arr.flags.c_contiguous:
        return list(range(arr.ndim))
    if arr.flags.f_contiguous:
        return list(range(arr.ndim))[::-1]
    return sorted(range(arr.ndim), key=lambda a: -abs(arr.strides[a]))


def resample_array(
    data: np.ndarray,
    new_shape: Sequence[int],
    interpolation: str = "bspline",
    *,
    precision=np.float32,
    threads: int = 1,
) -> np.ndarray:
    """Resample `data` onto a `new_shape` grid covering the same field of view.

    Parameters
    ----------
    data : N-D array of any real dtype, C- or F-ordered (any strides work; other layouts
        are first copied to a contiguous array). All axes are spatial. Never modified.
    new_shape : number of output samples per axis (positive ints, one per axis).
    interpolation : "bspline" (cubic, ITK's sitkBSpline), "linear" or "nearest".
    precision : np.float32 (default) or np.float64 -- dtype of the result and of all
        intermediate arithmetic.
    threads : number of worker threads for the bspline/linear passes (a ThreadPoolExecutor
        over independent blocks of lines). 1 runs everything in the calling thread.

    Returns
    -------
    A new array of dtype `precision` and shape `new_shape`, laid out in memory like `data`
    (F-ordered input gives F-ordered output). No clamping or rounding is applied.

    Raises
    ------
    ValueError for a wrong number of axes, non-positive or non-integer sizes, an unknown
    interpolation, an unsupported precision or a non-positive thread count.
    """
    data, new_shape, kind, dtype, threads = _check_args(
        data, new_shape, interpolation, precision, threads
    )
    ndim = data.ndim
    # Work on a C-contiguous view whose axes are in memory order; transpose back at the end.
    perm = _memory_order(data)
    work = data.transpose(perm)
    if not work.flags.c_contiguous:
        work = np.ascontiguousarray(work)
    inv = np.argsort(perm)
    target = [new_shape[a] for a in perm]
    scan = perm.index(ndim - 1)  # ITK's x axis (the scanline of the reference geometry)

    changed = [p for p in range(ndim) if work.shape[p] != target[p]]
    if not changed:
        return work.astype(dtype, copy=True).transpose(inv)
    # Most shrinking axis first. Ties: the innermost axis (transposed blocks, the dearer
    # pass) goes where the array is smallest -- last when shrinking, first when growing.
    changed.sort(
        key=lambda p: (target[p] / work.shape[p], (p == ndim - 1) == (target[p] < work.shape[p]), p)
    )

    if kind == "nearest":
        out = work
        for p in changed:
            idx, _ = _taps("nearest", work.shape[p], target[p], p == scan)
            out = np.take(out, idx[0], axis=p)
        return out.astype(dtype, copy=False).transpose(inv)

    executor = None
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(max_workers=threads)
    try:
        out = work
        for p in changed:
            out = _resample_axis(out, p, target[p], kind, p == scan, dtype, executor, threads)
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
    return out.transpose(inv)
