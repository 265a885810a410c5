"""A worker process of the Python API: `python -m nii_resample.worker`.

It reads jobs as JSON lines on stdin ({"in_path", "out_path", "options"}) and answers each
with one JSON line on stdout: the manifest row, or a failed row with a one-line reason.
A plain subprocess rather than multiprocessing, whose spawn start method re-imports the
caller's __main__ (a script without a main guard then starts its work again, and dies).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path


def one_line(text) -> str:
    return " ".join(str(text).split())


def failed_row(job: dict, reason: str) -> dict:
    return {"input_path": job["in_path"], "output_path": job["out_path"], "status": "failed",
            "reason": one_line(reason)}


def _remove_output(path: str) -> None:
    """As the workflow's job (jobs.py): a failed volume leaves no output behind."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass  # no such file to remove (e.g. its folder's name is taken by a file)


def run_job(job: dict) -> dict:
    """One volume; any exception becomes that volume's failed row (the others go on)."""
    from .errors import VolumeError
    from .volume import resample_volume

    try:
        return resample_volume(job["in_path"], job["out_path"], **job["options"])
    except Exception as error:  # every failure must end as a one-line reason
        _remove_output(job["out_path"])
        if isinstance(error, VolumeError):
            return failed_row(job, str(error))
        name = Path(job["in_path"]).name
        return failed_row(job, f"{name}: {type(error).__name__}: {error}")


def _json_value(value):
    # numpy scalars (bool_, float64) in a row: their Python equivalents.
    return value.item()


def main() -> None:
    # Ctrl-C reaches the whole terminal process group: the caller stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    # Anything else printed (by a library, or C code) goes to stderr, not into the replies.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for line in sys.stdin:
        row = run_job(json.loads(line))
        replies.write(json.dumps(row, default=_json_value) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
