"""Uncompressed `.nii` inputs are resampled like `.nii.gz` ones; ambiguous or empty folders
are refused in one sentence that says what the folder holds."""

import nibabel as nib
import numpy as np
import pytest

from support import affine_from, rotation, run_snakemake, smooth_volume, write_nifti
from nii_resample.api import resampling_dataset
from nii_resample.errors import InputFolderError
from nii_resample.settings import discover_volumes


def _pair(folder, name, seed):
    """The same volume as `<name>.nii` in `folder` and as `<name>.nii.gz` in `folder`/../gz."""
    data = smooth_volume((26, 22, 14), np.int16, seed=seed)
    affine = affine_from((0.9, 1.1, 2.5), (-20.0, 14.0, 7.5), rotation(20, 1))
    plain = write_nifti(folder / f"{name}.nii", data, affine)
    gzipped = write_nifti(folder.parent / "gz" / f"{name}.nii.gz", data, affine)
    return plain, gzipped


def test_workflow_resamples_plain_nii_like_nii_gz(tmp_path):
    folder = tmp_path / "in"
    _pair(folder, "plain", seed=1)
    write_nifti(folder / "gzipped.nii.gz", smooth_volume((20, 20, 10), seed=2), affine_from((1, 1, 2)))
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [12, 10, 8]}
    run_snakemake(tmp_path / "work", config)
    run_snakemake(tmp_path / "work_gz", {**config, "nii_folder": str(tmp_path / "gz"),
                                        "output_path": str(tmp_path / "out_gz")})
    plain = nib.load(tmp_path / "out" / "plain" / "plain_resampled.nii.gz")
    reference = nib.load(tmp_path / "out_gz" / "plain" / "plain_resampled.nii.gz")
    assert plain.shape == (12, 10, 8)
    np.testing.assert_array_equal(np.asanyarray(plain.dataobj), np.asanyarray(reference.dataobj))
    np.testing.assert_allclose(plain.affine, reference.affine, atol=1e-6)
    assert (tmp_path / "out" / "gzipped" / "gzipped_resampled.nii.gz").exists()
    manifest = (tmp_path / "out" / "manifest.tsv").read_text()
    assert "plain.nii\t" in manifest and "gzipped.nii.gz\t" in manifest


def test_api_accepts_plain_nii(tmp_path):
    _pair(tmp_path / "in", "scan", seed=3)
    written = resampling_dataset(tmp_path / "in", tmp_path / "out", (8, 8, 6), "folder", cores=1)
    assert written == [str(tmp_path / "out" / "scan_resampled.nii.gz")]
    assert nib.load(written[0]).shape == (8, 8, 6)


def test_same_name_as_nii_and_nii_gz_is_refused(tmp_path):
    folder = tmp_path / "in"
    _pair(folder, "a", seed=4)
    write_nifti(folder / "a.nii.gz", smooth_volume((10, 10, 10)), affine_from((1, 1, 1)))
    with pytest.raises(InputFolderError, match=r"holds both a\.nii and a\.nii\.gz"):
        discover_volumes(folder)
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [8, 8, 8]}
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert "holds both a.nii and a.nii.gz, which would be written to the same a_resampled.nii.gz" in (
        result.output)
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_a_folder_without_volumes_says_what_it_holds(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("notes.txt", "scan.dcm", "b.png", "c.csv", ".hidden.nii.gz"):
        (folder / name).write_bytes(b"x")
    (folder / "sub-01").mkdir()
    with pytest.raises(InputFolderError) as raised:
        discover_volumes(folder)
    message = str(raised.value)
    assert "contains no NIfTI volumes (*.nii.gz or *.nii)" in message
    assert "4 files (b.png, c.csv, notes.txt, ...), none of them NIfTI" in message
    assert "1 hidden file (.hidden.nii.gz), skipped" in message
    assert "1 sub-folder (sub-01), not searched" in message
    assert "\n" not in message
