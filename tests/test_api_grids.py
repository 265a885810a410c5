"""The Python API and the command line with desired_spacing, several grids and recursive."""

import csv
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from support import REPO, run_snakemake, smooth_volume, write_nifti
from nii_resample import resampling_dataset
from nii_resample.volume import resample_volume

GRIDS = {"low": {"desired_volume": (6, 7, 8)}, "iso": {"desired_spacing": (2.0, 2.0, 2.5)}}


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_api_grids_match_the_workflow_byte_for_byte(tmp_path, make_dataset):
    folder, made = make_dataset(("ct", "mri"))
    written = resampling_dataset(folder, tmp_path / "api", grids=GRIDS, cores=2)
    assert written == [str(tmp_path / "api" / g / n / f"{n}_resampled.nii.gz")
                       for n in ("ct", "mri") for g in ("iso", "low")]
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "wf"),
              "grids": {k: {key: list(v) for key, v in spec.items()} for k, spec in GRIDS.items()}}
    run_snakemake(tmp_path / "work", config)
    for path in written:
        relative = Path(path).relative_to(tmp_path / "api")
        assert Path(path).read_bytes() == (tmp_path / "wf" / relative).read_bytes()
    api_rows = _rows(tmp_path / "api" / "manifest.tsv")
    assert [(Path(r["input_path"]).name, r["grid"]) for r in api_rows] == [
        ("ct.nii.gz", "iso"), ("ct.nii.gz", "low"), ("mri.nii.gz", "iso"), ("mri.nii.gz", "low")]
    assert [r["grid"] for r in api_rows] == [r["grid"] for r in _rows(tmp_path / "wf" / "manifest.tsv")]


def test_api_reads_each_volume_once_for_all_grids(tmp_path, make_dataset, monkeypatch):
    """One read per volume: the worker is run in-process here to count read_volume calls."""
    from nii_resample import api_worker, nifti

    folder, made = make_dataset(("ct",))
    reads = []
    real = nifti.read_volume
    monkeypatch.setattr(nifti, "read_volume", lambda path: reads.append(path) or real(path))
    outputs = [{"out_path": str(tmp_path / g / "ct.nii.gz"), "grid": g,
                "options": dict(spec)} for g, spec in GRIDS.items()]
    rows = api_worker.run_job({"in_path": str(made["ct"]), "outputs": outputs})
    assert [r["status"] for r in rows] == ["ok", "ok"] and len(reads) == 1
    direct = tmp_path / "direct.nii.gz"
    resample_volume(made["ct"], direct, desired_spacing=(2.0, 2.0, 2.5))
    assert (tmp_path / "iso" / "ct.nii.gz").read_bytes() == direct.read_bytes()


def test_api_desired_spacing_and_recursive(tmp_path):
    root = tmp_path / "tree"
    for sub in ("imagesTr", "labelsTr"):
        write_nifti(root / sub / "case_001.nii.gz", smooth_volume((20, 16, 10), np.int16),
                    np.diag([0.8, 0.9, 3.0, 1.0]))
    written = resampling_dataset(root, tmp_path / "out", None, "folder",
                                 desired_spacing=(1.6, 1.8, 3.0), recursive=True, cores=1)
    assert written == [str(tmp_path / "out" / s / "case_001_resampled.nii.gz")
                       for s in ("imagesTr", "labelsTr")]
    image = nib.load(written[0])
    assert image.shape == (10, 8, 10)
    np.testing.assert_allclose(image.header.get_zooms(), (1.6, 1.8, 3.0), atol=1e-6)
    assert {r["grid"] for r in _rows(tmp_path / "out" / "manifest.tsv")} == {"1.6,1.8,3 mm"}


def test_api_refuses_two_grid_options(tmp_path, make_dataset):
    folder, _ = make_dataset(("ct",))
    with pytest.raises(ValueError, match="give exactly one of desired_volume, desired_spacing"):
        resampling_dataset(folder, tmp_path / "out", (4, 4, 4), desired_spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="grid 'g' must set exactly one"):
        resampling_dataset(folder, tmp_path / "out", grids={"g": {}})
    assert not (tmp_path / "out").exists()


def _cli(*words):
    return subprocess.run([sys.executable, "-m", "nii_resample", *map(str, words)],
                          capture_output=True, text=True, cwd=REPO)


def test_command_line_grids_spacing_and_recursive(tmp_path, make_dataset):
    folder, _ = make_dataset(("ct", "mri"))
    done = _cli(folder, tmp_path / "g", "--grid", "low=6x7x8", "--grid", "iso=2,2,2.5mm",
                "--cores", "2")
    assert done.returncode == 0, done.stderr
    assert nib.load(tmp_path / "g" / "low" / "ct" / "ct_resampled.nii.gz").shape == (6, 7, 8)
    zooms = nib.load(tmp_path / "g" / "iso" / "mri" / "mri_resampled.nii.gz").header.get_zooms()
    np.testing.assert_allclose(zooms, (2, 2, 2.5), atol=1e-6)
    (folder / "sub").mkdir()
    (folder / "ct.nii.gz").rename(folder / "sub" / "ct.nii.gz")
    done = _cli(folder, tmp_path / "s", "--desired-spacing", "2", "2", "2", "--recursive",
                "--saving-mode", "folder")
    assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(tmp_path / "s").as_posix()
                  for p in (tmp_path / "s").rglob("*_resampled.nii.gz")) == [
        "mri_resampled.nii.gz", "sub/ct_resampled.nii.gz"]


@pytest.mark.parametrize("words, message", [
    (["--grid", "low=6x7"], "must be NAME=XxYxZ"),
    (["--grid", "low=6x7x8", "--grid", "low=1,1,1mm"], "each --grid NAME must be given once"),
    (["--desired-spacing", "1", "0", "1"], "must be a positive number"),
    (["--desired-spacing", "1", "1", "1", "--grid", "a=4x4x4"], "give exactly one of"),
])
def test_command_line_refuses_bad_grids(tmp_path, make_dataset, words, message):
    folder, _ = make_dataset(("ct",))
    done = _cli(folder, tmp_path / "out", *words)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
