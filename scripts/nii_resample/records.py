"""Per-volume records (one-row TSV files) and the reports built from them.

Each job writes its own record; only the aggregation step and the end-of-run handlers read
them all, so no job ever edits a shared file.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .nifti import atomic_write_bytes

# Manifest columns, in order; README.md documents each one.
RECORD_COLUMNS = (
    "input_path",
    "output_path",
    "status",
    "reason",
    "kind",
    "kind_reason",
    "engine",
    "interpolation",
    "antialias",
    "pixel_type",
    "original_size",
    "original_spacing",
    "original_origin",
    "direction",
    "header_geometry",
    "new_size",
    "new_spacing",
    "new_origin",
    "min_before",
    "max_before",
    "min_after",
    "max_after",
    "nonfinite_in",
    "nonfinite_out",
    "seconds",
)
FAILURE_COLUMNS = ("input_path", "output_path", "reason", "log")


def tsv_bytes(columns, rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=columns, delimiter="\t", lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_record(path: str | os.PathLike, record: dict) -> None:
    atomic_write_bytes(path, tsv_bytes(RECORD_COLUMNS, [record]))


def write_failure(path: str | os.PathLike, failure: dict) -> None:
    atomic_write_bytes(path, tsv_bytes(FAILURE_COLUMNS, [failure]))


def read_rows(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def collect_failures(expected: list[dict]) -> list[dict]:
    """Failures among `expected` jobs (dicts with input_path, output_path, failure_path, log).

    A job that failed with a known reason left a failure record; a job that died without one
    (killed, out of memory on a cluster) is reported with a pointer to its log.
    """
    failures = []
    for job in expected:
        if Path(job["output_path"]).exists() and not Path(job["failure_path"]).exists():
            continue
        if Path(job["failure_path"]).exists():
            rows = read_rows(job["failure_path"])
            if rows:
                failures.append({**rows[0], "log": job["log"]})
                continue
        log = job["log"] if Path(job["log"]).exists() else "none (see Snakemake's own log)"
        failures.append(
            {
                "input_path": job["input_path"],
                "output_path": job["output_path"],
                "reason": f"{Path(job['input_path']).name}: the job did not finish "
                "(killed, out of memory or time, or not started; no reason was recorded)",
                "log": log,
            }
        )
    return failures


def write_failures_report(path: str | os.PathLike, failures: list[dict]) -> None:
    """failures.tsv beside the manifest; removed when a run has no failures."""
    path = Path(path)
    if failures:
        atomic_write_bytes(path, tsv_bytes(FAILURE_COLUMNS, failures))
    else:
        path.unlink(missing_ok=True)
