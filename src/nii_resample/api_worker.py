"""A worker process of the Python API: `python -m nii_resample.api_worker`.

It reads jobs as JSON lines on stdin ({"in_path", "outputs": [{"out_path", "grid",
"options"}, ...]}: one volume, one output per grid) and answers each with one JSON line on
stdout: the list of manifest rows, or failed rows with a one-line reason. The volume is read
and decoded once for all its grids.
A plain subprocess rather than multiprocessing, whose spawn start method re-imports the
caller's __main__ (a script without a main guard then starts its work again, and dies).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from .errors import failure_reason
from .records import failed_row


def failed_rows(job: dict, error: Exception, outputs: list[dict]) -> list[dict]:
    """The failed manifest rows of `job`'s `outputs` (one per grid) after `error`."""
    reason = failure_reason(Path(job["in_path"]).name, error)
    return [failed_row(job["in_path"], output["out_path"], reason, output.get("grid", ""))
            for output in outputs]


def remove_output(path: str) -> None:
    """Remove a failed volume's output (the API's and restore's workers leave none behind)."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass  # no such file to remove (e.g. its folder's name is taken by a file)


def run_job(job: dict) -> list[dict]:
    """One volume on each of its grids, read once; any exception becomes a failed row of
    that volume (and grid: the others go on)."""
    from .nifti import read_volume
    from .volume import resample_volume

    if job.get("task") == "restore":  # the way back (nii_resample.restore)
        from .restore import run_restore_job

        return run_restore_job(job)
    try:
        volume = read_volume(job["in_path"])
    except Exception as error:  # every failure must end as a one-line reason
        return failed_rows(job, error, job["outputs"])
    rows = []
    for output in job["outputs"]:
        try:
            row = resample_volume(
                job["in_path"], output["out_path"], volume=volume, **output["options"]
            )
            rows.append({**row, "grid": output["grid"]})
        except Exception as error:  # every failure must end as a one-line reason
            remove_output(output["out_path"])
            rows += failed_rows(job, error, [output])
    return rows


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
        rows = run_job(json.loads(line))
        replies.write(json.dumps(rows, default=_json_value) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
