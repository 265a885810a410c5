"""`desired_spacing`: a grid in millimetres. Exactly the spacing asked for, max(1, round(n s / t))
voxels, the centre of the field of view kept; values equal to SimpleITK's Resample onto the
same physical grid (built independently here from SimpleITK's own reading of the file)."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from support import affine_from, rotation, smooth_volume, write_nifti
from nii_resample.volume import resample_volume

SPACING, ORIGIN, DIRECTION = (0.7, 0.85, 2.5), (-61.3, 20.2, -40.0), rotation(20, 1)


def sitk_on_spacing(path, target):
    """SimpleITK's Resample onto `target` mm with the centre of the field of view kept."""
    image = sitk.ReadImage(str(path))
    size = np.array(image.GetSize(), float)
    spacing = np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    new_size = np.maximum(1, np.floor(size * spacing / np.array(target) + 0.5)).astype(int)
    centre = np.array(image.GetOrigin()) + direction @ ((size - 1) / 2 * spacing)
    origin = centre - direction @ ((new_size - 1) / 2 * np.array(target))
    resampled = sitk.Resample(image, new_size.tolist(), sitk.Transform(), sitk.sitkBSpline,
                              origin.tolist(), list(map(float, target)), image.GetDirection(),
                              0.0, sitk.sitkFloat64)
    return resampled, sitk.GetArrayFromImage(resampled).T


@pytest.mark.parametrize("engine", ["fast", "itk"])
@pytest.mark.parametrize("target", [(1.0, 1.0, 1.0), (1.5, 0.6, 3.3)])
def test_spacing_grid_matches_simpleitk_in_millimetres(tmp_path, engine, target):
    data = smooth_volume((48, 40, 14), np.float32, low=0.0, high=1000.0)
    source = write_nifti(tmp_path / "in.nii.gz", data, affine_from(SPACING, ORIGIN, DIRECTION))
    row = resample_volume(source, tmp_path / "out.nii.gz", desired_spacing=target,
                          engine=engine, antialias=False)
    reference, expected = sitk_on_spacing(source, target)
    written = sitk.ReadImage(str(tmp_path / "out.nii.gz"))
    assert written.GetSize() == reference.GetSize()
    assert row["new_size"] == "x".join(map(str, reference.GetSize()))
    np.testing.assert_allclose(written.GetSpacing(), target, rtol=0, atol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), reference.GetDirection(), atol=1e-6)
    result = np.asanyarray(nib.load(tmp_path / "out.nii.gz").dataobj)
    assert result.dtype == np.float32
    expected = np.clip(expected, data.min(), data.max())
    assert np.max(np.abs(result - expected)) <= 1e-5 * np.ptp(data)


def test_centre_of_the_field_of_view_stays(tmp_path):
    data = smooth_volume((37, 29, 11))
    affine = affine_from(SPACING, ORIGIN, DIRECTION)
    source = write_nifti(tmp_path / "in.nii.gz", data, affine)
    resample_volume(source, tmp_path / "out.nii.gz", desired_spacing=(1.1, 1.3, 2.0))
    out = nib.load(tmp_path / "out.nii.gz")
    centre_in = (affine @ [*(np.array(data.shape) - 1) / 2, 1.0])[:3]
    centre_out = (out.affine @ [*(np.array(out.shape) - 1) / 2, 1.0])[:3]
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-4)  # mm, float32 storage
    assert out.shape == (round(37 * 0.7 / 1.1), round(29 * 0.85 / 1.3), round(11 * 2.5 / 2.0))
    assert out.get_data_dtype() == np.int16


def test_label_maps_on_a_spacing_grid_keep_their_labels(tmp_path):
    labels = np.zeros((90, 80, 24), np.uint8)
    labels[10:60, 12:70, 3:18] = 3
    labels[45:85, 20:50, 8:22] = 7
    source = write_nifti(tmp_path / "seg.nii.gz", labels, affine_from(SPACING, ORIGIN))
    row = resample_volume(source, tmp_path / "out.nii.gz", desired_spacing=(1.0, 1.0, 1.0),
                          kind="label_map")
    result = np.asanyarray(nib.load(tmp_path / "out.nii.gz").dataobj)
    assert set(np.unique(result)) <= {0, 3, 7}
    volume_in = {v: np.sum(labels == v) * np.prod(SPACING) for v in (3, 7)}
    volume_out = {v: np.sum(result == v) * 1.0 for v in (3, 7)}
    for value in (3, 7):
        assert abs(volume_out[value] - volume_in[value]) <= 0.05 * volume_in[value]
    assert row["kind"] == "label_map"


def test_exactly_one_grid(tmp_path):
    source = write_nifti(tmp_path / "in.nii.gz", smooth_volume((8, 8, 8)), np.eye(4))
    with pytest.raises(ValueError, match="exactly one"):
        resample_volume(source, tmp_path / "o.nii.gz", (4, 4, 4), desired_spacing=(2, 2, 2))
    with pytest.raises(ValueError, match="exactly one"):
        resample_volume(source, tmp_path / "o.nii.gz")
