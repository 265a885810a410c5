"""Several datasets and grids in one run, desired_spacing, and recursive folders: real
Snakemake runs on real NIfTI files (issue 13)."""

import csv
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from support import run_snakemake, smooth_volume, affine_from, rotation, write_nifti
from nii_resample.volume import resample_volume


def _manifest(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _job_counts(output):
    """{rule: jobs} from Snakemake's job-count table."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", output, re.M)}


def test_several_datasets_and_grids_in_one_run(tmp_path, make_dataset):
    folder, made = make_dataset(("ct", "mri", "ct2"))
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    config = {
        "nii_folder": "ignored", "output_path": "ignored", "desired_volume": [5, 5, 5],
        "datasets": {
            "grids": {"nii_folder": str(folder), "output_path": str(out_a),
                      "grids": {"low": {"desired_volume": [8, 7, 6]},
                                "mm": {"desired_spacing": [1.5, 2.0, 2.5]}}},
            "flat": {"nii_folder": str(folder), "output_path": str(out_b),
                     "desired_spacing": [2.0, 2.0, 2.0], "saving_mode": "folder"},
        },
    }
    result = run_snakemake(tmp_path / "work", config, "--quiet", "rules")
    counts = _job_counts(result.output)
    # One decode per .nii.gz of the dataset with two grids, none for the one-grid dataset.
    assert counts["decode_volume_grids"] == 3
    assert counts["resample_volume_grids_low"] == counts["resample_volume_grids_mm"] == 3
    assert counts["resample_volume_flat"] == 3 and "decode_volume_flat" not in counts
    # Emptied once every grid of the volume is done (kept as an up-to-date input).
    assert [p.stat().st_size for p in (out_a / ".decoded").rglob("*.nii")] == [0, 0, 0]
    rows = _manifest(out_a / "manifest.tsv")
    assert sorted((Path(r["input_path"]).name, r["grid"]) for r in rows) == sorted(
        (f"{name}.nii.gz", grid) for name in made for grid in ("low", "mm"))
    assert all(r["status"] == "ok" for r in rows)
    assert {r["grid"] for r in _manifest(out_b / "manifest.tsv")} == {"2,2,2 mm"}
    for name, path in made.items():
        low = nib.load(out_a / "low" / name / f"{name}_resampled.nii.gz")
        assert low.shape == (8, 7, 6)
        # desired_spacing through the workflow = the volume function itself, in mm.
        for produced, spacing in (
            (out_a / "mm" / name / f"{name}_resampled.nii.gz", (1.5, 2.0, 2.5)),
            (out_b / f"{name}_resampled.nii.gz", (2.0, 2.0, 2.0)),
        ):
            direct = tmp_path / "direct" / f"{name}_{spacing[0]}.nii.gz"
            resample_volume(path, direct, desired_spacing=spacing)
            got, want = nib.load(produced), nib.load(direct)
            assert got.shape == want.shape
            np.testing.assert_allclose(got.affine, want.affine, atol=1e-6)
            np.testing.assert_allclose(np.linalg.norm(got.affine[:3, :3], axis=0), spacing,
                                       atol=1e-6)
            assert np.array_equal(np.asarray(got.dataobj), np.asarray(want.dataobj))


def test_changing_one_dataset_redoes_only_that_dataset(tmp_path, make_dataset):
    folder, _ = make_dataset(("ct", "mri"))
    config = {"datasets": {
        "one": {"nii_folder": str(folder), "output_path": str(tmp_path / "one"),
                "grids": {"low": {"desired_volume": [6, 6, 6]},
                          "high": {"desired_volume": [9, 9, 9]}}},
        "two": {"nii_folder": str(folder), "output_path": str(tmp_path / "two"),
                "desired_volume": [7, 7, 7]},
    }}
    run_snakemake(tmp_path / "work", config)
    config["datasets"]["two"]["desired_volume"] = [5, 5, 5]
    counts = _job_counts(run_snakemake(tmp_path / "work", config, "-n").output)
    assert counts.get("resample_volume_two") == 2
    assert not any(rule.endswith(("_low", "_high")) or rule == "decode_volume_one"
                   for rule in counts)


def _bids_tree(root):
    for subject in ("sub-01", "sub-02"):
        data = smooth_volume((20, 18, 12), np.int16, seed=len(subject))
        write_nifti(root / subject / "ses-1" / "anat" / f"{subject}_T1w.nii.gz", data,
                    affine_from((1.0, 1.1, 1.5), (3.0, 2.0, 1.0), rotation(10, 2)))
    write_nifti(root / "top.nii.gz", smooth_volume((10, 10, 10), np.int16), affine_from((1, 1, 1)))
    write_nifti(root / ".hidden" / "x.nii.gz", smooth_volume((10, 10, 10), np.int16))
    write_nifti(root / "derivatives" / "old_resampled.nii.gz", smooth_volume((10, 10, 10), np.int16))


def test_recursive_keeps_the_relative_folders(tmp_path):
    root = tmp_path / "bids"
    _bids_tree(root)
    out = root / "derivatives" / "resampled"  # inside the input tree: never an input
    config = {"nii_folder": str(root), "output_path": str(out), "desired_volume": [8, 8, 8],
              "recursive": True}
    run_snakemake(tmp_path / "work", config)
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_resampled.nii.gz"))
    assert found == [
        "sub-01/ses-1/anat/sub-01_T1w/sub-01_T1w_resampled.nii.gz",
        "sub-02/ses-1/anat/sub-02_T1w/sub-02_T1w_resampled.nii.gz",
        "top/top_resampled.nii.gz",
    ]
    assert len(_manifest(out / "manifest.tsv")) == 3
    # A second run finds nothing new (its own outputs are not inputs).
    assert "Nothing to be done" in run_snakemake(tmp_path / "work", config).output


def test_recursive_refuses_two_inputs_with_one_output(tmp_path):
    root = tmp_path / "tree"
    write_nifti(root / "a" / "x.nii.gz", smooth_volume((8, 8, 8), np.int16))
    write_nifti(root / "a" / "x.nii", smooth_volume((8, 8, 8), np.int16))
    config = {"nii_folder": str(root), "output_path": str(tmp_path / "out"),
              "desired_volume": [4, 4, 4], "recursive": True}
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert "a/x.nii and" in result.output and "a/x.nii.gz would be written to the same output" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, message", [
    ({"grids": {"g": {"desired_volume": [4, 4, 4], "desired_spacing": [1, 1, 1]}}},
     "grid 'g' must set exactly one of desired_volume, desired_spacing and reference"),
    ({"grids": {"g": {"size": [4, 4, 4]}}}, "grid 'g' must set exactly one of"),
    ({"grids": {"g": {"desired_spacing": [1, 0, 1]}}},
     "grid 'g': desired_spacing must be three positive numbers"),
    ({"desired_spacing": [1, -1, 1]}, "desired_spacing must be three positive numbers"),
    ({"datasets": {}}, "datasets must map dataset names"),
    ({"datasets": {"d": {"output_path": "x"}}}, "dataset 'd': it does not set nii_folder"),
    ({"datasets": {"d": {"nii_folder": "IN", "output_path": "o", "desired_volume": [4, 4, 4],
                         "desired_spacing": [1, 1, 1]}}},
     "dataset 'd': it sets desired_spacing and desired_volume; give one of them"),
    ({"datasets": {"d": {"nii_folder": "IN", "output_path": "OUT"},
                   "e": {"nii_folder": "IN", "output_path": "OUT"}}},
     "datasets 'd' and 'e' both write to output_path"),
    ({"grids": {"a-b": {"desired_volume": [4, 4, 4]}, "a_b": {"desired_volume": [5, 5, 5]}}},
     "'a-b' and 'a_b' differ only in characters other than letters"),
    ({"grids": {"../up": {"desired_volume": [4, 4, 4]}}}, "grid name '../up' must start with"),
])
def test_config_errors_before_any_job(tmp_path, make_dataset, override, message):
    folder, _ = make_dataset()
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [4, 4, 4]}
    for name, entry in override.get("datasets", {}).items():
        entry.update({k: str(folder) if v == "IN" else str(tmp_path / "out") if v == "OUT" else v
                      for k, v in entry.items()})
    config.update(override)
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert message in result.output, result.output[-2000:]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_user_config_with_spacing_overrides_the_shipped_desired_volume(tmp_path, make_dataset):
    """--config desired_spacing over config/config.yaml's desired_volume: one grid, in mm."""
    folder, _ = make_dataset(("ct",))
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [4, 4, 4]}
    result = run_snakemake(tmp_path / "work", config, "--config", "desired_spacing=[2,2,2]")
    assert "decode_volume" not in result.output
    image = nib.load(tmp_path / "out" / "ct" / "ct_resampled.nii.gz")
    np.testing.assert_allclose(image.header.get_zooms()[:3], (2, 2, 2), atol=1e-6)
    assert _manifest(tmp_path / "out" / "manifest.tsv")[0]["grid"] == "2,2,2 mm"


def test_changing_one_grid_reruns_only_that_grid(tmp_path, make_dataset):
    """The decoded copies are emptied once every grid is done but stay as ancient() inputs:
    a changed grid reruns alone, reading the input itself, and gets the same voxels."""
    folder, made = make_dataset(("ct", "mri"))
    grids = {"low": {"desired_volume": [6, 6, 6]}, "high": {"desired_volume": [9, 9, 9]},
             "mm": {"desired_spacing": [2, 2, 2]}}
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"), "grids": grids}
    run_snakemake(tmp_path / "work", config)
    decoded = sorted((tmp_path / "out" / ".decoded").glob("*.nii"))
    assert [p.stat().st_size for p in decoded] == [0, 0], "decoded copies are emptied"
    before = {g: (tmp_path / "out" / g / "ct" / "ct_resampled.nii.gz").stat().st_mtime_ns
              for g in grids}
    config["grids"]["high"] = {"desired_volume": [8, 8, 8]}
    counts = _job_counts(run_snakemake(tmp_path / "work", config, "--quiet", "rules").output)
    assert counts["resample_volume_high"] == 2
    assert not any(rule.startswith(("decode_volume", "resample_volume_low",
                                    "resample_volume_mm")) for rule in counts)
    for grid in ("low", "mm"):
        assert (tmp_path / "out" / grid / "ct" / "ct_resampled.nii.gz").stat().st_mtime_ns == before[grid]
    # Read from the input itself (the copy is empty): the same volume as a direct resample.
    direct = tmp_path / "direct.nii.gz"
    resample_volume(made["ct"], direct, (8, 8, 8))
    high = nib.load(tmp_path / "out" / "high" / "ct" / "ct_resampled.nii.gz")
    assert np.array_equal(np.asarray(high.dataobj), np.asarray(nib.load(direct).dataobj))
    rows = _manifest(tmp_path / "out" / "manifest.tsv")
    assert {(Path(r["input_path"]).name, r["grid"], r["new_size"]) for r in rows if r["grid"] == "high"} == {
        ("ct.nii.gz", "high", "8x8x8"), ("mri.nii.gz", "high", "8x8x8")}
    # A changed input reruns every grid of that volume.
    image = nib.load(made["mri"])
    write_nifti(made["mri"], np.asarray(image.dataobj) * 0.5, image.affine)
    counts = _job_counts(run_snakemake(tmp_path / "work", config, "--quiet", "rules").output)
    assert all(counts[f"resample_volume_{g}"] == 1 for g in grids)
    assert "decode_volume" not in counts  # each job reads the changed input itself
    direct = tmp_path / "direct_mri.nii.gz"
    resample_volume(made["mri"], direct, (6, 6, 6))
    low = nib.load(tmp_path / "out" / "low" / "mri" / "mri_resampled.nii.gz")
    assert np.array_equal(np.asarray(low.dataobj), np.asarray(nib.load(direct).dataobj))


def test_an_undecodable_volume_fails_on_every_grid_the_others_finish(tmp_path, make_dataset):
    folder, made = make_dataset(("ct", "mri"))
    made["mri"].write_bytes(made["mri"].read_bytes()[:3000])  # truncated gzip
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "grids": {"low": {"desired_volume": [6, 6, 6]}, "mm": {"desired_spacing": [2, 2, 2]}}}
    result = run_snakemake(tmp_path / "work", config, "--keep-going", check=False)
    assert result.returncode != 0
    rows = {(Path(r["input_path"]).name, r["grid"]): r for r in _manifest(tmp_path / "out" / "manifest.tsv")}
    for grid in ("low", "mm"):
        assert rows[("ct.nii.gz", grid)]["status"] == "ok"
        failed = rows[("mri.nii.gz", grid)]
        assert failed["status"] == "failed"
        assert failed["reason"] == "mri.nii.gz: the file is truncated (its gzip stream ends before the end marker)"
        assert not (tmp_path / "out" / grid / "mri").exists()
    assert len(_manifest(tmp_path / "out" / "failures.tsv")) == 2
    assert not list((tmp_path / "out").rglob("*.partial"))
    # Each failure line points at the log that says why: the decoding's.
    decode_log = tmp_path / "out" / "logs" / "decode_volume" / "mri.log"
    assert "truncated" in decode_log.read_text()
    lines = [line for line in result.output.splitlines() if line.startswith("  mri.nii.gz: the file is truncated")]
    assert len(lines) == 2 and all(line.endswith(f"[log: {decode_log}]") for line in lines), lines
    # Counted as what failed: one volume on two grids, out of 2 volumes x 2 grids.
    assert "2 of 4 results (2 volumes x 2 grids) failed" in result.output
    assert "manifest.tsv lists all 4 results: 2 resampled, 2 failed" in result.output
