"""Outputs are written under a temporary name that says who writes it, flushed to disk, then
renamed: a leftover is removed only once its writer is gone, never under a live writer."""

import os
import signal
import socket
import subprocess
import sys
import time

from support import REPO
from nii_resample.files import atomic_write_bytes, remove_stale_partials

# A writer in its own process: writes half, waits for `go` (if given), writes the rest.
WRITER = """
import sys, time
from pathlib import Path
from nii_resample.files import atomic_write
target, go = Path(sys.argv[1]), Path(sys.argv[2])
def write(stream):
    stream.write(b"first half;")
    stream.flush()
    while not go.exists():
        time.sleep(0.01)
    stream.write(b"second half")
atomic_write(target, write)
"""


def _start_writer(target, go):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(go)], env=env)


def _partials(folder):
    return sorted(folder.glob(".*.partial"))


def _wait_for_partial(folder, writer):
    deadline = time.time() + 60
    while not _partials(folder) and time.time() < deadline and writer.poll() is None:
        time.sleep(0.01)
    (partial,) = _partials(folder)
    return partial


def test_a_live_writers_partial_is_never_removed(tmp_path):
    target = tmp_path / "v_resampled.nii.gz"
    writer = _start_writer(target, tmp_path / "go")
    partial = _wait_for_partial(tmp_path, writer)
    assert f".{socket.gethostname()}.{writer.pid}-" in partial.name  # its creator, by name
    remove_stale_partials(target)  # what a concurrent job for the same volume does first
    assert partial.exists()
    (tmp_path / "go").touch()
    assert writer.wait(timeout=60) == 0
    assert target.read_bytes() == b"first half;second half"
    assert not _partials(tmp_path)


def test_only_partials_of_gone_writers_are_removed(tmp_path):
    target = tmp_path / "v_resampled.nii.gz"
    writer = _start_writer(target, tmp_path / "never")
    killed = _wait_for_partial(tmp_path, writer)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    # Our own pid with another start time: the pid was reused by a newer process.
    reused = tmp_path / f".{target.name}.{socket.gethostname()}.{os.getpid()}-1.abcdefgh.partial"
    # Made on another machine (a shared folder): nothing here can say whether it is alive.
    elsewhere = tmp_path / f".{target.name}.other-node.{os.getpid()}-1.abcdefgh.partial"
    for path in (reused, elsewhere):
        path.write_bytes(b"partial")
    remove_stale_partials(target)
    assert not killed.exists() and not reused.exists()
    assert elsewhere.exists()


def test_the_file_and_its_folder_are_flushed_to_disk(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(handle):
        synced.append(os.readlink(f"/proc/self/fd/{handle}"))
        real_fsync(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write_bytes(tmp_path / "sub" / "manifest.tsv", b"a\tb\n")
    assert len(synced) == 2
    assert synced[0].startswith(str(tmp_path / "sub" / ".manifest.tsv."))
    assert synced[0].endswith(".partial")
    assert synced[1] == str(tmp_path / "sub")
    assert (tmp_path / "sub" / "manifest.tsv").read_bytes() == b"a\tb\n"
