"""Resuming after a killed run: a `kill -9` leaves Snakemake's locks and "incomplete" marks.

Snakemake then refuses to start (asking for --unlock, then --rerun-incomplete). Every output
of this workflow is written to a temporary name and renamed, so a killed run never leaves a
partial file: once no Snakemake process works in the folder any more, both are only stale.
"""

from __future__ import annotations

import os
from pathlib import Path


def snakemake_processes_in(folder: Path) -> list[int]:
    """Pids (other than ours) of Snakemake processes and jobs whose working folder is `folder`."""
    proc = Path("/proc")
    folder = folder.resolve()
    pids = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).resolve() != folder:
                continue
            if b"snakemake" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # the process ended, or is not ours to inspect
            continue
    return pids


def release_stale_state(folder: str | os.PathLike = ".") -> list[Path]:
    """Remove Snakemake's locks and incomplete marks in `folder` if no Snakemake process works
    there; return what was removed. Without /proc (not Linux) nothing is removed: Snakemake's
    own --unlock and --rerun-incomplete remain the way.
    """
    state = Path(folder) / ".snakemake"
    if not Path("/proc/self").exists():
        return []
    stale = [
        path
        for kind in ("locks", "incomplete")
        if (state / kind).is_dir()
        for path in (state / kind).iterdir()
        if path.is_file()
    ]
    if not stale or snakemake_processes_in(Path(folder)):
        return []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
