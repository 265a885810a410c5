"""4-D series (fMRI, DWI): every frame is resampled on the 3 spatial axes; time is kept."""

import nibabel as nib
import numpy as np

from support import affine_from, rotation, smooth_volume
from nii_resample.volume import resample_volume


def test_each_frame_is_resampled_and_time_is_kept(tmp_path):
    affine = affine_from((2.0, 2.0, 3.0), (-10, 5, 0), rotation(5, 0))
    frames = [smooth_volume((24, 20, 12), np.int16, seed=t) for t in range(5)]
    image = nib.Nifti1Image(np.stack(frames, axis=-1), affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 2.0  # TR
    nib.save(image, tmp_path / "bold.nii.gz")

    record = resample_volume(tmp_path / "bold.nii.gz", tmp_path / "out.nii.gz", (12, 10, 6))
    result = nib.load(tmp_path / "out.nii.gz")
    assert result.shape == (12, 10, 6, 5)
    assert result.header.get_zooms() == (4.0, 4.0, 6.0, 2.0)
    assert record["new_size"] == "12x10x6x5"
    data = np.asanyarray(result.dataobj)
    for t, frame in enumerate(frames):
        nib.save(nib.Nifti1Image(frame, affine), tmp_path / f"frame{t}.nii.gz")
        resample_volume(tmp_path / f"frame{t}.nii.gz", tmp_path / f"frame{t}_out.nii.gz", (12, 10, 6))
        expected = np.asanyarray(nib.load(tmp_path / f"frame{t}_out.nii.gz").dataobj)
        assert np.array_equal(data[..., t], expected)
