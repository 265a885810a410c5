"""Re-running does only what is needed, and a killed run resumes without corrupt files."""

import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np

from support import SNAKEFILE, run_snakemake, smooth_volume, write_config, write_nifti, affine_from


def _jobs_run(result):
    """Names of the volumes whose resample job ran."""
    prefixes, rule = [], None
    for line in result.output.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif "wildcards: prefix=" in line and rule == "resample_volume":
            prefixes.append(line.split("prefix=", 1)[1].strip())
    return sorted(prefixes)


def test_second_run_does_nothing_and_changes_rerun_what_they_touch(tmp_path, make_dataset):
    folder, inputs = make_dataset(names=("a", "b", "c"))
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [8, 8, 8]}
    first = run_snakemake(tmp_path / "work", config)
    assert _jobs_run(first) == ["a", "b", "c"]

    second = run_snakemake(tmp_path / "work", config)
    assert "Nothing to be done" in second.output and _jobs_run(second) == []

    (tmp_path / "out" / "b" / "b_resampled.nii.gz").unlink()  # a user deletes one output
    restored = run_snakemake(tmp_path / "work", config)
    assert _jobs_run(restored) == ["b"]
    assert (tmp_path / "out" / "b" / "b_resampled.nii.gz").exists()

    config["desired_volume"] = [9, 8, 8]
    changed = run_snakemake(tmp_path / "work", config)
    assert _jobs_run(changed) == ["a", "b", "c"]
    assert nib.load(tmp_path / "out" / "a" / "a_resampled.nii.gz").shape == (9, 8, 8)

    write_nifti(folder / "d.nii.gz", smooth_volume((12, 12, 12)), affine_from((1, 1, 1)))
    added = run_snakemake(tmp_path / "work", config)
    assert _jobs_run(added) == ["d"]
    manifest = (tmp_path / "out" / "manifest.tsv").read_text().splitlines()
    assert len(manifest) == 1 + 4


def test_killed_run_resumes_and_leaves_no_corrupt_file(tmp_path):
    folder = tmp_path / "in"
    for index in range(6):
        write_nifti(folder / f"v{index}.nii.gz", smooth_volume((160, 160, 60), seed=index),
                    affine_from((0.8, 0.8, 2.0)))
    output = tmp_path / "out"
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = write_config(workdir, nii_folder=str(folder), output_path=str(output),
                          desired_volume=[150, 150, 90], engine="itk")
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
               "--configfile", str(config), "--cores", "1"]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not list(output.glob("records/*.tsv")) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(list(output.glob("records/*.tsv")))
    assert 0 < done_before < 6, "the kill must land mid-run"

    resumed = run_snakemake(workdir, None, "--configfile", str(config), cores=2)
    assert "Nothing to be done" not in resumed.output
    for index in range(6):
        image = nib.load(output / f"v{index}" / f"v{index}_resampled.nii.gz")
        data = np.asanyarray(image.dataobj)  # reads (and CRC-checks) the whole gzip stream
        assert data.shape == (150, 150, 90)
    assert not list(output.rglob("*.partial"))
    assert len((output / "manifest.tsv").read_text().splitlines()) == 7
