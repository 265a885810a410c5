"""What a user checks with nibabel survives resampling (apart from the grid itself)."""

import nibabel as nib
import numpy as np
import pytest

from support import affine_from, rotation, smooth_volume
from nii_resample.volume import resample_volume


def write_rich_header(path, data, affine, *, scaled=False):
    image = nib.Nifti1Image(data, affine)
    header = image.header
    header.set_sform(affine, code=4)  # MNI
    header.set_qform(affine, code=2)  # aligned
    header.set_xyzt_units("mm", "msec")
    header.set_intent("estimate", (), name="T1w")
    header["descrip"] = b"scanner X, protocol Y"
    header["pixdim"][4] = 2500.0
    header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"kept as is"))
    if scaled:
        header.set_data_dtype(np.int16)  # float data stored as scaled int16
    nib.save(image, path)
    return nib.load(path)


@pytest.mark.parametrize("engine", ["fast", "itk"])
def test_header_fields_survive(tmp_path, engine):
    affine = affine_from((0.8, 0.9, 3.0), (1.0, 2.0, 3.0), rotation(10, 2))
    source = write_rich_header(tmp_path / "in.nii.gz", smooth_volume((20, 20, 10), np.float32),
                               affine)
    resample_volume(source.get_filename(), tmp_path / "out.nii.gz", (10, 12, 14), engine=engine)
    before, after = source.header, nib.load(tmp_path / "out.nii.gz").header
    for field in ("sform_code", "qform_code", "xyzt_units", "intent_code", "intent_name",
                  "descrip", "datatype", "bitpix"):
        assert after[field] == before[field], field
    assert after["pixdim"][4] == 2500.0
    assert [bytes(e.get_content()) for e in after.extensions] == [b"kept as is"]
    np.testing.assert_allclose(nib.load(tmp_path / "out.nii.gz").get_qform(),
                               nib.load(tmp_path / "out.nii.gz").get_sform(), atol=1e-4)


def test_scaled_integers_stay_scaled_integers(tmp_path):
    """SimpleITK alone would write this as float32 (twice the size) with sform_code 1."""
    affine = affine_from((1.0, 1.0, 2.0))
    values = smooth_volume((24, 24, 12), np.float32, low=0.0, high=6.5)  # e.g. SUV
    source = write_rich_header(tmp_path / "in.nii.gz", values, affine, scaled=True)
    slope, inter = source.dataobj.slope, source.dataobj.inter
    assert slope != 1.0, "the test needs a scaled input"
    record = resample_volume(source.get_filename(), tmp_path / "out.nii.gz", (12, 12, 12))
    result = nib.load(tmp_path / "out.nii.gz")
    assert result.get_data_dtype() == np.int16
    assert (result.dataobj.slope, result.dataobj.inter) == (slope, inter)
    physical = result.get_fdata()
    assert physical.min() >= source.get_fdata().min() - 1e-6
    assert physical.max() <= source.get_fdata().max() + 1e-6
    assert record["max_before"] == pytest.approx(source.get_fdata().max())
    assert record["pixel_type"] == "int16"
