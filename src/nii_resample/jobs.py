"""One resample job as the workflow runs it: log, record, failure record, exit status; and
the command that runs it, also a command line for one file:

    python -m nii_resample volume in.nii.gz out.nii.gz 128 128 64 [--engine itk] [--kind label_map] ...

The rule's job (scripts/resample_job.py) hands its arguments to the run's resident worker
(nii_resample.workflow_worker), which calls `volume_main` in a forked child, or runs this
command in-process. The work is done by the pure function `resample_volume`
(nii_resample.volume); the flags are parsed by nii_resample.command.
"""

from __future__ import annotations

import errno
import sys
import traceback
from pathlib import Path

from .command import build_parser, wants_voxel_size
from .errors import VolumeError, failure_reason
from .formatting import size_text
from .records import write_failure, write_record
from .volume import resample_volume


def nonfinite_text(record: dict) -> str:
    """The NaN/inf counts for a log line, or nothing when the volume had none."""
    if not (record["nonfinite_in"] or record["nonfinite_out"]):
        return ""
    return (
        f"; {record['nonfinite_in']} NaN/inf voxels in (treated as missing), "
        f"{record['nonfinite_out']} NaN voxels out"
    )


def usable_copy(copy, source) -> bool:
    """Whether the decoded copy holds the input as it is now: not emptied, not older."""
    copy, source = Path(copy).stat(), Path(source).stat()
    return copy.st_size > 0 and copy.st_mtime_ns >= source.st_mtime_ns


def run_resample_job(
    in_path,
    out_path,
    record_path,
    failure_path,
    log_path,
    desired_volume=None,
    source=None,
    run_by=None,
    **options,
) -> int:
    """Resample one volume; on bad input, a one-line reason goes to the log, the console and
    a failure record, the exit status is 1, and the job leaves nothing it made (an existing
    file at out_path is not this job's: it is left alone). `run_by` names the process that
    runs the job when it is not the job's own (the resident worker): the log's first line."""
    failure_path, record_path = Path(failure_path), Path(record_path)
    wrote_record = False
    # A decoded copy (several grids, workflow/rules/resample.smk): name the real input, and
    # read that instead when the copy is emptied (every grid was done: this grid reruns
    # alone) or older than the input (the input was replaced since).
    named = source or in_path
    if source and not usable_copy(in_path, source):
        in_path = source

    def commit_record(row):
        nonlocal wrote_record
        row["input_path"] = str(named)
        write_record(record_path, row)
        wrote_record = True

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        if run_by:
            print(f"nii-resample: run by {run_by}", file=log)
        if options.get("reference"):
            grid = f"the grid of {options['reference']}"
        elif desired_volume is not None:
            grid = f"{size_text(desired_volume)} voxels"
        else:
            grid = f"{','.join(map(str, options['desired_spacing']))} mm spacing"
        if options.get("case_reference"):
            grid += f", as its case image {options['case_reference']}"
        print(
            f"resampling {in_path} -> {out_path} to {grid} "
            f"({', '.join(f'{k}={v}' for k, v in sorted(options.items()) if v is not None)})",
            file=log,
            flush=True,
        )
        try:
            record = resample_volume(
                in_path,
                out_path,
                desired_volume,
                before_commit=commit_record,
                **options,
            )
        except Exception as error:  # every failure must end as a one-line reason
            reason = failure_reason(Path(named).name, error)
            if isinstance(error, VolumeError):
                decoded = f"{Path(in_path).name}:"
                if source and reason.startswith(decoded):
                    reason = f"{Path(source).name}:{reason[len(decoded):]}"
            elif isinstance(error, OSError) and error.errno == errno.ENOSPC:
                reason = f"{Path(named).name}: no space left on device to write {out_path}"
            else:
                traceback.print_exc(file=log)
            # Remove only what this job made: never out_path, which may be the volume a
            # newer run just wrote (this job may be an orphan of a killed run).
            if wrote_record:  # the record came, the volume's rename then failed
                record_path.unlink(missing_ok=True)
            write_failure(
                failure_path,
                {"input_path": str(named), "output_path": str(out_path), "reason": reason},
            )
            print(f"ERROR {reason}", file=log)
            # Leading newline: Snakemake writes to the same console concurrently, and its
            # lines may lack their newline at this moment; ours must start a line.
            sys.stderr.write(f"\nERROR {reason}\n")
            sys.stderr.flush()
            return 1
        failure_path.unlink(missing_ok=True)
        print(
            f"done in {record['seconds']} s: {record['original_size']} -> {record['new_size']}, "
            f"spacing {record['original_spacing']} -> {record['new_spacing']} mm"
            f"{nonfinite_text(record)}; header: {record['header_geometry']}",
            file=log,
        )
    return 0


def volume_main(argv=None, run_by=None) -> int:
    """`python -m nii_resample volume ...`: one volume, by hand or as the workflow's job
    (with --log/--record/--failure-record); `run_by`: the resident worker that runs this
    job, if any (its log says so)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(VOLUME_COMMAND, wants_voxel_size(argv))
    args = vars(parser.parse_args(argv))
    if args["desired_volume"] is None and args["desired_spacing"] is None and not args["reference"]:
        parser.error("give X Y Z, --desired-spacing SX SY SZ or --reference PATH")
    in_path, out_path = args.pop("in_path"), args.pop("out_path")
    job_files = {key: args.pop(key) for key in ("record_path", "failure_path", "log_path")}
    if any(job_files.values()):
        if not all(job_files.values()):
            parser.error("--log, --record and --failure-record go together")
        return run_resample_job(in_path, out_path, **job_files, **args, run_by=run_by)
    args.pop("source")
    try:
        record = resample_volume(in_path, out_path, **args)
    except VolumeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{record['output_path']}: {record['original_size']} -> {record['new_size']} voxels")
    return 0


VOLUME_COMMAND = "Resample one NIfTI volume: the workflow's per-volume job, and a command line for one file."
