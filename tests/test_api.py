"""The Python API and the command line: the familiar signature, errors, identical outputs."""

import subprocess
import sys

import pytest

from support import REPO, run_snakemake
from nii_resample.api import ResamplingFailed, resampling_dataset


def test_api_returns_written_paths_and_matches_the_workflow_byte_for_byte(tmp_path, make_dataset):
    folder, inputs = make_dataset(names=("ct", "mri", "ct_seg"))
    written = resampling_dataset(folder, tmp_path / "api", [10, 12, 9], saving_mode="folder",
                                 cores=2, label_maps=["*_seg.nii.gz"])
    assert written == [str(tmp_path / "api" / f"{p}_resampled.nii.gz") for p in sorted(inputs)]
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "wf"),
              "desired_volume": [10, 12, 9], "saving_mode": "folder",
              "label_maps": ["*_seg.nii.gz"]}
    run_snakemake(tmp_path / "work", config)
    for prefix in inputs:
        name = f"{prefix}_resampled.nii.gz"
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "wf" / name).read_bytes()
    assert (tmp_path / "api" / "manifest.tsv").exists()


def test_api_errors_are_the_originals(tmp_path, make_dataset):
    folder, _ = make_dataset()
    with pytest.raises(FileNotFoundError):
        resampling_dataset(tmp_path / "missing", tmp_path / "out", [8, 8, 8])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        resampling_dataset(tmp_path / "empty", tmp_path / "out", [8, 8, 8])
    with pytest.raises(ValueError, match="desired_volume"):
        resampling_dataset(folder, tmp_path / "out", [8, 8])
    with pytest.raises(ValueError, match="saving_mode"):
        resampling_dataset(folder, tmp_path / "out", [8, 8, 8], saving_mode="patient")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cores", [0, -2, 1.5, "2", True])
def test_api_refuses_a_bad_cores(tmp_path, make_dataset, cores):
    folder, _ = make_dataset(names=("a",))
    with pytest.raises(ValueError, match=f"cores must be a positive integer .*got {cores!r}"):
        resampling_dataset(folder, tmp_path / "out", [8, 8, 8], cores=cores)
    assert not (tmp_path / "out").exists()


def test_api_finishes_the_others_then_reports_failures(tmp_path, make_dataset):
    folder, _ = make_dataset(names=("good",))
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ResamplingFailed, match="broken.nii.gz: ") as raised:
        resampling_dataset(folder, tmp_path / "out", [8, 8, 8], cores=1)
    assert raised.value.written == [str(tmp_path / "out" / "good" / "good_resampled.nii.gz")]
    assert (tmp_path / "out" / "failures.tsv").exists()


def test_command_line(tmp_path, make_dataset):
    folder, inputs = make_dataset()
    result = subprocess.run(
        [sys.executable, "-m", "nii_resample", str(folder), str(tmp_path / "out"), "8", "9", "10",
         "--saving-mode", "folder", "--cores", "2", "--debug"],
        capture_output=True, text=True, cwd=tmp_path,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "Resampling summary" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == [
        f"{p}_resampled.nii.gz" for p in sorted(inputs)]
    # Not a terminal: no progress bar in the captured output.
    assert "Resampling:" not in result.stderr

    bad = subprocess.run(
        [sys.executable, "-m", "nii_resample", str(folder), str(tmp_path / "o2"), "8", "0", "8"],
        capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("error: argument Y: must be a positive integer, got '0'")


def test_progress_bar_shows_on_a_terminal(tmp_path, make_dataset):
    """On a terminal the CLI shows volumes done / total with an ETA (tqdm)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    folder, _ = make_dataset(names=("a", "b", "c"))
    command = [sys.executable, "-m", "nii_resample", str(folder), str(tmp_path / "out"), "8", "8", "8",
               "--cores", "1"]
    pid, descriptor = pty.fork()
    if pid == 0:  # the child runs with the pseudo-terminal as its stdin/stdout/stderr
        # A new pseudo-terminal is 0 columns wide; a real one has a size (tqdm sizes the bar).
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        os.environ["PYTHONPATH"] = str(REPO / "src")
        os.execv(sys.executable, command)
    output = b""
    while True:
        try:
            chunk = os.read(descriptor, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert "Resampling" in text and "3/3" in text, text
    assert "volume/s" in text or "s/volume" in text
