"""Bad volumes fail alone, with a one-line reason naming the file, and leave nothing behind."""

import gzip
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from support import REPO, affine_from, run_snakemake, smooth_volume, write_nifti
from nii_resample.errors import VolumeError
from nii_resample.nifti import read_volume


def _good_bytes(tmp_path, shape=(20, 20, 10)):
    path = write_nifti(tmp_path / "tmp_good.nii.gz", smooth_volume(shape), affine_from((1, 1, 2)))
    data = path.read_bytes()
    path.unlink()
    return data


def make_truncated_stream(tmp_path, path):
    data = _good_bytes(tmp_path)
    path.write_bytes(data[: len(data) // 2])


def make_short_data(tmp_path, path):
    """A complete, valid gzip stream whose NIfTI voxel data is cut short: SimpleITK reads this
    without complaint and fills the missing voxels with zeros."""
    raw = gzip.decompress(_good_bytes(tmp_path))
    path.write_bytes(gzip.compress(raw[: len(raw) - 1000]))


def make_garbage(tmp_path, path):
    path.write_bytes(np.random.default_rng(1).bytes(5000))


def make_corrupt_gzip(tmp_path, path):
    data = bytearray(_good_bytes(tmp_path))
    data[200:400] = bytes(200)
    path.write_bytes(bytes(data))


def make_empty(tmp_path, path):
    path.write_bytes(b"")


def make_2d(tmp_path, path):
    write_nifti(path, smooth_volume((32, 32)).reshape(32, 32), np.eye(4))


def make_5d(tmp_path, path):
    write_nifti(path, np.zeros((8, 8, 6, 1, 3), np.float32), np.eye(4))


def make_sheared(tmp_path, path):
    affine = np.eye(4)
    affine[0, 1] = 0.5  # x axis leans into y: not a rectilinear grid
    write_nifti(path, smooth_volume((10, 10, 10)), affine, qform_code=0)


def make_complex(tmp_path, path):
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 6), np.complex64), np.eye(4)), path)


BAD_INPUTS = {
    "truncated": (make_truncated_stream, "the file is truncated"),
    "short_data": (make_short_data, "the file is truncated (the header announces"),
    "garbage": (make_garbage, "not a NIfTI file"),
    "corrupt_gzip": (make_corrupt_gzip, "corrupt gzip data"),
    "empty": (make_empty, "empty or too short to be NIfTI"),
    "flat": (make_2d, "2-D image (32x32); only 3-D volumes and 4-D series can be resampled"),
    "vectors": (make_5d, "5-D image (8x8x6x1x3); only 3-D volumes and 4-D series"),
    "sheared": (make_sheared, "the voxel axes are not orthonormal"),
    "complex": (make_complex, "pixel type complex64 is not supported"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_reader_names_the_file_and_the_problem(tmp_path, name):
    make, message = BAD_INPUTS[name]
    path = tmp_path / f"{name}.nii.gz"
    make(tmp_path, path)
    with pytest.raises(VolumeError) as raised:
        read_volume(path)
    text = str(raised.value)
    assert text.startswith(f"{name}.nii.gz: ") and message in text
    assert "\n" not in text


def test_bad_volumes_fail_alone_with_keep_going(tmp_path, make_dataset):
    folder, good = make_dataset(names=("good_a", "good_b"))
    for name, (make, _) in BAD_INPUTS.items():
        make(tmp_path, folder / f"{name}.nii.gz")
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output), "desired_volume": [8, 8, 8],
              "saving_mode": "folder"}
    result = run_snakemake(tmp_path / "work", config, "--keep-going", check=False)
    assert result.returncode != 0

    for prefix in good:
        assert nib.load(output / f"{prefix}_resampled.nii.gz").shape == (8, 8, 8)
    failures = pd.read_csv(output / "failures.tsv", sep="\t")
    assert len(failures) == len(BAD_INPUTS)
    for name, (_, message) in BAD_INPUTS.items():
        line = f"ERROR {name}.nii.gz: "
        # Several processes share the console: look for the line, not at a fixed position.
        console = [row[row.index(line):] for row in result.output.splitlines() if line in row]
        assert console and message in console[0], f"{name}: no one-line reason on the console"
        log = (output / "logs" / "resample_volume" / f"{name}.log").read_text()
        assert message in log
        row = failures[failures["input_path"] == str(folder / f"{name}.nii.gz")]
        assert len(row) == 1 and message in row["reason"].iloc[0]
        assert not (output / f"{name}_resampled.nii.gz").exists()
        assert not (output / "records" / f"{name}.tsv").exists()
    assert not list(output.rglob("*.partial"))
    assert "volumes failed (listed in" in result.output


def test_fixed_input_clears_the_failure_report(tmp_path, make_dataset):
    folder, _ = make_dataset(names=("good",))
    make_truncated_stream(tmp_path, folder / "broken.nii.gz")
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output), "desired_volume": [8, 8, 8]}
    run_snakemake(tmp_path / "work", config, "--keep-going", check=False)
    assert (output / "failures.tsv").exists()
    write_nifti(folder / "broken.nii.gz", smooth_volume((9, 9, 9)), np.eye(4))
    run_snakemake(tmp_path / "work", config)
    assert not (output / "failures.tsv").exists()
    assert len(pd.read_csv(output / "manifest.tsv", sep="\t")) == 2


def test_a_job_that_died_without_a_reason_is_still_reported(tmp_path):
    """Killed by the scheduler (memory, time): no failure record, no output, maybe no log."""
    from nii_resample.records import collect_failures

    jobs = [{"input_path": str(tmp_path / "lost.nii.gz"), "output_path": str(tmp_path / "x.nii.gz"),
             "failure_path": str(tmp_path / "none.tsv"), "log": str(tmp_path / "lost.log")}]
    (failure,) = collect_failures(jobs)
    assert failure["reason"].startswith("lost.nii.gz: the job did not finish")
    assert failure["log"] == "none (see Snakemake's own log)"


def _run_job(tmp_path, in_path, out_path):
    """The per-volume job exactly as the rule runs it."""
    command = [sys.executable, "-m", "nii_resample", "volume", str(in_path), str(out_path),
               "8", "8", "8", "--log", str(tmp_path / "job.log"), "--record",
               str(tmp_path / "records" / "x.tsv"), "--failure-record", str(tmp_path / "failed.tsv")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(command, capture_output=True, text=True, env=env)


def test_a_failing_job_leaves_an_existing_output_alone(tmp_path):
    """An orphaned job of a killed run that fails late must not delete the volume a newer
    run has just written under the same name, nor that run's record."""
    good = write_nifti(tmp_path / "out" / "x_resampled.nii.gz", smooth_volume((8, 8, 8)),
                       affine_from((1, 1, 1)))
    record = tmp_path / "records" / "x.tsv"
    record.parent.mkdir()
    record.write_text("the newer run's record\n")
    before = good.read_bytes()
    broken = tmp_path / "x.nii.gz"
    make_truncated_stream(tmp_path, broken)
    result = _run_job(tmp_path, broken, good)
    assert result.returncode == 1 and "ERROR x.nii.gz: the file is truncated" in result.stderr
    assert good.read_bytes() == before
    assert record.read_text() == "the newer run's record\n"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB file system (tmpfs; needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_full_disk_fails_the_volume_alone_and_leaves_nothing(tmp_path, tiny_disk):
    folder = tmp_path / "in"
    write_nifti(folder / "small.nii.gz", smooth_volume((12, 12, 12)), affine_from((1, 1, 1)))
    noise = np.random.default_rng(0).standard_normal((40, 40, 40)).astype(np.float32)
    write_nifti(folder / "huge.nii.gz", noise, affine_from((1, 1, 1)))
    config = {"nii_folder": str(folder), "output_path": str(tiny_disk / "out"),
              "desired_volume": [80, 80, 80], "saving_mode": "folder"}
    # One job at a time: the two volumes' temporary files must not share the 1 MB.
    result = run_snakemake(tmp_path / "work", config, "--keep-going", cores=1, check=False)
    assert result.returncode != 0
    line = "ERROR huge.nii.gz: no space left on device to write"
    assert line in result.output
    assert not (tiny_disk / "out" / "huge_resampled.nii.gz").exists()
    assert nib.load(tiny_disk / "out" / "small_resampled.nii.gz").shape == (80, 80, 80)
    assert not list(tiny_disk.rglob("*.partial"))
    (failure,) = pd.read_csv(tiny_disk / "out" / "failures.tsv", sep="\t").itertuples()
    assert failure.reason.startswith("huge.nii.gz: no space left on device")


def test_output_path_that_is_a_file_is_refused_before_any_job(tmp_path, make_dataset):
    folder, _ = make_dataset()
    taken = tmp_path / "results.nii.gz"
    taken.write_bytes(b"someone's file")
    config = {"nii_folder": str(folder), "output_path": str(taken), "desired_volume": [8, 8, 8]}
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert f"Invalid configuration: output_path '{taken}' is a file, not a folder." in result.output
    assert "Traceback" not in result.output and "NotADirectoryError" not in result.output
    assert taken.read_bytes() == b"someone's file"


def test_output_path_under_a_file_or_read_only_is_refused_by_the_api(tmp_path, make_dataset):
    from nii_resample import resampling_dataset

    folder, _ = make_dataset()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match=r"output_path '.*a_file/out' is inside '.*a_file', "
                                         r"which is a file"):
        resampling_dataset(folder, tmp_path / "a_file" / "out", (8, 8, 8), cores=1)

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(read_only)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {mounted.stderr.strip()}")
    try:
        with pytest.raises(ValueError, match="is not writable: cannot create files in"):
            resampling_dataset(folder, read_only / "out", (8, 8, 8), cores=1)
    finally:
        subprocess.run(["umount", str(read_only)], check=True)
