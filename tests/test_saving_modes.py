"""Both saving modes put every resampled volume where the user expects it."""

import nibabel as nib
import pandas as pd
import pytest

from support import run_snakemake


@pytest.mark.parametrize("saving_mode", ["case", "folder"])
def test_saving_modes(tmp_path, make_dataset, saving_mode):
    folder, inputs = make_dataset(names=("ct", "mri", "name with spaces"))
    (folder / ".hidden.nii.gz").write_bytes(b"not a volume")
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.nii.gz").write_bytes(b"not a volume")
    output = tmp_path / "deep" / "out"
    config = {"nii_folder": str(folder), "output_path": str(output), "desired_volume": [10, 9, 8],
              "saving_mode": saving_mode}
    run_snakemake(tmp_path / "work", config)

    for prefix in inputs:
        expected = (output / prefix if saving_mode == "case" else output) / f"{prefix}_resampled.nii.gz"
        assert nib.load(expected).shape == (10, 9, 8)
    volumes = sorted(p.relative_to(output).as_posix() for p in output.rglob("*.nii.gz"))
    if saving_mode == "case":
        assert volumes == ["ct/ct_resampled.nii.gz", "mri/mri_resampled.nii.gz",
                           "name with spaces/name with spaces_resampled.nii.gz"]
    else:
        assert volumes == ["ct_resampled.nii.gz", "mri_resampled.nii.gz",
                           "name with spaces_resampled.nii.gz"]
    manifest = pd.read_csv(output / "manifest.tsv", sep="\t")
    assert sorted(manifest["input_path"]) == sorted(str(p) for p in inputs.values())
    assert set(manifest["status"]) == {"ok"}
    assert not list(output.rglob("*.partial"))


def test_folder_mode_may_write_into_a_subfolder_of_the_inputs(tmp_path, make_dataset):
    """Outputs beside the inputs are never picked up as inputs on the next run."""
    folder, inputs = make_dataset()
    config = {"nii_folder": str(folder), "output_path": str(folder / "resampled"),
              "desired_volume": [8, 8, 8], "saving_mode": "folder"}
    run_snakemake(tmp_path / "work", config)
    again = run_snakemake(tmp_path / "work", config)
    assert "Nothing to be done" in again.output
    assert len(list((folder / "resampled").glob("*_resampled.nii.gz"))) == len(inputs)
