"""Resuming after a killed run without ever unlocking a live one.

A `kill -9` leaves Snakemake's locks (.snakemake/locks) behind, and Snakemake then refuses
to start until `--unlock`. Every output of this workflow is written to a temporary name and
renamed, so a killed run leaves no partial file; its lock is only stale. But a lock may also
belong to a live run on another login node, in a container or of another user, which this
machine cannot see. So a lock is removed only when it is proven stale: when the run holding
it recorded its owner (`claim_new_locks`, at onstart, right after Snakemake locked), on this
host and boot, in this pid namespace, and that process is gone (or its pid now belongs to a
process that started at another time). Anything else is left to the user, in one sentence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .files import atomic_write_bytes
from .processes import pid_is_gone, this_process
from .snakemake_compat import incomplete_mark_path, lock_kind, locked_paths

OWNERS = Path("nii_resample") / "lock_owners"  # under .snakemake/


class LockedError(Exception):
    """The folder is locked by a run that is, or may be, alive."""


def owner_is_local(owner: dict) -> bool:
    """Whether `owner` ran on this host, since its last boot, in our pid namespace."""
    me = this_process()
    if me["boot_id"] is None:  # not Linux: nothing can be checked
        return False
    return all(owner.get(key) == me[key] for key in ("host", "boot_id", "pid_namespace"))


def owner_is_gone(owner: dict) -> bool:
    """True only if `owner` ran here and has ended (pid free, or reused by a newer process)."""
    return owner_is_local(owner) and pid_is_gone(int(owner["pid"]), owner.get("start"))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def lock_files(state: Path) -> dict[str, tuple[int, int]]:
    """Snakemake's lock files in `state` (.snakemake): name -> (inode, mtime)."""
    folder = state / "locks"
    if not folder.is_dir():
        return {}
    stamps = {path.name: _stamp(path) for path in folder.iterdir() if path.is_file()}
    return {name: stamp for name, stamp in stamps.items() if stamp is not None}


def _owner(state: Path, name: str, stamp) -> dict | None:
    """The owner record of lock file `name`, if it was written for this very file."""
    try:
        owner = json.loads((state / OWNERS / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or [owner.get("inode"), owner.get("mtime_ns")] != list(stamp):
        return None
    return owner


def _under(path: Path, roots: list[Path]) -> bool:
    path = Path(os.path.abspath(path))
    return any(path.is_relative_to(root) for root in roots)


def _concerns(lock: Path, roots: list[Path]) -> bool:
    """Whether a lock names a file under one of `roots` (this run's input and output
    folders); unreadable locks count as concerning us."""
    keys = locked_paths(lock)
    return not keys or any(_under(key, roots) for key in keys)


def _refusal(folder: Path, owner: dict | None) -> str:
    if owner is not None and not owner_is_gone(owner) and owner_is_local(owner):
        return (
            f"{folder} is locked by a Snakemake run on host {owner['host']} (pid {owner['pid']}) "
            "that is still running; wait for it to end (or stop it) before starting another"
        )
    where = f" on host {owner['host']}" if owner is not None else ""
    return (
        f"{folder} is locked by a Snakemake run{where} that this workflow cannot check "
        "(another host, container or user, or a run just starting); if no run is active, "
        "run `snakemake --unlock` once, then run again"
    )


def _incomplete_marks(state: Path, roots: list[Path]) -> list[Path]:
    """Snakemake's "incomplete" marks (file name: base64 of the output path, long ones split
    into folders whose names start with "@") for outputs under `roots`."""
    folder = state / "incomplete"
    marks = []
    for path in folder.rglob("*") if folder.is_dir() else ():
        if not path.is_file():
            continue
        key = incomplete_mark_path(folder, path)
        if key is not None and _under(key, roots):
            marks.append(path)
    return marks


def release_stale_locks(roots, folder: str | os.PathLike = ".") -> list[Path]:
    """Remove the locks in `folder` that concern files under `roots`, with their owner records
    and the incomplete marks of those files, if every one is proven stale; return what was
    removed. Raises LockedError (one sentence) if any of them is not proven stale."""
    folder = Path(os.path.abspath(folder))
    state = folder / ".snakemake"
    roots = [Path(os.path.abspath(folder / root)) for root in roots]
    locks = {
        name: stamp
        for name, stamp in lock_files(state).items()
        if _concerns(state / "locks" / name, roots)
    }
    for name, stamp in locks.items():
        owner = _owner(state, name, stamp)
        if owner is None or not owner_is_gone(owner):
            raise LockedError(_refusal(folder, owner))
    removed = []
    for name in locks:
        for path in (state / "locks" / name, state / OWNERS / f"{name}.json"):
            path.unlink(missing_ok=True)
            removed.append(path)
    if locks:
        for mark in _incomplete_marks(state, roots):
            mark.unlink(missing_ok=True)
            removed.append(mark)
    return removed


def claim_new_locks(before: dict, folder: str | os.PathLike = ".") -> list[str]:
    """Record this process as the owner of the lock files that appeared since `before` (a
    `lock_files` snapshot taken just before Snakemake locked). If more than one input and
    one output lock appeared, another run locked at the same time and ours cannot be told
    apart: claim none (a later run then asks for --unlock rather than guess)."""
    state = Path(folder) / ".snakemake"
    prune_owner_records(folder)
    new = {
        name: stamp for name, stamp in lock_files(state).items() if before.get(name) != stamp
    }
    kinds = [kind for kind in map(lock_kind, new) if kind is not None]
    if not new or len(kinds) != len(new) or len(set(kinds)) != len(kinds):
        return []
    me = this_process()
    for name, (inode, mtime_ns) in new.items():
        record = {**me, "lock": name, "inode": inode, "mtime_ns": mtime_ns}
        atomic_write_bytes(state / OWNERS / f"{name}.json", json.dumps(record).encode())
    return sorted(new)


def release_claims(folder: str | os.PathLike = ".") -> None:
    """At the end of a run: remove this process's owner records (Snakemake removes the
    locks themselves just after)."""
    owners = Path(folder) / ".snakemake" / OWNERS
    for path in owners.glob("*.json") if owners.is_dir() else ():
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink(missing_ok=True)
        except (OSError, ValueError):
            continue
    prune_owner_records(folder)


def prune_owner_records(folder: str | os.PathLike = ".") -> None:
    """Remove owner records whose lock file is gone or was replaced (Snakemake removes the
    whole lock folder at the end of any run)."""
    state = Path(folder) / ".snakemake"
    owners = state / OWNERS
    locks = lock_files(state)
    for path in owners.glob("*.json") if owners.is_dir() else ():
        name = path.name.removesuffix(".json")
        if name not in locks or _owner(state, name, locks[name]) is None:
            path.unlink(missing_ok=True)
