"""Which process, on which machine, made a file: enough for a later process to prove that
its creator has ended before removing what it left (locks, temporary files)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """Start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22), or None."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    return stat.rsplit(")", 1)[1].split()[19]


def pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def this_process() -> dict:
    """Who we are, in terms a later process on any machine can check."""
    return {
        "host": socket.gethostname(),
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": pid_namespace(),
        "pid": os.getpid(),
        "start": process_start(os.getpid()),
    }


def alive(pid: int) -> bool:
    """Whether `pid` exists; a process of another user (EPERM) exists too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_is_gone(pid: int, start: str | None) -> bool:
    """True if process `pid` of this machine, started at `start`, has ended: its pid is free,
    or taken by a process that started at another time (pid reuse)."""
    if not alive(pid):
        return True
    now = process_start(pid)
    return now is not None and start is not None and now != start
