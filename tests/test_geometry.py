"""The resampled grid keeps the physical field of view: checked in millimetres.

NIfTI stores the affine in float32, so geometry read back from disk is compared with a
tolerance of 1e-6 relative to the coordinate's magnitude (|a - b| <= 1e-6 * max(1, |a|));
the grid the code computes (float64) is compared at 1e-9.
"""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from support import affine_from, fov_corners, rotation, run_snakemake, smooth_volume, write_nifti
from nii_resample.nifti import itk_geometry, resampled_affine
from nii_resample.volume import resample_volume


def assert_mm_close(actual, expected, relative=1e-6):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    tolerance = relative * np.maximum(1.0, np.abs(expected))
    assert np.all(np.abs(actual - expected) <= tolerance), (actual, expected)


CASES = [
    # shape, spacing, origin, direction, desired
    ((40, 30, 20), (0.7, 0.7, 2.5), (-120.3, 80.1, -33.0), rotation(20, 2), (16, 16, 16)),
    ((17, 23, 9), (1.0, 1.3, 4.0), (3.0, -4.0, 5.0), rotation(-35, 0) @ rotation(10, 1), (34, 40, 27)),
    ((32, 32, 8), (0.5, 0.5, 5.0), (0.0, 0.0, 0.0), np.diag([-1.0, -1.0, 1.0]), (16, 48, 8)),
]


@pytest.mark.parametrize("engine", ["fast", "itk"])
@pytest.mark.parametrize("shape, spacing, origin, direction, desired", CASES)
def test_field_of_view_is_kept(tmp_path, engine, shape, spacing, origin, direction, desired):
    affine = affine_from(spacing, origin, direction)
    source = write_nifti(tmp_path / "in.nii.gz", smooth_volume(shape), affine)
    target = tmp_path / "out.nii.gz"
    record = resample_volume(source, target, desired, engine=engine)

    stored_in = nib.load(source).affine  # what the float32 header really holds
    image = nib.load(target)
    assert image.shape == tuple(desired)
    expected_spacing = np.asarray(spacing) * np.asarray(shape) / np.asarray(desired)
    assert_mm_close(image.header.get_zooms(), expected_spacing)
    # Same outer corners, same direction.
    assert_mm_close(fov_corners(image.affine, desired), fov_corners(stored_in, shape))
    new_direction = image.affine[:3, :3] / np.linalg.norm(image.affine[:3, :3], axis=0)
    assert_mm_close(new_direction, direction)
    # The origin moved by D (new - old spacing) / 2, as ITK reports it (LPS).
    old, new = itk_geometry(stored_in), itk_geometry(image.affine)
    assert_mm_close(new["origin"], old["origin"] + old["direction"] @ (new["spacing"] - old["spacing"]) / 2)
    assert record["new_size"] == "x".join(map(str, desired))


def test_simpleitk_reads_the_same_grid(tmp_path):
    """SimpleITK, reading our output, sees the corners where SimpleITK saw the input's."""
    affine = affine_from((0.8, 0.9, 3.0), (-12.5, 30.25, 80.0), rotation(15, 2))
    source = write_nifti(tmp_path / "in.nii.gz", smooth_volume((30, 24, 12)), affine)
    resample_volume(source, tmp_path / "out.nii.gz", (12, 12, 20))
    before, after = sitk.ReadImage(str(source)), sitk.ReadImage(str(tmp_path / "out.nii.gz"))

    def corners(image):
        size = np.array(image.GetSize())
        return [image.TransformContinuousIndexToPhysicalPoint(list(map(float, c)))
                for c in (-0.5 * np.ones(3), size - 0.5)]

    assert_mm_close(corners(after), corners(before))
    assert_mm_close(after.GetDirection(), before.GetDirection())
    assert after.GetSize() == (12, 12, 20)


def test_grid_arithmetic_is_exact():
    affine = affine_from((0.7, 0.7, 2.5), (-120.3, 80.1, -33.0), rotation(20, 2))
    new = resampled_affine(affine, (512, 512, 300), (224, 224, 128))
    np.testing.assert_allclose(fov_corners(new, (224, 224, 128)), fov_corners(affine, (512, 512, 300)),
                               atol=1e-9)


def test_naive_same_origin_resample_would_shift_the_image(tmp_path):
    """Why the origin moves: keeping it (as a naive resample does) shifts the field of view."""
    affine = affine_from((1.0, 1.0, 1.0))
    naive = affine_from((4.0, 4.0, 4.0))  # same origin, 4x coarser spacing
    ours = resampled_affine(affine, (64, 64, 64), (16, 16, 16))
    naive_shift = fov_corners(naive, (16, 16, 16))[0] - fov_corners(affine, (64, 64, 64))[0]
    assert np.allclose(naive_shift, -1.5)  # half a new voxel minus half an old one
    assert np.allclose(fov_corners(ours, (16, 16, 16)), fov_corners(affine, (64, 64, 64)))


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float32, np.float64])
def test_pixel_type_is_kept(tmp_path, dtype):
    low, high = (0, 255) if dtype == np.uint8 else (-1000, 1500)
    source = write_nifti(tmp_path / "in.nii.gz", smooth_volume((20, 20, 10), dtype, low=low, high=high),
                         affine_from((1, 1, 2)))
    resample_volume(source, tmp_path / "out.nii.gz", (9, 9, 9))
    image = nib.load(tmp_path / "out.nii.gz")
    assert image.get_data_dtype() == np.dtype(dtype)


@pytest.mark.parametrize("engine", ["fast", "itk"])
def test_overshoot_is_clamped_and_integers_are_rounded(tmp_path, engine):
    """A step edge makes B-spline ring past the input range: the output stays inside it, and
    integers are the float result rounded to nearest (not truncated)."""
    data = np.zeros((24, 24, 24), np.int16)
    data[8:16, 8:16, 8:16] = 1000
    source = write_nifti(tmp_path / "in.nii.gz", data, affine_from((1, 1, 1)))
    resample_volume(source, tmp_path / "out.nii.gz", (37, 37, 37), engine=engine, antialias=False)
    result = np.asanyarray(nib.load(tmp_path / "out.nii.gz").dataobj)
    assert result.min() == 0 and result.max() == 1000

    reference = sitk_reference(source, (37, 37, 37))
    unclamped = reference.min() < 0 and reference.max() > 1000
    assert unclamped, "the test volume must make B-spline overshoot"
    expected = np.rint(np.clip(reference, 0, 1000)).astype(np.int16)
    differences = np.abs(result.astype(int) - expected)
    if engine == "itk":
        assert differences.max() == 0
    else:
        assert differences.max() <= 1 and np.mean(differences == 0) >= 0.999


def sitk_reference(path, desired):
    """SimpleITK's own Resample, read and gridded independently of the code under test."""
    image = sitk.ReadImage(str(path))
    old_size = np.array(image.GetSize(), float)
    old_spacing = np.array(image.GetSpacing())
    new_spacing = old_spacing * old_size / np.array(desired, float)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ (new_spacing - old_spacing) / 2
    resampled = sitk.Resample(image, [int(n) for n in desired], sitk.Transform(), sitk.sitkBSpline,
                              origin.tolist(), new_spacing.tolist(), image.GetDirection(), 0.0,
                              sitk.sitkFloat64)
    return sitk.GetArrayFromImage(resampled).T  # (x, y, z) like nibabel


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_workflow_output_matches_simpleitk_resample(tmp_path, dtype):
    """End to end, both engines against SimpleITK's Resample on the corrected grid."""
    affine = affine_from((0.8, 0.9, 3.0), (-12.5, 30.25, 80.0), rotation(15, 2))
    data = smooth_volume((40, 36, 14), dtype)
    source = write_nifti(tmp_path / "in" / "scan.nii.gz", data, affine)
    reference = sitk_reference(source, (20, 24, 28))
    reference = np.clip(reference, data.min(), data.max())
    for engine in ("fast", "itk"):
        config = {"nii_folder": str(tmp_path / "in"), "output_path": str(tmp_path / engine),
                  "desired_volume": [20, 24, 28], "engine": engine, "saving_mode": "folder",
                  "antialias": False}
        run_snakemake(tmp_path / f"work-{engine}", config)
        result = np.asanyarray(nib.load(tmp_path / engine / "scan_resampled.nii.gz").dataobj)
        if dtype == np.int16:
            difference = np.abs(result.astype(int) - np.rint(reference).astype(int))
            assert difference.max() <= (0 if engine == "itk" else 1)
            assert np.mean(difference == 0) >= 0.999
        else:
            scale = data.max() - data.min()
            # README, "Speed and memory": the fast engine agrees to 1e-6 of the range
            tolerance = 1e-6
            assert np.max(np.abs(result - reference)) <= tolerance * scale


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_other_interpolations_keep_the_grid(tmp_path, interpolation):
    data = smooth_volume((20, 18, 10))
    affine = affine_from((1.0, 1.2, 3.0), (4.0, 5.0, 6.0), rotation(25, 2))
    source = write_nifti(tmp_path / "in.nii.gz", data, affine)
    record = resample_volume(source, tmp_path / "out.nii.gz", (13, 9, 17),
                             interpolation=interpolation)
    image = nib.load(tmp_path / "out.nii.gz")
    assert record["interpolation"] == interpolation
    assert_mm_close(fov_corners(image.affine, (13, 9, 17)), fov_corners(nib.load(source).affine, (20, 18, 10)))
    result = np.asanyarray(image.dataobj)
    assert data.min() <= result.min() and result.max() <= data.max()
    if interpolation == "nearest":
        assert set(np.unique(result)) <= set(np.unique(data))
