"""Per-volume records (one-row TSV files) and the reports built from them.

Each job writes its own record; only the aggregation step and the end-of-run handlers read
them all, so no job ever edits a shared file.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .errors import RecordNotRebuilt
from .files import atomic_write_bytes, modified_ns

# Manifest columns, in order; README.md documents each one.
RECORD_COLUMNS = (
    "input_path",
    "output_path",
    "status",
    "reason",
    "grid",
    "target_grid",
    "grid_offset_mm",
    "crop_or_pad",
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
    "orientation",
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


def read_table(path: str | os.PathLike) -> tuple[list[str], list[dict]]:
    """(columns, rows) of a TSV written by `tsv_bytes`: a record, a failure record, a
    manifest. The one reader of these files; every value a string ("" when empty)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = list(reader)
        return list(reader.fieldnames or ()), rows


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a TSV written by `tsv_bytes` (read_table)."""
    return read_table(path)[1]


def _failed_step_log(job: dict) -> str:
    """The log that says why `job` failed: its own, or (several grids) that of the decoding
    of its volume when that is newer: a volume that could not be decoded never reached its
    resample jobs, whose logs are then missing or from an earlier run."""
    decode_log = job.get("decode_log")
    own, decoded = modified_ns(job["log"]), modified_ns(decode_log) if decode_log else None
    if decoded is not None and (own is None or decoded > own):
        return decode_log
    return job["log"]


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
                failures.append({**rows[0], "log": _failed_step_log(job)})
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


def failed_row(input_path, output_path, reason: str, grid=None) -> dict:
    """A manifest row for a volume that failed: its paths, its one-line reason and, when
    given, its grid (the workflow's and the Python API's manifests)."""
    row = {"input_path": input_path, "output_path": output_path, "status": "failed",
           "reason": reason}
    if grid is not None:
        row["grid"] = grid
    return row


def manifest_rows(jobs: list[dict], failures=()) -> tuple[list[dict], list[str]]:
    """One row per job (dicts with input_path, output_path, record_path, options): the
    failure's row for a failed volume, otherwise its record. A record deleted by hand is
    rebuilt from the files and written back. Returns (rows, rebuilt record paths); raises
    errors.RecordNotRebuilt (one line: which record, why, what to run) when it cannot be.
    """
    failed = {failure["output_path"]: failure for failure in failures}
    rows, rebuilt = [], []
    for job in jobs:
        # The grid comes from the plan: a job's record does not know the grid's name.
        grid = {"grid": job["grid"]} if "grid" in job else {}
        if job["output_path"] in failed:
            failure = failed[job["output_path"]]
            row = failed_row(failure["input_path"], failure["output_path"], failure["reason"])
            rows.append({**row, **grid})
            continue
        record = read_rows(job["record_path"]) if Path(job["record_path"]).is_file() else []
        if not record:  # deleted (or emptied) by hand: each job writes it before its volume
            record = [_rebuilt(job)]
            rebuilt.append(job["record_path"])
        rows.append({**record[0], **grid})
    return rows, rebuilt


def _rebuilt(job: dict) -> dict:
    from .rebuild import rebuild_record

    try:
        record = rebuild_record(job["input_path"], job["output_path"], job["options"])
    except RecordNotRebuilt as problem:
        raise RecordNotRebuilt(
            f"{job['record_path']}: the record of a resampled volume is missing and cannot "
            f"be rebuilt ({problem}); redo that volume with `snakemake --forcerun "
            f"{job['output_path']}`, or delete {job['output_path']} and run again"
        ) from None
    write_record(job["record_path"], record)
    return record


def write_manifest(path: str | os.PathLike, rows: list[dict]) -> None:
    """manifest.tsv: the rows sorted by input path, every column of RECORD_COLUMNS."""
    rows = sorted(rows, key=lambda row: (row["input_path"], row["output_path"]))
    atomic_write_bytes(path, tsv_bytes(RECORD_COLUMNS, rows))


def mark_out_of_date(path: str | os.PathLike) -> None:
    """Give a file the oldest mtime there is, so that Snakemake rebuilds it through its rule
    at the next run (it is older than any input)."""
    if Path(path).exists():
        os.utime(path, (0, 0))


def build_manifest(jobs: list[dict], path: str | os.PathLike, failures=()) -> list[str]:
    """Write manifest.tsv (atomically) for `jobs`, `failures` as failed rows; return the
    records rebuilt on the way. The rule `manifest` and the end-of-run handler of a run with
    failures both call this. On a record that cannot be rebuilt, nothing is written."""
    rows, rebuilt = manifest_rows(jobs, failures)
    write_manifest(path, rows)
    return rebuilt


def rebuilt_line(rebuilt: list[str]) -> str:
    return f"rebuilt {len(rebuilt)} deleted record(s) from the files: {', '.join(rebuilt)}"


def manifest_after_failures(path, jobs: list[dict], failures: list[dict]) -> bool:
    """The end-of-run handler's manifest: with failures, build_manifest (failed volumes as
    failed rows), since rule `manifest` never runs when one of its inputs failed. Either way
    the manifest is then marked out of date, so the next run rebuilds it through the rule
    whatever the user fixed (a volume replaced or deleted, a record): no stale failed or
    missing row. Returns whether it wrote the manifest."""
    written = False
    if failures:
        try:
            rebuilt = build_manifest(jobs, path, failures)
            written = True
            if rebuilt:
                print(rebuilt_line(rebuilt), flush=True)
        except RecordNotRebuilt as problem:  # the previous manifest stays as it was
            print(f"ERROR {problem}", flush=True)
    mark_out_of_date(path)
    return written
