"""The manifest says what was done to each volume; debug: true prints a summary."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from support import affine_from, run_snakemake, smooth_volume, write_nifti
from nii_resample import ResamplingFailed, resampling_dataset
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


def _varied_folder(make_dataset):
    """int16 CT, float32 MRI with NaN background, a label map, and a volume only upsampled
    (no anti-aliasing): every kind of value a record holds."""
    folder, _ = make_dataset(names=("ct", "mri"))
    mri = nib.load(folder / "mri.nii.gz")
    data = np.asarray(mri.dataobj).copy()
    data[:3] = np.nan
    write_nifti(folder / "mri.nii.gz", data, mri.affine)
    labels = (smooth_volume((30, 24, 12), np.int16, seed=3) > 300).astype(np.uint8)
    write_nifti(folder / "ct_seg.nii.gz", labels * 2, affine_from((0.8, 0.9, 3.0)))
    write_nifti(folder / "small.nii.gz", smooth_volume((6, 5, 4), np.int16, seed=4),
                affine_from((2.0, 2.0, 2.0), (1.0, 2.0, 3.0)))
    return folder


def test_a_deleted_record_is_rebuilt_from_the_files(tmp_path, make_dataset):
    """Records are not tracked by Snakemake (cheaper planning): one deleted by hand is read
    back from its input and output volume, equal to the original but for the job's time."""
    folder = _varied_folder(make_dataset)
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output),
              "desired_volume": [8, 8, 9], "label_maps": ["*_seg.nii.gz"], "debug": True,
              "cases": "off"}  # ct_seg is not ct's: another geometry (cases: test_cases.py)
    run_snakemake(tmp_path / "work", config)
    before = _manifest(output)
    for name in ("ct", "mri", "ct_seg", "small"):
        (output / "records" / f"{name}.tsv").unlink()
    result = run_snakemake(tmp_path / "work", config, "--forcerun", "manifest")
    after = _manifest(output)
    records = ", ".join(str(output / "records" / f"{n}.tsv") for n in ("ct", "ct_seg", "mri", "small"))
    assert f"rebuilt 4 deleted record(s) from the files: {records}" in result.output
    assert "rebuilt 4 deleted record(s)" in (output / "logs" / "manifest.log").read_text()
    assert "resampled            : 4" in result.output  # debug summary: no time, no crash
    assert set(before["kind"]) == {"image", "label_map"} and set(before["antialias"]) == {"True", "False"}
    assert (before["nonfinite_in"] != "0").any()
    assert (after["reason"] == "record rebuilt from the files").all() and (after["seconds"] == "").all()
    kept = [c for c in RECORD_COLUMNS if c not in ("reason", "seconds")]
    pd.testing.assert_frame_equal(before[kept], after[kept])
    assert (output / "records" / "ct.tsv").is_file()  # written back
    again = run_snakemake(tmp_path / "work", config)
    assert "Nothing to be done" in again.output


def test_a_record_that_cannot_be_rebuilt_keeps_the_old_manifest(tmp_path, make_dataset):
    folder, _ = make_dataset(names=("ct", "mri"))
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output), "desired_volume": [8, 8, 8]}
    run_snakemake(tmp_path / "work", config)
    manifest = (output / "manifest.tsv").read_bytes()
    (output / "records" / "ct.tsv").unlink()
    resampled = output / "ct" / "ct_resampled.nii.gz"
    resampled.write_bytes(resampled.read_bytes()[:200])  # damaged by hand too
    result = run_snakemake(tmp_path / "work", config, "--forcerun", "manifest", check=False)
    assert result.returncode != 0
    assert (f"ERROR {output / 'records' / 'ct.tsv'}: the record of a resampled volume is "
            "missing and cannot be rebuilt (ct_resampled.nii.gz: ") in result.output
    assert f"redo that volume with `snakemake --forcerun {resampled}`" in result.output
    assert (output / "manifest.tsv").read_bytes() == manifest
    # What the sentence says to run repairs it.
    run_snakemake(tmp_path / "work", config, "--forcerun", str(resampled))
    repaired = _manifest(output)
    assert len(repaired) == 2 and (repaired["reason"] == "").all()
    assert nib.load(resampled).shape == (8, 8, 8)


GOOD = ("ct_a", "mri_b", "ct_c", "mri_d", "ct_e")


def _manifest(output):
    return pd.read_csv(output / "manifest.tsv", sep="\t", dtype=str, keep_default_na=False)


def _bad_folder(make_dataset):
    """Five real volumes and `notes.nii.gz`, a text file given a volume's name."""
    folder, inputs = make_dataset(names=GOOD)
    (folder / "notes.nii.gz").write_text("meeting notes, not a volume\n")
    return folder, inputs


def _run_with_a_bad_volume(tmp_path, make_dataset):
    folder, inputs = _bad_folder(make_dataset)
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output), "desired_volume": [8, 9, 10]}
    result = run_snakemake(tmp_path / "work", config, "--keep-going", check=False)
    assert result.returncode != 0
    manifest = _manifest(output)
    assert list(manifest.columns) == list(RECORD_COLUMNS)
    assert list(manifest["input_path"]) == sorted([str(p) for p in inputs.values()]
                                                 + [str(folder / "notes.nii.gz")])
    ok, failed = manifest[manifest["status"] == "ok"], manifest[manifest["status"] == "failed"]
    assert len(ok) == 5 and (ok["new_size"] == "8x9x10").all() and (ok["seconds"] != "").all()
    assert list(failed["input_path"]) == [str(folder / "notes.nii.gz")]
    reason = failed["reason"].iloc[0]
    assert reason.startswith("notes.nii.gz: ") and "\n" not in reason
    failures = pd.read_csv(output / "failures.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(failures["input_path"]) == [str(folder / "notes.nii.gz")]
    assert list(failures["reason"]) == [reason]  # the same reason in both files
    assert "1 of 6 volumes failed" in result.output
    assert f"{output / 'manifest.tsv'} lists all 6 volumes: 5 resampled, 1 failed" in result.output
    return folder, output, config


def test_a_failed_volume_still_gets_a_manifest_then_a_fixed_one(tmp_path, make_dataset):
    """--keep-going with one bad file: the manifest lists the 5 good and the failed one; once
    the bad file is replaced by a real volume, the next run brings the manifest up to date."""
    folder, output, config = _run_with_a_bad_volume(tmp_path, make_dataset)
    write_nifti(folder / "notes.nii.gz", smooth_volume((12, 10, 8), np.int16, seed=7),
                affine_from((1.0, 1.0, 2.0)))
    run_snakemake(tmp_path / "work", config, "--keep-going")
    manifest = _manifest(output)
    assert len(manifest) == 6 and (manifest["status"] == "ok").all()
    assert (manifest["reason"] == "").all()
    assert not (output / "failures.tsv").exists()
    again = run_snakemake(tmp_path / "work", config, "--keep-going")
    assert "Nothing to be done" in again.output


def test_a_failed_volume_deleted_leaves_the_manifest_of_the_others(tmp_path, make_dataset):
    folder, output, config = _run_with_a_bad_volume(tmp_path, make_dataset)
    (folder / "notes.nii.gz").unlink()
    result = run_snakemake(tmp_path / "work", config, "--keep-going")
    assert "manifest" in result.output  # rebuilt through the rule
    manifest = _manifest(output)
    assert len(manifest) == 5 and (manifest["status"] == "ok").all()
    assert "notes" not in " ".join(manifest["input_path"])
    assert not (output / "failures.tsv").exists()
    again = run_snakemake(tmp_path / "work", config, "--keep-going")
    assert "Nothing to be done" in again.output


def test_the_api_writes_the_same_manifest_as_the_workflow(tmp_path, make_dataset, capsys):
    folder, output, _ = _run_with_a_bad_volume(tmp_path, make_dataset)
    with pytest.raises(ResamplingFailed):
        resampling_dataset(folder, tmp_path / "api", (8, 9, 10), debug=True, cores=2,
                           progress=False)
    summary = capsys.readouterr().out  # the failed row has no sizes or time: still printed
    assert "resampled            : 5\n  failed               : 1" in summary
    assert "notes.nii.gz:" not in summary and "ct_a.nii.gz: 30x24x12" in summary
    ignored = ["output_path", "seconds"]
    workflow, api = _manifest(output), _manifest(tmp_path / "api")
    pd.testing.assert_frame_equal(workflow.drop(columns=ignored), api.drop(columns=ignored))
    assert list(api["status"]).count("failed") == 1
