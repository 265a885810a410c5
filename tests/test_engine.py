"""Tests of nii_resample.engine.resample_array against SimpleITK's Resample."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np
import pytest
import SimpleITK as sitk

import nii_resample.engine as engine
from nii_resample.engine import resample_array

sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(1)

ITK = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}


def itk_reference(data, new_shape, interpolator=sitk.sitkBSpline):
    img = sitk.GetImageFromArray(data.astype(np.float64))  # NOTE: sitk array order is (z,y,x): img size is reversed shape
    old_size = np.array(img.GetSize(), float); new_size = np.array(new_shape[::-1], float)
    old_sp = np.array(img.GetSpacing()); new_sp = old_sp * old_size / new_size
    origin = np.array(img.GetOrigin()) + (new_sp - old_sp) / 2     # identity direction here
    out = sitk.Resample(img, [int(s) for s in new_size], sitk.Transform(), interpolator, origin.tolist(), new_sp.tolist(), img.GetDirection(), 0.0, sitk.sitkFloat64)
    return sitk.GetArrayFromImage(out)


def itk_reference_2safe(data, new_shape, interpolator=sitk.sitkBSpline):
    """itk_reference, except along axes of 2 samples that stay at 2.

    On a 2-sample line ITK's mirror turns tap index 3 into -1 and reads outside the line
    (for x = 1 with weight 0, but memory before the buffer can hold NaN: seen in practice).
    Such an axis is the identity, so apply ITK to each of its slices instead.
    """
    for axis, (n, m) in enumerate(zip(data.shape, new_shape)):
        if n == m == 2:
            shape = tuple(1 if a == axis else s for a, s in enumerate(new_shape))
            parts = [itk_reference_2safe(data.take([i], axis), shape, interpolator) for i in range(2)]
            return np.concatenate(parts, axis=axis)
    return itk_reference(data, new_shape, interpolator)


def relative_error(out, ref, data):
    span = float(np.max(data)) - float(np.min(data))
    return float(np.max(np.abs(out.astype(np.float64) - ref))) / (span if span > 0 else 1.0)


def make_data(shape, dtype, kind, seed=0):
    """Random or smooth test data of `dtype` (integers: the full uint8 range / CT-like int16)."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        base = rng.random(shape)
    else:
        grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
        base = 0.5 + 0.25 * np.sin(6 * grids[0] + 1) * np.cos(5 * grids[-1])
        base += 0.2 * grids[len(shape) // 2] + 0.02 * rng.standard_normal(shape)
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return np.clip(base * 255, 0, 255).round().astype(np.uint8)
    if dtype == np.int16:
        return (base * 3000 - 1000).round().astype(np.int16)
    return (base * 200 - 50).astype(dtype)


# (input shape, output shape): down, up, mixed per axis, odd sizes, unchanged axes, size-1
# axes (replicated or collapsed) and 2- or 3-sample axes (ITK's mirror boundary on short lines)
CASES = [
    ((20, 24, 30), (9, 11, 13)),  # downsample, lines > 18 (ITK's truncated IIR start)
    ((12, 10, 14), (25, 21, 29)),  # upsample
    ((17, 24, 31), (8, 47, 31)),  # mixed, odd, one axis unchanged
    ((19, 18, 17), (19, 18, 17)),  # nothing changes
    ((1, 6, 7), (4, 3, 7)),  # size-1 axis replicated
    ((5, 7, 9), (1, 3, 1)),  # axes collapsed to one sample
    ((3, 30, 2), (5, 14, 2)),  # 3 -> 5, 2 unchanged
    ((40, 2, 3), (13, 1, 7)),  # 2 -> 1, 3 -> 7
    ((3, 3, 3), (2, 7, 1)),
    ((2, 8, 5), (2, 3, 2)),
]


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest"])
@pytest.mark.parametrize("shape,new_shape", CASES)
def test_float_data_matches_itk(shape, new_shape, interpolation):
    data = make_data(shape, np.float64, "random", seed=len(CASES) + sum(shape))
    ref = itk_reference_2safe(data, new_shape, ITK[interpolation])
    assert np.all(np.isfinite(ref))
    for order in "CF":
        x = np.asarray(data, order=order)
        out64 = resample_array(x, new_shape, interpolation, precision=np.float64)
        out32 = resample_array(x, new_shape, interpolation)
        assert out64.shape == out32.shape == tuple(new_shape)
        assert out64.dtype == np.float64 and out32.dtype == np.float32
        if interpolation == "nearest":
            np.testing.assert_array_equal(out64, ref)
            np.testing.assert_array_equal(out32, ref.astype(np.float32))
        else:
            # ITK's own prefilter is truncated at 1e-10: an unchanged axis differs by ~1e-11
            assert relative_error(out64, ref, data) < 1e-9
            assert relative_error(out32, ref, data) < 1e-5  # contract: 1e-3


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("kind", ["random", "smooth"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_dtypes_orders_and_rounding(dtype, kind, order):
    shape, new_shape = (23, 32, 28), (11, 45, 28)
    data = np.asarray(make_data(shape, dtype, kind, seed=3), order=order)
    ref = itk_reference(data, new_shape)
    out = resample_array(data, new_shape)
    assert out.dtype == np.float32 and out.shape == new_shape
    assert relative_error(out, ref, data) < 1e-5  # contract: 1e-3
    assert relative_error(resample_array(data, new_shape, precision=np.float64), ref, data) < 1e-9
    if np.dtype(dtype).kind in "iu":
        a, b = np.rint(out.astype(np.float64)), np.rint(ref)
        assert np.mean(a == b) >= 0.999
        assert np.max(np.abs(a - b)) <= 1


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest"])
def test_two_dimensional_input(interpolation):
    data = make_data((33, 20), np.float64, "smooth", seed=5)
    ref = itk_reference(data, (14, 47), ITK[interpolation])
    out = resample_array(data, (14, 47), interpolation, precision=np.float64)
    assert relative_error(out, ref, data) < 1e-12


@pytest.mark.parametrize(
    "n_in,n_out",
    [(4, 2), (6, 3), (8, 2), (12, 9), (20, 15), (40, 12), (512, 224), (48, 36)],
)
def test_nearest_half_way_ties_match_itk(n_in, n_out):
    # x = (j + 0.5) * n_in / n_out - 0.5 hits k + 0.5 exactly for some j; ITK rounds half up,
    # but after computing x in float64 (origin + j * spacing; on its x/scanline axis
    # start + alpha * (end - start)), so noisy ties can go either way.
    j = np.arange(n_out)
    assert np.any(((2 * j + 1) * n_in) % (2 * n_out) == 0)  # the case has exact ties
    line = np.arange(n_in, dtype=np.float64)
    for shape, new_shape in [((n_in, 1, 1), (n_out, 1, 1)), ((1, 1, n_in), (1, 1, n_out)), ((1, n_in), (1, n_out))]:
        data = line.reshape(shape)
        ref = itk_reference(data, new_shape, sitk.sitkNearestNeighbor)
        out = resample_array(data, new_shape, "nearest", precision=np.float64)
        np.testing.assert_array_equal(out, ref)
    if n_in == 4:  # x = 0.5, 2.5 exactly: round half up
        np.testing.assert_array_equal(resample_array(line, (2,), "nearest"), [1.0, 3.0])


def test_nearest_ties_on_a_volume():
    data = make_data((12, 8, 20), np.int16, "random", seed=9)
    ref = itk_reference(data, (9, 4, 12), sitk.sitkNearestNeighbor)
    for order in "CF":
        out = resample_array(np.asarray(data, order=order), (9, 4, 12), "nearest")
        np.testing.assert_array_equal(out, ref.astype(np.float32))


@pytest.mark.parametrize("interpolation", ["linear", "bspline"])
def test_upsampling_edges_match_itk(interpolation):
    # upsampling puts sample points in [-0.5, 0) and (n - 1, n - 0.5]: linear clamps there
    data = make_data((6, 5, 7), np.float64, "random", seed=11)
    ref = itk_reference(data, (17, 16, 30), ITK[interpolation])
    out = resample_array(data, (17, 16, 30), interpolation, precision=np.float64)
    assert relative_error(out, ref, data) < 1e-12
    if interpolation == "linear":  # the outermost output planes are the edge planes' values
        edge = resample_array(data[:1], (1, 16, 30), "linear", precision=np.float64)
        np.testing.assert_allclose(out[:1], edge, rtol=0, atol=1e-12)


def test_length_two_axis_upsampled_uses_true_mirror():
    # ITK maps tap index 3 to -1 on a 2-sample line (it reads outside the line); where all
    # its taps are valid it agrees with us, and our mirror is symmetric as it should be.
    data = make_data((2, 3, 5), np.float64, "random", seed=13)
    out = resample_array(data, (4, 3, 5), precision=np.float64)
    ref = itk_reference(data, (4, 3, 5))
    assert relative_error(out[:3], ref[:3], data) < 1e-12  # x = -0.25, 0.25, 0.75
    np.testing.assert_allclose(out[0], out[1], rtol=0, atol=1e-12)  # f(-x) = f(x)
    np.testing.assert_allclose(out[3], out[2], rtol=0, atol=1e-12)  # f(1 + x) = f(1 - x)


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest"])
@pytest.mark.parametrize("precision", [np.float32, np.float64])
def test_constant_data_stays_constant(interpolation, precision):
    data = np.full((7, 20, 3), 1234, dtype=np.int16)
    out = resample_array(data, (15, 6, 1), interpolation, precision=precision)
    # (bspline in float64: ITK's own IIR start is truncated at 1e-10, so ~1e-12 here)
    tol = 1e-6 if precision == np.float32 else 1e-10
    np.testing.assert_allclose(out, 1234.0, rtol=tol, atol=0)
    if interpolation == "nearest":
        assert np.all(out == 1234.0)


def test_unchanged_shape_returns_a_converted_copy():
    data = make_data((4, 5, 6), np.int16, "random")
    out = resample_array(data, (4, 5, 6))
    assert out.dtype == np.float32 and not np.shares_memory(out, data)
    np.testing.assert_array_equal(out, data.astype(np.float32))
    ref = itk_reference(data, (4, 5, 6))
    assert relative_error(out, ref, data) < 1e-6


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest"])
def test_input_not_modified_and_layout_kept(interpolation):
    for order in "CF":
        data = np.asarray(make_data((9, 12, 22), np.float32, "random"), order=order)
        before = data.copy(order="A")
        data.flags.writeable = False  # would raise if the engine wrote into it
        out = resample_array(data, (5, 25, 22), interpolation)
        np.testing.assert_array_equal(data, before)
        assert out.flags.c_contiguous if order == "C" else out.flags.f_contiguous
        assert not np.shares_memory(out, data)


def test_non_contiguous_input():
    data = make_data((20, 24, 30), np.float64, "random")
    view = data[::2, :, 3:25].transpose(2, 0, 1)  # strided and permuted
    ref = itk_reference(np.ascontiguousarray(view), (9, 5, 30))
    out = resample_array(view, (9, 5, 30), precision=np.float64)
    assert relative_error(out, ref, view) < 1e-12


@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
def test_small_blocks_and_threads_give_identical_results(monkeypatch, interpolation):
    # Shrink the block/group sizes so that even small arrays go through many blocks, plane
    # groups and thread splits: the arithmetic per sample must not depend on them.
    # (C- and F-ordered inputs may run the axes in another order: rounding differs slightly.)
    data = make_data((26, 40, 44), np.int16, "smooth", seed=17)
    for new_shape in [(11, 17, 20), (30, 85, 50), (26, 13, 90)]:
        ref = itk_reference(data, new_shape, ITK[interpolation])
        for order in "CF":
            x = np.asarray(data, order=order)
            base = resample_array(x, new_shape, interpolation)
            assert relative_error(base, ref, data) < 1e-5
            np.testing.assert_array_equal(resample_array(x, new_shape, interpolation, threads=2), base)
            with monkeypatch.context() as m:
                m.setattr(engine, "_ROW_ELEMS", 100)
                m.setattr(engine, "_GROUP_BYTES", 4000)
                m.setattr(engine, "_MIN_ROW", 16)
                for threads in (1, 2, 3):
                    out = resample_array(x, new_shape, interpolation, threads=threads)
                    np.testing.assert_array_equal(out, base)


def test_four_dimensional_matches_three_dimensional():
    data = make_data((8, 9, 10), np.float64, "random", seed=19)
    out3 = resample_array(data, (5, 13, 6), precision=np.float64)
    # (same operator; only the float64 rounding of ITK-style sample positions differs)
    out4 = resample_array(data[..., None], (5, 13, 6, 1), precision=np.float64)
    np.testing.assert_allclose(out4[..., 0], out3, rtol=0, atol=1e-12 * np.ptp(data))
    rep = resample_array(data[..., None], (5, 13, 6, 3), precision=np.float64)
    for k in range(3):
        np.testing.assert_array_equal(rep[..., k], out4[..., 0])


@pytest.mark.parametrize(
    "args,kwargs,message",
    [
        ((np.zeros((4, 4, 4)), (2, 2)), {}, "new_shape has 2 entries"),
        ((np.zeros((4, 4, 4)), (2, 2, 2, 2)), {}, "new_shape has 4 entries"),
        ((np.zeros((4, 4, 4)), (2, 0, 2)), {}, "positive"),
        ((np.zeros((4, 4, 4)), (2, -3, 2)), {}, "positive"),
        ((np.zeros((4, 4, 4)), (2, 2.0, 2)), {}, "ints"),
        ((np.zeros((4, 4, 4)), (2, True, 2)), {}, "ints"),
        ((np.zeros((4, 4, 4)), 8), {}, "sequence"),
        ((np.zeros((4, 4, 4)), "222"), {}, "sequence"),
        ((np.zeros((4, 4, 4)), (2, 2, 2), "cubic"), {}, "interpolation"),
        ((np.zeros((4, 4, 4)), (2, 2, 2), None), {}, "interpolation"),
        ((np.zeros((4, 4, 4)), (2, 2, 2)), {"precision": np.float16}, "precision"),
        ((np.zeros((4, 4, 4)), (2, 2, 2)), {"precision": np.int32}, "precision"),
        ((np.zeros((4, 4, 4)), (2, 2, 2)), {"threads": 0}, "threads"),
        ((np.zeros((4, 4, 4)), (2, 2, 2)), {"threads": 1.5}, "threads"),
        ((np.zeros((0, 4, 4)), (2, 2, 2)), {}, "empty"),
        ((np.zeros((4, 4), complex), (2, 2)), {}, "dtype"),
        ((np.array(3.0), ()), {}, "axis"),
    ],
)
def test_bad_arguments_raise_value_error(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        resample_array(*args, **kwargs)


def test_numpy_integer_sizes_accepted():
    data = make_data((6, 6, 6), np.float64, "random")
    out = resample_array(data, np.array([3, 4, 5]), "linear")
    assert out.shape == (3, 4, 5)


# --------------------------------------------------------------------------- anti-aliasing


def scipy_blur(data, sigmas):
    """The reference: scipy's Gaussian (mirror, truncate 4) on each axis, in float64."""
    from scipy.ndimage import gaussian_filter1d

    out = np.asarray(data, dtype=np.float64)
    for axis, sigma in enumerate(sigmas):
        if sigma > 0:
            out = gaussian_filter1d(out, sigma, axis=axis, mode="mirror", truncate=4.0)
    return out


# (shape, new shape, sigmas): shrinking axes as antialias_sigmas gives them, kernels wider
# than the axis (radius > n - 1, the mirror wraps several times), a blurred axis that keeps
# its size, one that grows, 2- and 1-sample axes, sigmas too small for a kernel (radius 0)
AA_CASES = [
    ((40, 36, 30), (17, 15, 13), (0.61, 0.58, 0.60)),
    ((48, 20, 25), (12, 20, 25), (1.12, 0.0, 0.0)),  # only axis 0 (outermost in C order)
    ((20, 24, 45), (20, 24, 9), (0.0, 0.0, 1.41)),  # only the innermost axis
    ((6, 30, 4), (2, 13, 1), (2.5, 0.63, 3.0)),  # radius 10 / 12 on 6 / 4 samples
    ((3, 2, 40), (1, 1, 11), (1.0, 0.5, 1.0)),  # 2 -> 1 with a blur, 3 -> 1
    ((1, 20, 18), (1, 9, 18), (0.9, 0.7, 0.8)),  # size-1 axis; blurred unchanged axis
    ((22, 17, 12), (9, 30, 12), (0.66, 0.4, 0.05)),  # blurred growing axis; radius 0
]


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest"])
@pytest.mark.parametrize("shape,new_shape,sigmas", AA_CASES)
def test_antialias_equals_scipy_blur_then_resample(shape, new_shape, sigmas, interpolation):
    data = make_data(shape, np.float64, "random", seed=sum(shape))
    ref = resample_array(scipy_blur(data, sigmas), new_shape, interpolation, precision=np.float64)
    for order in "CF":
        x = np.asarray(data, order=order)
        for threads in (1, 2):
            out64 = resample_array(x, new_shape, interpolation, precision=np.float64,
                                   threads=threads, antialias_sigmas=sigmas)
            out32 = resample_array(x, new_shape, interpolation, threads=threads,
                                   antialias_sigmas=np.array(sigmas))
            assert out64.dtype == np.float64 and out32.dtype == np.float32
            assert out64.shape == out32.shape == new_shape
            assert out64.flags.c_contiguous if order == "C" else out64.flags.f_contiguous
            # the blur is applied after the prefilter (they commute up to ITK's truncated
            # IIR start, ~1e-10): float64 agrees to ~1e-11 here
            assert relative_error(out64, ref, data) < 1e-9
            assert relative_error(out32, ref, data) < 1e-5


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
def test_antialias_with_the_workflow_sigmas(dtype, order, monkeypatch):
    from nii_resample.antialias import antialias_sigmas, gaussian_blur

    data = np.asarray(make_data((64, 56, 30), dtype, "smooth", seed=21), order=order)
    new_shape = (28, 24, 13)
    sigmas = antialias_sigmas(data.shape, new_shape)
    ref = resample_array(gaussian_blur(data, sigmas, np.float64), new_shape,
                         precision=np.float64)
    assert relative_error(resample_array(data, new_shape, precision=np.float64,
                                         antialias_sigmas=sigmas), ref, data) < 1e-6
    base = resample_array(data, new_shape, antialias_sigmas=sigmas)
    assert relative_error(base, ref, data) < 1e-5
    # many blocks, plane groups and thread splits: the same arithmetic per sample
    with monkeypatch.context() as m:
        m.setattr(engine, "_ROW_ELEMS", 100)
        m.setattr(engine, "_GROUP_BYTES", 4000)
        m.setattr(engine, "_MIN_ROW", 16)
        for threads in (1, 2, 3):
            out = resample_array(data, new_shape, threads=threads, antialias_sigmas=sigmas)
            np.testing.assert_array_equal(out, base)


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest"])
@pytest.mark.parametrize("sigmas", [None, (0, 0, 0), (0.0, 0.0, 0.0), [0.1, 0.0, 0.12]])
def test_no_or_zero_sigmas_are_bit_identical_to_no_antialias(sigmas, interpolation):
    # (sigma < 0.125: scipy's radius is 0, its kernel [1.0]: no blur either)
    for order in "CF":
        data = np.asarray(make_data((20, 33, 14), np.int16, "random", seed=23), order=order)
        for shape in [(9, 40, 14), (20, 33, 14)]:
            plain = resample_array(data, shape, interpolation)
            out = resample_array(data, shape, interpolation, antialias_sigmas=sigmas)
            np.testing.assert_array_equal(out, plain)
            assert out.dtype == plain.dtype and out.flags.f_contiguous == plain.flags.f_contiguous


def test_antialias_keeps_constants_and_the_input():
    data = np.full((30, 7, 12), 1234, dtype=np.int16)
    data.flags.writeable = False
    for interpolation in ("bspline", "linear", "nearest"):
        out = resample_array(data, (11, 3, 12), interpolation, precision=np.float64,
                             antialias_sigmas=(0.8, 5.0, 0.9))
        np.testing.assert_allclose(out, 1234.0, rtol=1e-10, atol=0)
    assert np.all(data == 1234)


@pytest.mark.parametrize(
    "sigmas,message",
    [
        ((1.0, 1.0), "2 entries"),
        ((1.0, -0.5, 1.0), ">= 0"),
        ((1.0, float("nan"), 1.0), "finite"),
        ((1.0, float("inf"), 1.0), "finite"),
        ((1.0, "1", 1.0), "numbers"),
        ((1.0, True, 1.0), "numbers"),
        (1.0, "sequence"),
        ("111", "sequence"),
    ],
)
def test_bad_antialias_sigmas_raise_value_error(sigmas, message):
    with pytest.raises(ValueError, match=message):
        resample_array(np.zeros((4, 4, 4)), (2, 2, 2), antialias_sigmas=sigmas)


# --------------------------------------------------------------------------- bspline as gemms


def test_prefilter_matrix_is_the_mirror_bspline_prefilter():
    from scipy.ndimage import spline_filter1d

    rng = np.random.default_rng(29)
    for n in (2, 3, 7, 18, 19, 64, 301):
        line = rng.standard_normal(n)
        ours = engine._GAIN * (engine._prefilter_matrix(n) @ line)
        ref = spline_filter1d(line, order=3, mode="mirror")
        # (ITK's causal start, which we reproduce, is truncated at 1e-10 for n > 18)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9 * np.abs(line).max())


def test_bspline_passes_use_one_blas_thread(monkeypatch):
    from threadpoolctl import threadpool_info

    seen = []
    run = engine._AxisOp.run_matrix

    def spy(self, *args):
        seen.extend(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        return run(self, *args)

    monkeypatch.setattr(engine._AxisOp, "run_matrix", spy)
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    for threads in (1, 2):
        resample_array(make_data((30, 40, 50), np.int16, "smooth"), (13, 17, 70), threads=threads)
    assert seen and set(seen) == {1}
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before


def test_padded_gemm_tiles_give_identical_results(monkeypatch):
    # runs longer than one gemm tile and not a multiple of it (padded last tiles), in lines
    # and in columns; plane groups and threads must not change a single bit
    data = np.asarray(make_data((37, 23, 1100), np.int16, "smooth", seed=31), order="F")
    new_shape = (16, 40, 530)
    sigmas = (1.0, 0.0, 0.7)
    ref = itk_reference(data, new_shape)
    base = resample_array(data, new_shape)
    assert relative_error(base, ref, data) < 1e-5
    blurred = resample_array(data, new_shape, antialias_sigmas=sigmas)
    with monkeypatch.context() as m:
        m.setattr(engine, "_GROUP_BYTES", 20000)
        for threads in (1, 2, 3):
            np.testing.assert_array_equal(resample_array(data, new_shape, threads=threads), base)
            out = resample_array(data, new_shape, threads=threads, antialias_sigmas=sigmas)
            np.testing.assert_array_equal(out, blurred)
