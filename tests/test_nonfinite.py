"""NaN/inf voxels are missing data: interpolated from their finite neighbours, never spread.

The reference for a volume with non-finite voxels is the same volume resampled with finite
values there (SimpleITK itself has no notion of missing data).
"""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from support import affine_from, rotation, run_snakemake, smooth_volume, write_nifti
from nii_resample import volume as volume_module
from nii_resample.engine import resample_array
from nii_resample.volume import resample_volume

ENGINES = ("fast", "itk")
INTERPOLATIONS = ("bspline", "linear", "nearest")


def _resample(tmp_path, name, data, affine, shape, **options):
    """Write `data`, resample it, return (output voxels, manifest row)."""
    source = write_nifti(tmp_path / f"{name}.nii.gz", data, affine)
    target = tmp_path / f"{name}_out.nii.gz"
    row = resample_volume(source, target, shape, **options)
    return np.asanyarray(nib.load(target).dataobj), row


def _shell(shape, radius=0.85):
    """True outside an ellipsoid: the NaN background of a masked statistic map."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return np.sqrt(sum(g**2 for g in grids)) > radius


def _distance_to(points, in_shape, out_shape) -> np.ndarray:
    """Chebyshev distance, in input voxels, from each output voxel centre to the nearest point."""
    factors = np.asarray(in_shape) / np.asarray(out_shape)
    axes = [(np.arange(n) + 0.5) * f - 0.5 for n, f in zip(out_shape, factors)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return np.min([np.abs(centres - np.asarray(p)).max(axis=-1) for p in points], axis=0)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_nan_background_is_kept_and_the_inside_matches_the_finite_result(
    tmp_path, engine, interpolation
):
    in_shape, out_shape = (48, 44, 36), (24, 22, 18)
    statistic = smooth_volume(in_shape, np.float32, seed=3, low=-5.0, high=8.0)
    missing = _shell(in_shape)
    masked = np.where(missing, np.float32(np.nan), statistic)
    affine = affine_from((1.5, 1.5, 2.0), (-30.0, 12.0, 5.0), rotation(10, 2))
    options = {"engine": engine, "interpolation": interpolation}
    out, row = _resample(tmp_path, "tmap", masked, affine, out_shape, **options)
    reference, _ = _resample(tmp_path, "full", statistic, affine, out_shape, **options)

    assert abs(np.isnan(out).mean() - missing.mean()) <= 0.03
    assert not np.isinf(out).any()
    finite = out[np.isfinite(out)]
    assert statistic[~missing].min() <= finite.min() and finite.max() <= statistic[~missing].max()
    # >= 3 output voxels from the NaN region, the result is the one without NaNs at all.
    missing_out = resample_array(missing, out_shape, "nearest") > 0
    far = ndimage.distance_transform_edt(~missing_out) >= 3
    assert far.sum() > 500
    value_range = statistic.max() - statistic.min()
    np.testing.assert_allclose(out[far], reference[far], rtol=0, atol=1e-4 * value_range)
    assert row["nonfinite_in"] == missing.sum()
    assert row["nonfinite_out"] == np.isnan(out).sum()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_single_nonfinite_voxels_in_a_ct_do_not_spread(tmp_path, engine, interpolation):
    in_shape, out_shape = (40, 40, 30), (20, 20, 15)
    ct = smooth_volume(in_shape, np.float32, seed=5)
    # Odd indices: the samples nearest-neighbour picks when halving, so it meets them.
    bad = {(21, 21, 15): np.inf, (9, 27, 7): np.nan, (31, 13, 23): -np.inf}
    corrupted = ct.copy()
    for index, value in bad.items():
        corrupted[index] = value
    affine = affine_from((0.7, 0.7, 1.2), (100.0, -50.0, 20.0))
    options = {"engine": engine, "interpolation": interpolation}
    out, row = _resample(tmp_path, "ct", corrupted, affine, out_shape, **options)
    reference, _ = _resample(tmp_path, "clean", ct, affine, out_shape, **options)

    assert not np.isinf(out).any()
    if interpolation == "nearest":
        # A sample that is missing stays missing; every other one is the input's own value.
        picked = [(i // 2, j // 2, k // 2) for i, j, k in bad]
        assert sorted(zip(*np.nonzero(np.isnan(out)))) == sorted(picked)
        np.testing.assert_array_equal(out[np.isfinite(out)], reference[np.isfinite(out)])
    else:
        assert np.isfinite(out).all()
        _check_near_and_far(out, reference, corrupted, list(bad))
    assert row["nonfinite_in"] == 3 and row["nonfinite_out"] == np.isnan(out).sum()


def _check_near_and_far(out, reference, corrupted, bad):
    """Near each bad voxel: within its finite neighbours' range; far: as without them."""
    in_shape, out_shape = corrupted.shape, out.shape
    for index in bad:
        box = corrupted[tuple(slice(i - 3, i + 4) for i in index)]
        box = box[np.isfinite(box)]
        near = out[_distance_to([index], in_shape, out_shape) <= 3]
        assert box.min() <= near.min() and near.max() <= box.max()
    # Beyond the kernel's support (B-spline prefilter: 0.268^8 ~ 3e-5), as without them.
    far = _distance_to(bad, in_shape, out_shape) > 8
    value_range = np.ptp(reference)
    np.testing.assert_allclose(out[far], reference[far], rtol=0, atol=1e-4 * value_range)


@pytest.mark.parametrize("engine", ENGINES)
def test_upsampling_keeps_missing_voxels_where_they_were(tmp_path, engine):
    in_shape, out_shape = (40, 40, 30), (56, 60, 45)
    ct = smooth_volume(in_shape, np.float32, seed=6)
    bad = [(20, 20, 15), (9, 27, 8)]
    for index in bad:
        ct[index] = np.inf
    out, row = _resample(tmp_path, "ct", ct, affine_from((0.7, 0.7, 1.2)), out_shape, engine=engine)
    nan_distance = _distance_to(bad, in_shape, out_shape)[np.isnan(out)]
    # NaN only on the bad voxels' own footprint (half a voxel each way), about their volume.
    assert len(nan_distance) > 0 and nan_distance.max() < 0.75
    assert row["nonfinite_out"] <= len(bad) * np.prod(np.asarray(out_shape) / in_shape) * 2
    assert not np.isinf(out).any()


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_finite_volumes_take_one_resample_and_are_unchanged(tmp_path, monkeypatch, dtype):
    data = smooth_volume((30, 26, 20), dtype, seed=7)
    affine = affine_from((0.9, 0.9, 2.5))
    calls = []
    resample = volume_module.resample_with_fast_engine
    monkeypatch.setattr(
        volume_module,
        "resample_with_fast_engine",
        lambda *args, **kwargs: calls.append(args[0].dtype) or resample(*args, **kwargs),
    )
    out, row = _resample(tmp_path, "vol", data, affine, (15, 13, 10))
    assert calls == [np.dtype(dtype)]
    # Byte for byte the engine alone on the F-ordered voxels, clamped and cast (as before).
    expected = resample_array(
        np.asfortranarray(data), (15, 13, 10), precision=np.float32, antialias_sigmas=(0.5,) * 3
    )
    expected = volume_module.to_stored_type(expected, data.min(), data.max(), np.dtype(dtype))
    assert out.dtype == dtype and out.tobytes() == expected.tobytes()
    assert row["nonfinite_in"] == 0 and row["nonfinite_out"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_series_frame_with_nan_is_resampled_alone_like_a_volume(tmp_path, engine):
    in_shape, out_shape = (28, 24, 18), (14, 12, 9)
    affine = affine_from((2.0, 2.0, 3.0), (-10.0, 5.0, 0.0))
    frames = [smooth_volume(in_shape, np.float32, seed=t, low=0.0, high=1e4) for t in range(3)]
    frames[1][_shell(in_shape)] = np.nan
    series, row = _resample(
        tmp_path, "pet", np.stack(frames, axis=-1), affine, out_shape, engine=engine
    )
    assert series.shape == out_shape + (3,)
    for t, frame in enumerate(frames):
        alone, _ = _resample(tmp_path, f"frame{t}", frame, affine, out_shape, engine=engine)
        assert series[..., t].tobytes() == alone.tobytes()
    assert not np.isnan(series[..., [0, 2]]).any()
    assert abs(np.isnan(series[..., 1]).mean() - _shell(in_shape).mean()) <= 0.03
    assert row["nonfinite_in"] == _shell(in_shape).sum()
    assert row["nonfinite_out"] == np.isnan(series).sum() > 0


def test_manifest_and_log_count_nonfinite_voxels(tmp_path):
    folder = tmp_path / "in"
    statistic = smooth_volume((30, 28, 20), np.float32, seed=1, low=-4.0, high=6.0)
    statistic[_shell(statistic.shape)] = np.nan
    statistic[15, 14, 10] = np.inf
    write_nifti(folder / "tmap.nii.gz", statistic, affine_from((2.0, 2.0, 2.0)))
    write_nifti(folder / "ct.nii.gz", smooth_volume((30, 28, 20)), affine_from((0.8, 0.8, 2.0)))
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output), "desired_volume": [15, 14, 10]}
    run_snakemake(tmp_path / "work", config)

    manifest = pd.read_csv(output / "manifest.tsv", sep="\t", index_col="input_path")
    tmap = manifest.loc[str(folder / "tmap.nii.gz")]
    written = nib.load(tmap["output_path"]).get_fdata()
    assert tmap["nonfinite_in"] == np.sum(~np.isfinite(statistic))
    assert tmap["nonfinite_out"] == np.sum(np.isnan(written)) > 0
    assert not np.isinf(written).any() and np.isfinite(written[7, 7, 5])
    ct = manifest.loc[str(folder / "ct.nii.gz")]
    assert ct["nonfinite_in"] == 0 and ct["nonfinite_out"] == 0
    log = (output / "logs" / "resample_volume" / "tmap.log").read_text()
    assert f"{tmap['nonfinite_in']} NaN/inf voxels in" in log
    assert f"{tmap['nonfinite_out']} NaN voxels out" in log
    assert "NaN" not in (output / "logs" / "resample_volume" / "ct.log").read_text()
