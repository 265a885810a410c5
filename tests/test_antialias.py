"""Anti-aliasing: the Gaussian prefilter lowers the error against an area average, only
where axes shrink, never on label maps, and both engines apply the same one."""

import nibabel as nib
import numpy as np
import pytest

from support import affine_from, smooth_volume, write_nifti
from nii_resample.antialias import antialias_sigmas, gaussian_blur
from nii_resample.engine import resample_array
from nii_resample.volume import resample_volume


def test_sigma_formula():
    sigmas = antialias_sigmas((512, 512, 300, ), (224, 256, 600))
    assert sigmas[0] == pytest.approx(np.sqrt(((512 / 224) ** 2 - 1) / 12))
    assert sigmas[1] == pytest.approx(0.5)  # f = 2
    assert sigmas[2] == 0.0  # upsampled axis: no blur


def textured_volume(shape=(48, 48, 48)):
    """Fine texture near the Nyquist limit on smooth anatomy: what aliasing folds over."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    base = smooth_volume(shape, np.float64, seed=4, low=-100, high=100)
    return base + 40 * np.sin(2.6 * x) * np.sin(2.3 * y) + 30 * np.cos(2.9 * z)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_prefilter_lowers_the_error_against_an_area_average(factor):
    volume = textured_volume()
    shape = tuple(n // factor for n in volume.shape)
    truth = volume.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(axis=(1, 3, 5))
    plain = resample_array(volume, shape, precision=np.float64)
    filtered = resample_array(gaussian_blur(volume, antialias_sigmas(volume.shape, shape),
                                            np.float64), shape, precision=np.float64)
    rmse_plain = np.sqrt(np.mean((plain - truth) ** 2))
    rmse_filtered = np.sqrt(np.mean((filtered - truth) ** 2))
    assert rmse_filtered < 0.5 * rmse_plain, (rmse_filtered, rmse_plain)


def test_only_shrinking_axes_of_images_are_filtered(tmp_path):
    data = textured_volume((40, 40, 20)).astype(np.float32)
    source = write_nifti(tmp_path / "in.nii.gz", data, affine_from((1, 1, 2)))
    up = resample_volume(source, tmp_path / "up.nii.gz", (80, 40, 30))
    assert up["antialias"] is False  # nothing shrinks
    plain = resample_volume(source, tmp_path / "plain.nii.gz", (80, 40, 30), antialias=False)
    assert (tmp_path / "up.nii.gz").read_bytes() == (tmp_path / "plain.nii.gz").read_bytes()
    down = resample_volume(source, tmp_path / "down.nii.gz", (20, 40, 30))
    assert down["antialias"] is True
    assert plain["antialias"] is False


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_engines_agree_with_the_prefilter_on(tmp_path, dtype):
    data = smooth_volume((40, 36, 24), dtype)
    source = write_nifti(tmp_path / "in.nii.gz", data, affine_from((0.7, 0.8, 2.0)))
    resample_volume(source, tmp_path / "fast.nii.gz", (16, 15, 10), engine="fast")
    resample_volume(source, tmp_path / "itk.nii.gz", (16, 15, 10), engine="itk")
    fast = np.asanyarray(nib.load(tmp_path / "fast.nii.gz").dataobj).astype(np.float64)
    itk = np.asanyarray(nib.load(tmp_path / "itk.nii.gz").dataobj).astype(np.float64)
    if dtype == np.int16:
        assert np.abs(fast - itk).max() <= 1 and np.mean(fast == itk) >= 0.999
    else:
        assert np.abs(fast - itk).max() <= 1e-3 * (data.max() - data.min())


@pytest.mark.parametrize("engine", ["fast", "itk"])
def test_a_step_just_above_one_shrinks_in_the_job_and_in_its_rebuilt_record(tmp_path, engine):
    """One rule decides whether an axis shrinks (antialias.shrinking): a target spacing a
    hair coarser than the input's (step 1.0000001, the size unchanged) shrinks that axis for
    the blur, in the job's record and in the record rebuilt from the files alike."""
    from nii_resample.antialias import shrinking
    from nii_resample.rebuild import rebuild_record

    source = write_nifti(tmp_path / "ct.nii.gz", smooth_volume((20, 18, 16)),
                         affine_from((1.0, 1.25, 2.0)))
    target = [1.0000001, 1.25, 2.0]
    steps = [t / s for t, s in zip(target, (1.0, 1.25, 2.0))]
    assert list(shrinking(steps)) == [True, False, False]
    sigmas = antialias_sigmas(None, None, steps)
    assert sigmas[0] > 0 and sigmas[1:] == (0.0, 0.0)
    options = {"engine": engine, "interpolation": "bspline", "antialias": True,
               "label_interpolation": "volume_preserving", "kind": "image", "kind_reason": "",
               "orientation": "keep", "desired_volume": None, "desired_spacing": target,
               "crop_or_pad": None, "pad_to_multiple": 1, "reference": None,
               "case_reference": None}
    out = tmp_path / "out.nii.gz"
    job = resample_volume(source, out, **{k: v for k, v in options.items()
                                         if k != "desired_volume"})
    assert job["new_size"] == "20x18x16" and job["antialias"] is True
    rebuilt = rebuild_record(source, out, options)
    assert rebuilt["reason"] == "record rebuilt from the files" and rebuilt["seconds"] == ""
    same = [key for key in job if key not in ("reason", "seconds")]
    assert {key: rebuilt[key] for key in same} == {key: job[key] for key in same}
    # The same size asked as a number of voxels: nothing shrinks, no blur, in both records.
    job = resample_volume(source, out, (20, 18, 16), engine=engine)
    options.update(desired_volume=[20, 18, 16], desired_spacing=None)
    assert job["antialias"] is False and rebuild_record(source, out, options)["antialias"] is False
