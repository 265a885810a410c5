"""The manifest says what was done to each volume; debug: true prints a summary."""

import nibabel as nib
import numpy as np
import pandas as pd

from support import run_snakemake
from nii_resample.nifti import itk_geometry
from nii_resample.records import RECORD_COLUMNS


def _vector(text):
    return np.array([float(v) for v in text.split(",")])


def test_manifest_rows_describe_each_volume(tmp_path, make_dataset):
    folder, inputs = make_dataset(names=("ct", "mri"))
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output), "desired_volume": [10, 12, 14]}
    run_snakemake(tmp_path / "work", config)
    manifest = pd.read_csv(output / "manifest.tsv", sep="\t", keep_default_na=False)
    assert list(manifest.columns) == list(RECORD_COLUMNS)
    assert list(manifest["input_path"]) == [str(inputs["ct"]), str(inputs["mri"])]
    for _, row in manifest.iterrows():
        source, target = nib.load(row["input_path"]), nib.load(row["output_path"])
        assert row["status"] == "ok" and row["reason"] == ""
        assert row["engine"] == "fast" and row["interpolation"] == "bspline"
        assert row["pixel_type"] == str(source.get_data_dtype())
        assert row["original_size"] == "x".join(map(str, source.shape))
        assert row["new_size"] == "10x12x14"
        old, new = itk_geometry(source.affine), itk_geometry(target.affine)
        np.testing.assert_allclose(_vector(row["original_spacing"]), old["spacing"], rtol=1e-6)
        np.testing.assert_allclose(_vector(row["new_spacing"]), new["spacing"], rtol=1e-6)
        np.testing.assert_allclose(_vector(row["original_origin"]), old["origin"], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(_vector(row["new_origin"]), new["origin"], rtol=1e-6, atol=1e-5)
        data_in = source.get_fdata()
        data_out = target.get_fdata()
        assert row["min_before"] == data_in.min() and row["max_before"] == data_in.max()
        np.testing.assert_allclose([row["min_after"], row["max_after"]],
                                   [data_out.min(), data_out.max()], rtol=1e-6)
        assert data_in.min() <= row["min_after"] <= row["max_after"] <= data_in.max()
        assert row["seconds"] >= 0


def test_debug_prints_a_summary(tmp_path, make_dataset):
    folder, _ = make_dataset(names=("ct", "mri", "third"))
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [10, 12, 14], "debug": True}
    result = run_snakemake(tmp_path / "work", config)
    assert "Resampling summary" in result.output
    assert "volumes found        : 3" in result.output
    assert "target shape (X,Y,Z) : 10x12x14 voxels" in result.output
    assert f"saving mode          : case -> {tmp_path / 'out'}" in result.output

    quiet = run_snakemake(tmp_path / "work2", {**config, "debug": False,
                                                "output_path": str(tmp_path / "out2")})
    assert "Resampling summary" not in quiet.output


def test_a_deleted_record_is_named_when_the_manifest_is_rebuilt(tmp_path, make_dataset):
    """Records are written beside the volumes (not tracked by Snakemake: cheaper planning);
    a record deleted by hand is reported in one line when the manifest next runs."""
    folder, _ = make_dataset(names=("ct", "mri"))
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output), "desired_volume": [8, 8, 8]}
    run_snakemake(tmp_path / "work", config)
    (output / "records" / "ct.tsv").unlink()
    (output / "mri" / "mri_resampled.nii.gz").unlink()  # makes the manifest run again
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert f"ERROR {output / 'records' / 'ct.tsv'}: the record of a resampled volume is missing" in result.output
    assert (output / "mri" / "mri_resampled.nii.gz").exists()  # the other volume was redone
