"""Atomic, durable file writes, and the clean-up of what killed writers left: standard
library only, so that what writes records, manifests and lock owners (the Snakefile itself,
the manifest job) never pays for importing numpy and nibabel."""

from __future__ import annotations

import os
import tempfile
from glob import escape as glob_escape
from pathlib import Path

from .processes import pid_is_gone, this_process

# Read once: os.umask can only be read by setting it.
CURRENT_UMASK = os.umask(0o022)
os.umask(CURRENT_UMASK)


def _partial_prefix(path: Path) -> str:
    """Temporary name of `path` for this process: `.<name>.<host>.<pid>-<start>.`, so that
    a later writer can tell whether the process that made a leftover is gone."""
    me = this_process()
    return f".{path.name}.{me['host']}.{me['pid']}-{me['start']}."


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a crash after it must not bring the old file back)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write(path: str | os.PathLike, write, before_replace=None) -> None:
    """Call `write(stream)` on a temporary file in the target folder, flush it to disk, then
    rename it into place: a reader never sees a partial file, a killed writer leaves none
    under the final name, and a crash never leaves an empty file under it.
    `before_replace()`, if given, runs once the file is complete, just before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=_partial_prefix(path), suffix=".partial", dir=path.parent
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~CURRENT_UMASK)
        if before_replace is not None:
            before_replace()
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    atomic_write(path, lambda stream: stream.write(payload))


def modified_ns(path) -> int | None:
    """The file's modification time (ns), or None if it does not exist."""
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def _creator_is_gone(path: Path, leftover: Path) -> bool:
    """Whether the temporary file `leftover` of `path` was made by a process of this host
    that has ended (names without a creator, from another host or version, are kept)."""
    middle = leftover.name[len(f".{path.name}.") : -len(".partial")]
    parts = middle.rsplit(".", 2)
    if len(parts) != 3 or parts[0] != this_process()["host"]:
        return False
    pid, _, start = parts[1].partition("-")
    return pid.isdigit() and pid_is_gone(int(pid), start)


def remove_stale_partials(path: str | os.PathLike) -> None:
    """Delete temporary files that earlier writers of `path`, now gone, left behind (killed);
    a live writer's file (a concurrent run) is left alone."""
    path = Path(path)
    if path.parent.is_dir():
        for leftover in path.parent.glob(f".{glob_escape(path.name)}.*.partial"):
            if _creator_is_gone(path, leftover):
                leftover.unlink(missing_ok=True)
