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
passes (prefilter + interpolation along one axis at a time). The passes commute, so they run
in the order that keeps the arrays small (the most shrinking axis first, growing ones last).
An axis whose size does not change is left untouched (ITK reproduces it only up to ~1e-10,
its IIR start being truncated). All arithmetic is done in `precision`.

A bspline pass is one linear operator per axis, M = taps @ P (n_out, n): P is ITK's
prefilter itself (its recursion run on the identity, float64), the taps carry the gain and
any blur. M is banded; entries under 1e-7 (float32; 2^-60 for float64) of their row's
largest are dropped (P decays as 0.268^|k|), and its rows are cut into chunks of 16 whose
band is applied with BLAS gemm ``np.matmul`` -- (lines, n) @ M.T along the innermost axis,
M @ (n, columns) along the others. That replaces the IIR (4 ufunc calls per row of samples)
and the 2 * taps - 1 ufunc calls per output row by a few large gemms: more multiply-adds
(a chunk's band: ~35-55 per output sample), but at BLAS speed: ~3x faster overall.
OpenBLAS's own thread pool is capped at one thread per engine thread (threadpoolctl) while
it runs. Linear / nearest-with-blur / blur-only passes use the taps directly (ufuncs on
blocks of lines copied into reused (n, P, Q) scratch buffers). The axis outermost in memory
gets one whole-volume pass; the other axes are done a group of planes at a time, so besides
the result there is at most one full-size intermediate (the smaller of "outer axis first" /
"outer axis last"), in `precision`, never float64 unless asked for.

Sample positions are computed in float64 with the same operations ITK uses for the grid
above (``origin + spacing * j`` on all axes except ITK's x, its scanline axis -- the last
axis of a SimpleITK array, axis 0 of nibabel's, ``scanline_axis`` -- where ITK interpolates
between the first sample and one past the last).
For bspline/linear this is irrelevant (1e-16), but for nearest it decides exact .5 ties
(e.g. 512 -> 224 voxels puts every 7th output plane on a tie): those round up in exact
arithmetic, but ITK rounds whatever float64 value it computed, and so do we. (On a physical
grid, ITK's own tie outcome would depend on how spacing and origin round; the itk engine of
nii_resample.volume therefore resamples on the index grid too, and the two agree exactly.)

Known ITK deviation: on a 2-sample axis ITK's mirror boundary maps tap index 3 to -1 and
reads outside the line (a neighbouring line's coefficient, or memory before the buffer).
Upsampled (n_out >= 3) this changes the last samples; even for n_out == 2 the read happens
with weight 0, and we have seen SimpleITK return NaN there. This module uses the correct
mirror (index 3 -> 1).

Anti-aliasing (``antialias_sigmas``): a Gaussian along axis k, the one of
``scipy.ndimage.gaussian_filter1d(mode="mirror", truncate=4.0)`` (radius
``int(4 * sigma + 0.5)``, weights ``exp(-0.5 x^2 / sigma^2)`` normalised to sum 1, mirror
boundary of period 2(n - 1) however wide the kernel, as scipy), is folded into axis k's own
pass: on that axis the result is interpolate(G(prefilter(line))) with G merged into the
interpolation taps (4 + 2 * radius rows per output sample instead of 4). With mirror
boundaries the Gaussian and the prefilter commute exactly (both are symmetric convolutions of
the mirror-extended line), so this equals blurring first -- to ~1e-10 relative where ITK's
causal start is truncated (lines > 18). It costs no extra array and runs on whatever the
pass holds (axes shrunk earlier are already smaller), and is cheaper than a separate blur
over the n input rows. A blurred axis whose size does not change gets a blur-only pass.

Threads (``threads > 1``) split blocks of lines or groups of planes over a
ThreadPoolExecutor; numpy releases the GIL inside each call, but the calls are short
(~16k samples), so the gain is modest (and unblurred nearest, a few numpy gathers, always
runs in the calling thread). The result never depends on the blocking or the threads: every
gemm of a pass has the same shape (short tiles are padded), as OpenBLAS's rounding depends on
a call's shape (not on an element's place in it).

Only numpy is imported (``concurrent.futures`` lazily when ``threads > 1``, threadpoolctl
when a bspline pass runs).
"""

from __future__ import annotations

import contextlib
import functools
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

# Block geometry: a block of an (outer, n, inner) array is P x Q lines, copied to an (n, P, Q)
# buffer in the working precision; the 1-D pass runs over its (P, Q) slabs.
_ROW_ELEMS = 16384  # samples per (P, Q) slab of a block: amortises numpy's call overhead
_MAX_BLOCK_BYTES = 32 << 20  # cap on one (P, n, Q) block buffer
_GROUP_BYTES = 16 << 20  # biggest per-group intermediate of the in-plane passes
_MIN_ROW = 512  # shortest contiguous run worth a row-wise recursion; else transpose blocks
_TRANSPOSE_CHUNK = 256  # lines per transposing copy into a block buffer

# Matrix form of a bspline pass (prefilter + blur + taps as one banded (n_out, n) operator
# applied with BLAS gemm): entries under _MATRIX_TOL * (row's largest) are dropped, the rows
# are grouped _MATRIX_CHUNK at a time, each group multiplying only its band of input rows.
_MATRIX_TOL = {4: 1e-7, 8: 2.0**-60}  # by itemsize: about the precision's rounding
_MATRIX_CHUNK = 16  # output samples per band chunk (measured best)
_MATRIX_LINES = 512  # lines per gemm (lines of the innermost axis)
_MATRIX_COLS = 512  # about this many columns per gemm (other axes)
_MATRIX_MIN_INNER = 16  # shorter contiguous runs: transpose into (lines, n) buffers


# --------------------------------------------------------------------------- validation


def _check_steps(steps, ndim, shape, new_shape) -> list:
    """Per-axis sampling steps: None where the axis keeps its field of view (the default)."""
    if steps is None:
        return [None] * ndim
    steps = list(steps)
    if len(steps) != ndim:
        raise ValueError(f"steps has {len(steps)} entries but data has {ndim} axes")
    checked = []
    for step, n_in, n_out in zip(steps, shape, new_shape):
        if isinstance(step, tuple):  # a grid placed explicitly (grid_origin)
            origin, spacing = float(step[0]), float(step[1])
            if not (math.isfinite(origin) and math.isfinite(spacing) and spacing > 0):
                raise ValueError(f"steps: (origin, spacing, ...) must be finite, got {step!r}")
            checked.append(tuple(step))
            continue
        if step is not None and not (math.isfinite(step) and step > 0):
            raise ValueError(f"steps must be positive finite numbers or None, got {steps!r}")
        # the field-of-view step itself is the default grid: same floats, same ties
        same = step is None or float(step) == (1.0 * n_in) / n_out
        checked.append(None if same else float(step))
    return checked


def _check_sigmas(sigmas, ndim):
    """Per-axis Gaussian sigmas as a tuple of floats, or None if there is nothing to blur."""
    if sigmas is None:
        return None
    if isinstance(sigmas, (str, bytes)):
        raise ValueError(f"antialias_sigmas must be a sequence of numbers, got {sigmas!r}")
    try:
        values = tuple(sigmas)
    except TypeError:
        raise ValueError(
            f"antialias_sigmas must be a sequence of numbers, got {sigmas!r}"
        ) from None
    if len(values) != ndim:
        raise ValueError(
            f"antialias_sigmas has {len(values)} entries but data has {ndim} axes"
        )
    out = []
    for v in values:
        real = isinstance(v, (int, float, np.integer, np.floating))
        if isinstance(v, (bool, np.bool_)) or not real:
            raise ValueError(f"antialias_sigmas entries must be numbers, got {v!r}")
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"antialias_sigmas entries must be finite and >= 0, got {v!r}")
        out.append(float(v))
    return tuple(out) if any(_gauss_radius(v) > 0 for v in out) else None


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


def grid_origin(n_in: int, n_out: int, step=None) -> tuple[float, float]:
    """(origin, spacing) of the output grid in input continuous indices: the field of view
    kept (step None: spacing n_in / n_out, outer edges fixed), or `step` input voxels per
    output voxel with the centre of the field of view fixed, or `step` = (origin, spacing)
    given, or (origin, spacing, first, size): samples first... of a grid of `size` samples
    (a crop of it: nii_resample.grids.crop_or_pad_grid). The itk engine
    (nii_resample.volume) builds its grid from the same two numbers."""
    if isinstance(step, tuple):
        first = step[2] if len(step) > 2 else 0
        return float(step[0]) + first * float(step[1]), float(step[1])
    if step is None:
        spacing = (1.0 * n_in) / n_out
        return 0.0 + (spacing - 1.0) / 2.0, spacing
    return (n_in - 1.0) / 2.0 - (n_out - 1.0) / 2.0 * step, float(step)


def grid_positions(n_in: int, n_out: int, scanline: bool, step=None) -> np.ndarray:
    """Continuous input index of each output sample, computed the way ITK does (float64).
    A crop (step (origin, spacing, first, size)) takes its samples from the whole grid's,
    bit for bit: the kept voxels are exactly those of the uncropped grid."""
    if isinstance(step, tuple) and len(step) > 2:
        origin, spacing, first, size = step
        whole = grid_positions(n_in, int(size), scanline, (origin, spacing))
        return whole[int(first) : int(first) + n_out]
    origin, spacing = grid_origin(n_in, n_out, step)
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


def _taps(kind: str, n_in: int, n_out: int, scanline: bool, step: float | None = None):
    """Indices (taps, n_out) and float64 weights (taps, n_out) of the 1-D interpolation."""
    x = grid_positions(n_in, n_out, scanline, step)
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


_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter1d's default truncate


def _gauss_radius(sigma: float) -> int:
    """Half-width of scipy's Gaussian kernel (0: the identity, nothing to do)."""
    return int(_TRUNCATE * sigma + 0.5) if sigma > 0 else 0


def _gauss_weights(sigma: float) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian kernel (same float64 operations), offsets -r..r."""
    radius = _gauss_radius(sigma)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


@functools.lru_cache(maxsize=4)
def _prefilter_matrix(n: int) -> np.ndarray:
    """(n, n) float64 matrix of the cubic B-spline prefilter (no gain), as ITK computes it.

    Column m is the prefilter's response to a unit impulse at m: ITK's recursion (causal
    start truncated at _HORIZON terms for n > _HORIZON, causal and anticausal passes, mirror
    boundary), run on the identity. Cached (read-only): axes of one size share it.
    """
    c = np.eye(n)
    v = _causal_init_weights(n)
    c[0] = v @ c[: len(v)]
    z = _POLE
    for k in range(1, n):
        c[k] += z * c[k - 1]
    c[n - 1] = (_POLE / (_POLE * _POLE - 1.0)) * (z * c[n - 2] + c[n - 1])
    for k in range(n - 2, -1, -1):
        c[k] = z * (c[k + 1] - c[k])
    c.flags.writeable = False
    return c


def _blurred_taps(idx: np.ndarray, weights: np.ndarray, n: int, sigma: float):
    """Taps of "Gaussian (mirror boundary) along the line, then the taps (idx, weights)".

    Every tap row i becomes the rows mirror(i + k), k = -r..r, with weight w * g[k]; rows
    that coincide are merged later (_AxisOp). Returns (taps * (2r + 1), n_out) arrays.
    """
    g = _gauss_weights(sigma)
    offsets = np.arange(-(len(g) // 2), len(g) // 2 + 1)
    rows = _mirror(idx[:, None, :] + offsets[None, :, None], n)
    ws = weights[:, None, :] * g[None, :, None]
    return rows.reshape(-1, idx.shape[1]), ws.reshape(-1, idx.shape[1])


# --------------------------------------------------------------------------- 1-D passes


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _padded_empty(shape, dtype):
    """Uninitialised array of `shape` whose axis-0 stride is padded by 64 bytes.

    Slabs a power-of-two number of bytes apart map to the same cache sets; the transposing
    copies into and out of these buffers are several times faster with the padding.
    """
    rest = math.prod(shape[1:])
    padded = np.empty((shape[0], rest + 64 // dtype.itemsize), dtype)
    return padded[:, :rest].reshape(shape)  # a view: only the last axis is split


class _AxisOp:
    """A precomputed 1-D resampling operator n -> n_out along one axis.

    With `sigma` > 0 a Gaussian of that sigma (input samples) is applied first -- folded
    into the interpolation taps, after the prefilter (they commute). If n_out == n the
    operator is then the Gaussian alone (no interpolation, no prefilter).
    """

    def __init__(
        self,
        kind: str,
        n: int,
        n_out: int,
        scanline: bool,
        dtype: np.dtype,
        sigma: float = 0.0,
        step: float | None = None,
    ):
        self.n, self.n_out, self.dtype = n, n_out, dtype
        blur = _gauss_radius(sigma) > 0 and n > 1
        if blur and n_out == n and step is None:  # blur only
            kind = "identity"
            idx, weights = np.arange(n)[None], np.ones((1, n))
        else:
            idx, weights = _taps(kind, n, n_out, scanline, step)
        if blur:
            idx, weights = _blurred_taps(idx, weights, n, sigma)
        # bspline: the whole pass (prefilter, blur, taps) as banded matrix chunks (gemms);
        # linear / nearest / blur only: a few taps per output sample (ufuncs)
        self.matrix = kind == "bspline" and n > 1
        if self.matrix:
            self.chunks = self._matrix_chunks(idx, weights)
            return
        # per output sample: its input rows and their weights (numpy scalars of `dtype`);
        # taps that the mirror maps onto the same row are merged, zero weights dropped
        self.tap_rows, self.tap_weights = [], []
        for rows, ws in zip(idx.T.tolist(), weights.T.tolist()):
            merged = {}
            for r, w in zip(rows, ws):
                merged[r] = merged.get(r, 0.0) + w
            taps = [(r, w) for r, w in merged.items() if w != 0.0] or [(rows[0], 0.0)]
            self.tap_rows.append(tuple(r for r, _ in taps))
            self.tap_weights.append(tuple(dtype.type(w) for _, w in taps))

    def _matrix_chunks(self, idx, weights):
        """[(j0, j1, lo, hi, M[j0:j1, lo:hi], its transpose)] of M = taps @ prefilter."""
        n, n_out, dtype = self.n, self.n_out, self.dtype
        w = np.zeros((n_out, n))
        np.add.at(w, (np.broadcast_to(np.arange(n_out), idx.shape), idx), weights)
        m = w @ _prefilter_matrix(n)
        mag = np.abs(m)
        keep = mag >= _MATRIX_TOL[dtype.itemsize] * mag.max(axis=1, keepdims=True)
        m[~keep] = 0.0
        first = keep.argmax(axis=1)
        last = n - 1 - keep[:, ::-1].argmax(axis=1)
        chunks = []
        for j0 in range(0, n_out, _MATRIX_CHUNK):
            j1 = min(j0 + _MATRIX_CHUNK, n_out)
            lo, hi = int(first[j0:j1].min()), int(last[j0:j1].max()) + 1
            sub = np.ascontiguousarray(m[j0:j1, lo:hi], dtype=dtype)
            chunks.append((j0, j1, lo, hi, sub, np.ascontiguousarray(sub.T)))
        return chunks

    def plan_matrix(self, outer: int, inner: int, parts: int = 1):
        """Blocks (o0, o1, i0, i1) for run_matrix, and whether they are lines ((L, n) rows).

        Short runs (inner < _MATRIX_MIN_INNER): about _MATRIX_LINES lines (whole outer
        slices), multiplied as (lines, n) @ M.T; otherwise _MATRIX_COLS columns of one outer
        index: M @ (n, cols). (`parts` is not needed: there are many blocks, and their size
        must not change the arithmetic -- see run_matrix.)
        """
        if inner < _MATRIX_MIN_INNER:
            p = max(1, _MATRIX_LINES // inner)
            return True, [(o, min(o + p, outer), 0, inner) for o in range(0, outer, p)]
        t = self._cols_tile(inner)
        starts = range(0, inner, t)
        blocks = [(o, o + 1, i, min(i + t, inner)) for o in range(outer) for i in starts]
        return False, blocks

    @staticmethod
    def _cols_tile(inner: int) -> int:
        """Columns per gemm: ~_MATRIX_COLS, a multiple of 16 splitting `inner` evenly."""
        tiles = _ceil_div(inner, _MATRIX_COLS)
        return min(inner, _ceil_div(_ceil_div(inner, tiles), 16) * 16)

    def run_matrix(self, src3, dst3, lines, blocks, scratch):
        """The pass as gemms of M's band chunks, every one of the same shape per chunk.

        OpenBLAS's result for one element depends on the call's shape (its kernels split the
        M, N loops differently), not on the element's position in a call of a given shape:
        so every gemm covers exactly _MATRIX_LINES lines, or _cols_tile(inner) columns (set
        by the array's shape alone); a short last tile is padded in scratch. The result then
        does not depend on the blocking, the plane groups or the threads.
        """
        dtype, n, n_out = self.dtype, self.n, self.n_out
        if lines:
            t = _MATRIX_LINES
            for o0, o1, _, inner in blocks:
                src, dst, count = src3[o0:o1], dst3[o0:o1], (o1 - o0) * inner
                if inner == 1 and src.dtype == dtype:
                    x = src.reshape(count, n)
                else:
                    x = self._scratch(scratch, "mlines", (o1 - o0, inner, n))
                    np.copyto(x, src.transpose(0, 2, 1), casting="unsafe")
                    x = x.reshape(count, n)
                if inner == 1:
                    y = dst.reshape(count, n_out)
                else:
                    y = self._scratch(scratch, "mres", (count, n_out))
                for r in range(0, count, t):
                    self._gemm_lines(x[r : r + t], y[r : r + t], scratch)
                if inner != 1:
                    np.copyto(dst.transpose(0, 2, 1), y.reshape(o1 - o0, inner, n_out))
            return
        t = self._cols_tile(src3.shape[2])
        for o, _, i0, i1 in blocks:
            x, y = src3[o, :, i0:i1], dst3[o, :, i0:i1]
            if i1 - i0 < t or x.dtype != dtype:
                buf = self._zeros(scratch, "mcols", (n, t))
                np.copyto(buf[:, : i1 - i0], x, casting="unsafe")
                x = buf
            out = y if i1 - i0 == t else self._scratch(scratch, "mcres", (n_out, t))
            for j0, j1, lo, hi, sub, _ in self.chunks:
                np.matmul(sub, x[lo:hi], out=out[j0:j1])
            if out is not y:
                np.copyto(y, out[:, : i1 - i0])

    def _gemm_lines(self, x, y, scratch):
        """y = x @ M.T for up to _MATRIX_LINES lines (fewer: padded to that many)."""
        count = x.shape[0]
        if count < _MATRIX_LINES:
            buf = self._zeros(scratch, "mpad", (_MATRIX_LINES, self.n))
            buf[:count] = x
            x, y0 = buf, y
            y = self._scratch(scratch, "mpres", (_MATRIX_LINES, self.n_out))
        for j0, j1, lo, hi, _, sub_t in self.chunks:
            np.matmul(x[:, lo:hi], sub_t, out=y[:, j0:j1])
        if count < _MATRIX_LINES:
            y0[...] = y[:count]

    def _zeros(self, scratch, tag, shape):
        arr = scratch.get((tag, shape))
        if arr is None:
            arr = scratch[(tag, shape)] = np.zeros(shape, self.dtype)
        return arr

    # -- block geometry --------------------------------------------------------------------

    def plan(self, outer: int, inner: int, parts: int = 1):
        """Blocks (o0, o1, i0, i1) of an (outer, n, inner) array, and whether to transpose.

        Every block is copied into an (n, P, Q) buffer, so the recursion runs over
        contiguous (P, Q) slabs of about _ROW_ELEMS samples (numpy's per-call overhead is
        then small). If the axis is (nearly) innermost in memory (inner < _MIN_ROW), the
        results are computed into a contiguous (n_out, P, Q) buffer and copied out at once
        ("transposed"); otherwise each output slab is written straight into `dst`.
        """
        line_bytes = max(self.n, self.n_out) * self.dtype.itemsize
        elems = max(64, min(_ROW_ELEMS, _MAX_BLOCK_BYTES // line_bytes))
        transposed = inner < _MIN_ROW
        if transposed or inner <= elems:
            p, q = max(1, min(outer, elems // inner)), inner
        else:
            p, q = 1, min(inner, _ceil_div(_ceil_div(inner, round(inner / elems)), 64) * 64)
        count = _ceil_div(outer, p) * _ceil_div(inner, q)
        if count < parts:  # smaller blocks so that every thread gets one
            if p > 1:
                p = _ceil_div(outer, parts)
            elif not transposed and q >= 128:
                q = _ceil_div(_ceil_div(inner, parts), 64) * 64
        blocks = [
            (o, min(o + p, outer), i, min(i + q, inner))
            for o in range(0, outer, p)
            for i in range(0, inner, q)
        ]
        return transposed, blocks

    # -- kernels ---------------------------------------------------------------------------

    def run(self, src3, dst3, transposed, blocks, scratch):
        for o0, o1, i0, i1 in blocks:
            src = src3[o0:o1, :, i0:i1]
            dst = dst3[o0:o1, :, i0:i1].transpose(1, 0, 2)  # (n_out, P, Q) view
            p, q = o1 - o0, i1 - i0
            buf, rows, _, tmp = self._buffers(p, q, scratch)
            # (P, n, Q) block -> (n, P, Q) buffer: every slab rows[k] is one contiguous run.
            # Short runs (transposed): copy a cache-friendly chunk of lines at a time.
            step = _TRANSPOSE_CHUNK if transposed else p
            for c in range(0, p, step):
                np.copyto(
                    buf[:, c : c + step], src[c : c + step].transpose(1, 0, 2), casting="unsafe"
                )
            if transposed:  # short runs in dst: compute contiguously, then scatter at once
                res = self._scratch(scratch, "res", (self.n_out, p, q))
                self._interpolate(rows, res, tmp)
                np.copyto(dst, res)
            else:
                self._interpolate(rows, dst, tmp)

    def _scratch(self, scratch, tag, shape):
        arr = scratch.get((tag, shape))
        if arr is None:
            arr = scratch[(tag, shape)] = _padded_empty(shape, self.dtype)
        return arr

    def _buffers(self, p, q, scratch):
        key = ("block", self.n, p, q)
        bufs = scratch.get(key)
        if bufs is None:
            buf = _padded_empty((self.n, p, q), self.dtype)
            rows = list(buf)  # views made once, reused for every block of this shape
            bufs = scratch[key] = (
                buf,
                rows,
                np.empty((p, q), self.dtype),
                np.empty((p, q), self.dtype),
            )
        return bufs

    def _interpolate(self, rows, dst, tmp):
        """dst[j] = sum_t w_t[j] * rows[idx_t[j]]: 2 * taps - 1 ufunc calls per output slab."""
        mul, add = np.multiply, np.add
        idx, weights = self.tap_rows, self.tap_weights
        for j in range(self.n_out):
            out = dst[j]
            ij, wj = idx[j], weights[j]
            mul(rows[ij[0]], wj[0], out=out)
            for t in range(1, len(ij)):
                mul(rows[ij[t]], wj[t], out=tmp)
                add(out, tmp, out=out)


def _as3(arr: np.ndarray, axis: int) -> np.ndarray:
    """(outer, n, inner) view of a C-contiguous array around `axis`."""
    assert arr.flags.c_contiguous  # else reshape would silently copy
    shape = arr.shape
    return arr.reshape(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))


def _gather(executor, tasks):
    """Run (function, *args) tasks on the pool, wait for all, re-raise the first error."""
    futures = [executor.submit(*task) for task in tasks]
    for f in futures:
        f.result()


def _axis_pass(src, dst, axis, op, scratch, executor=None, threads=1):
    """One 1-D pass along `axis`: C-contiguous `src` -> preallocated C-contiguous `dst`."""
    src3, dst3 = _as3(src, axis), _as3(dst, axis)
    if op.n == 1:  # ITK: every tap reads the single sample and the weights sum to 1
        np.copyto(dst3, src3, casting="unsafe")
        return
    parts = threads if executor is not None else 1
    plan, run = (op.plan_matrix, op.run_matrix) if op.matrix else (op.plan, op.run)
    transposed, blocks = plan(src3.shape[0], src3.shape[2], parts)
    if parts == 1 or len(blocks) == 1:
        run(src3, dst3, transposed, blocks, scratch[0])
        return
    parts = min(parts, len(blocks))
    _gather(
        executor,
        [(run, src3, dst3, transposed, blocks[k::parts], scratch[k]) for k in range(parts)],
    )


def _plane_stages(src, dst, stages, groups, scratch, executor=None, threads=1):
    """Apply the in-plane passes `stages` to groups of planes (axis-0 slabs), src -> dst.

    Intermediate results exist for one group at a time (in reused scratch arrays), so the
    in-plane passes need no full-volume temporaries.
    """
    for a, b in groups:
        cur = src[a:b]
        for k, (axis, op) in enumerate(stages):
            if k == len(stages) - 1:
                nxt = dst[a:b]
            else:
                shape = cur.shape[:axis] + (op.n_out,) + cur.shape[axis + 1 :]
                nxt = scratch[0].get(("stage", k, shape))
                if nxt is None:  # C-contiguous (no padding): reshaped by the next pass
                    nxt = scratch[0][("stage", k, shape)] = np.empty(shape, op.dtype)
            _axis_pass(cur, nxt, axis, op, scratch, executor, threads)
            cur = nxt


def _planes_pass(src, dst, stages, scratch, executor, threads):
    """All in-plane passes, processed a group of planes at a time (threads: over groups)."""
    shape, biggest = list(src.shape[1:]), math.prod(src.shape[1:])
    for axis, op in stages:
        shape[axis - 1] = op.n_out
        biggest = max(biggest, math.prod(shape))
    count = src.shape[0]
    per_group = max(1, min(count, _GROUP_BYTES // (biggest * stages[0][1].dtype.itemsize)))
    if executor is not None and count >= threads:
        per_group = min(per_group, _ceil_div(count, threads))
    groups = [(a, min(a + per_group, count)) for a in range(0, count, per_group)]
    if executor is None or len(groups) < threads:
        # a single thread, or too few planes: parallelise inside each pass instead
        _plane_stages(src, dst, stages, groups, scratch, executor, threads)
        return
    _gather(
        executor,
        [
            (_plane_stages, src, dst, stages, groups[k::threads], [scratch[k]])
            for k in range(threads)
        ],
    )


def _release(scratch):
    """Drop the scratch buffers of a finished phase (they would not be reused)."""
    for per_thread in scratch:
        per_thread.clear()


def _blas_threads(limit: int):
    """Context manager capping the BLAS thread pools (threadpoolctl, imported lazily)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=limit, user_api="blas")


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
    antialias_sigmas: Sequence[float] | None = None,
    scanline_axis: int = -1,
    steps: Sequence[float | None] | None = None,
) -> np.ndarray:
    """Resample `data` onto a `new_shape` grid covering the same field of view.

    Parameters
    ----------
    data : N-D array of any real dtype, C- or F-ordered (other strides work too, after a
        contiguous copy). All axes are spatial. Never modified.
    new_shape : number of output samples per axis (positive ints, one per axis).
    interpolation : "bspline" (cubic, = sitkBSpline), "linear" (= sitkLinear) or
        "nearest" (= sitkNearestNeighbor).
    precision : np.float32 (default) or np.float64: dtype of the result and of all the
        arithmetic.
    threads : worker threads for the bspline/linear passes (a ThreadPoolExecutor over
        independent blocks of lines or groups of planes); 1 uses no pool at all.
    antialias_sigmas : None, or one Gaussian sigma per axis in input samples (0: none).
        The result is that of ``resample_array(gaussian_blur(data, sigmas), ...)`` with
        scipy's ``gaussian_filter1d(mode="mirror", truncate=4.0)`` (to ~1e-10 relative, and
        the rounding of `precision`), but the blur is folded into each axis's own pass: no
        extra array, little extra time. None or all zeros: bit-identical to no blur.
    scanline_axis : the axis that is ITK's x (its scanline) in the reference: the last one
        for SimpleITK's (z, y, x) arrays (default), 0 for nibabel's (x, y, z). It only
        decides exact .5 ties of "nearest" (module docstring).
    steps : None (the field of view kept: n_in / n_out input samples per output sample,
        outer edges fixed), or per axis the input samples per output sample (None: that
        axis's n_in / n_out), the grid centred on the input's centre: a target spacing
        (nii_resample.grids) rather than a target size.

    Returns
    -------
    A new array of dtype `precision` and shape `new_shape`, laid out in memory like `data`
    (F-ordered in, F-ordered out). No clamping, no rounding.

    Raises
    ------
    ValueError for a wrong number of axes, non-positive or non-integer sizes, an unknown
    interpolation, an unsupported precision, a non-positive thread count or sigmas that are
    not one finite number >= 0 per axis.
    """
    data, new_shape, kind, dtype, threads = _check_args(
        data, new_shape, interpolation, precision, threads
    )
    ndim = data.ndim
    sigmas = _check_sigmas(antialias_sigmas, ndim)
    # Work on a C-contiguous view with the axes in memory order ("T-space": axis 0 is the
    # outermost in memory); transpose back at the end, so the result has data's layout.
    perm = _memory_order(data)
    work = data.transpose(perm)
    if not work.flags.c_contiguous:
        work = np.ascontiguousarray(work)
    inv = tuple(int(a) for a in np.argsort(perm))
    shape = work.shape
    target = tuple(new_shape[a] for a in perm)
    if not -ndim <= scanline_axis < ndim:
        raise ValueError(f"scanline_axis {scanline_axis} is not an axis of a {ndim}-D array")
    scan = perm.index(scanline_axis % ndim)  # ITK's x axis (scanline), in T-space
    sigma = [0.0] * ndim if sigmas is None else [sigmas[a] for a in perm]  # T-space
    step = _check_steps(steps, ndim, data.shape, new_shape)
    step = [step[a] for a in perm]  # T-space

    blurred = [_gauss_radius(sigma[p]) > 0 and shape[p] > 1 for p in range(ndim)]
    changed = [
        p for p in range(ndim) if shape[p] != target[p] or blurred[p] or step[p] is not None
    ]
    if not changed:
        return work.astype(dtype, copy=True).transpose(inv)

    # Most shrinking axis first; ties: the innermost axis (the dearer, transposed pass) goes
    # where the array is smallest -- last when shrinking, first when growing.
    def order(p):
        return (target[p] / shape[p], (p == ndim - 1) == (target[p] < shape[p]), p)

    changed.sort(key=order)

    if kind == "nearest" and sigmas is None:  # pure gathers, in the input dtype
        out = work
        for p in changed:
            idx, _ = _taps("nearest", shape[p], target[p], p == scan, step[p])
            out = np.take(out, idx[0], axis=p)
        return out.astype(dtype, copy=False).transpose(inv)

    # bspline passes are BLAS gemms: OpenBLAS would start its own threads; keep it at one
    # per engine thread (threads > 1 parallelise over blocks, as for the other kinds).
    with _blas_threads(1) if kind == "bspline" else contextlib.nullcontext():
        # (nearest with a blur: weighted taps like the others, 1 tap on unblurred axes)
        ops = {
            p: _AxisOp(kind, shape[p], target[p], p == scan, dtype, sigma[p], step[p])
            for p in changed
        }
        stages = [(p, ops[p]) for p in changed if p != 0]  # in-plane passes, in order
        executor = None
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            executor = ThreadPoolExecutor(max_workers=threads)
        scratch = [{} for _ in range(threads)]
        try:
            out = np.empty(target, dtype)
            if not stages:  # only axis 0 changes
                _axis_pass(work, out, 0, ops[0], scratch, executor, threads)
            elif 0 not in ops:  # only in-plane passes
                _planes_pass(work, out, stages, scratch, executor, threads)
            else:
                # Axis 0 (outermost in memory) needs whole-volume passes; the in-plane passes
                # run plane group by plane group. Do axis 0 first or last, whichever leaves the
                # smaller intermediate volume (i.e. the more shrinking side goes first).
                axis0_first = target[0] * math.prod(shape[1:]) <= shape[0] * math.prod(target[1:])
                if axis0_first:
                    mid = np.empty((target[0],) + shape[1:], dtype)
                    _axis_pass(work, mid, 0, ops[0], scratch, executor, threads)
                    _release(scratch)
                    _planes_pass(mid, out, stages, scratch, executor, threads)
                else:
                    mid = np.empty((shape[0],) + target[1:], dtype)
                    _planes_pass(work, mid, stages, scratch, executor, threads)
                    _release(scratch)
                    _axis_pass(mid, out, 0, ops[0], scratch, executor, threads)
                del mid
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
    return out.transpose(inv)
