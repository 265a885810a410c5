"""A lock is removed only when proven stale: a killed run on this host resumes, but a live run,
a run elsewhere, a dry run or a lint never lose or remove a lock."""

import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np

from support import SNAKEFILE, affine_from, run_snakemake, smooth_volume, write_config, write_nifti
from nii_resample.processes import process_start


def _dataset(tmp_path, count=4):
    """Volumes that take a few seconds each with the itk engine: time to act mid-run."""
    folder = tmp_path / "in"
    for index in range(count):
        write_nifti(folder / f"v{index}.nii.gz", smooth_volume((160, 160, 60), seed=index),
                    affine_from((0.8, 0.8, 2.0)))
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = write_config(workdir, nii_folder=str(folder), output_path=str(tmp_path / "out"),
                          desired_volume=[150, 150, 90], engine="itk")
    return workdir, config


def _start(workdir, config):
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory",
               str(workdir), "--configfile", str(config), "--cores", "1"]
    return subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _owners(workdir):
    return sorted((workdir / ".snakemake" / "nii_resample" / "lock_owners").glob("*.json"))


def _locks(workdir):
    return sorted((workdir / ".snakemake" / "locks").glob("*.lock"))


def _wait_for_owner_records(workdir, process):
    deadline = time.time() + 120
    while len(_owners(workdir)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert len(_owners(workdir)) == 2, "the run must record the owner of its two lock files"


def _killed_run(tmp_path):
    """A run killed with kill -9 right after it locked: a provably stale lock."""
    workdir, config = _dataset(tmp_path)
    process = _start(workdir, config)
    _wait_for_owner_records(workdir, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(_locks(workdir)) == 2
    return workdir, config


def _rewrite_owners(workdir, **changes):
    for path in _owners(workdir):
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _state(workdir):
    return [(path.name, path.read_bytes()) for path in _locks(workdir) + _owners(workdir)]


def _one_sentence(output):
    (line,) = [line for line in output.splitlines() if "is locked by" in line]
    return line


def test_a_live_run_is_never_unlocked(tmp_path):
    workdir, config = _dataset(tmp_path, count=3)
    first = _start(workdir, config)
    _wait_for_owner_records(workdir, first)
    second = run_snakemake(workdir, None, "--configfile", str(config), check=False)
    assert second.returncode != 0
    sentence = _one_sentence(second.output)
    assert f"(pid {first.pid})" in sentence and "still running" in sentence
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]
    for index in range(3):
        image = nib.load(tmp_path / "out" / f"v{index}" / f"v{index}_resampled.nii.gz")
        assert np.asanyarray(image.dataobj).shape == (150, 150, 90)
    assert len((tmp_path / "out" / "manifest.tsv").read_text().splitlines()) == 4
    assert not _owners(workdir) and not _locks(workdir)


def test_a_lock_owned_elsewhere_is_kept_and_the_run_refused(tmp_path):
    workdir, config = _killed_run(tmp_path)
    _rewrite_owners(workdir, host="another-login-node")
    before = _state(workdir)
    refused = run_snakemake(workdir, None, "--configfile", str(config), check=False)
    assert refused.returncode != 0
    sentence = _one_sentence(refused.output)
    assert "another-login-node" in sentence and "snakemake --unlock" in sentence
    assert _state(workdir) == before


def test_a_lock_without_owner_record_is_kept_and_the_run_refused(tmp_path):
    workdir, config = _killed_run(tmp_path)
    for path in _owners(workdir):
        path.unlink()
    refused = run_snakemake(workdir, None, "--configfile", str(config), check=False)
    assert refused.returncode != 0
    assert "cannot check" in _one_sentence(refused.output)
    assert len(_locks(workdir)) == 2


def test_dry_run_and_lint_remove_nothing(tmp_path):
    workdir, config = _killed_run(tmp_path)
    before = _state(workdir)
    run_snakemake(workdir, None, "--configfile", str(config), "-n", "--quiet", check=False)
    assert _state(workdir) == before
    run_snakemake(workdir, None, "--configfile", str(config), "--lint", check=False)
    assert _state(workdir) == before
    # The same stale lock is cleared by the next real run, which resumes.
    resumed = run_snakemake(workdir, None, "--configfile", str(config))
    assert "removed its stale lock" in resumed.output
    assert not _locks(workdir) and not _owners(workdir)


def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path):
    """The owner's pid now names another live process (here: this test): counts as alive only
    if that process also started when the owner did."""
    workdir, config = _killed_run(tmp_path)
    _rewrite_owners(workdir, pid=os.getpid(), start=process_start(os.getpid()))
    refused = run_snakemake(workdir, None, "--configfile", str(config), check=False)
    assert refused.returncode != 0 and "still running" in _one_sentence(refused.output)
    assert len(_locks(workdir)) == 2

    _rewrite_owners(workdir, start="1")  # same pid, another start time: reused
    resumed = run_snakemake(workdir, None, "--configfile", str(config))
    assert "removed its stale lock" in resumed.output
    assert len((tmp_path / "out" / "manifest.tsv").read_text().splitlines()) == 5
