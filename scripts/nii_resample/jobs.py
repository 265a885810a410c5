"""One resample job as the workflow runs it: its command line (the rule's shell command),
log, record, failure record and exit status."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
from pathlib import Path

from .errors import VolumeError
from .records import write_failure, write_record
from .settings import ENGINES, INTERPOLATIONS, LABEL_INTERPOLATIONS
from .volume import resample_volume


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The command line of scripts/resample.py: one volume, by hand or as a workflow job."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("in_path", help="input .nii.gz volume")
    parser.add_argument("out_path", help="output .nii.gz path (folders are created)")
    parser.add_argument(
        "desired_volume", nargs=3, type=int, metavar=("X", "Y", "Z"), help="voxels per axis"
    )
    parser.add_argument("--engine", choices=ENGINES, default="fast")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default="bspline")
    parser.add_argument(
        "--no-antialias", dest="antialias", action="store_false", help="no Gaussian prefilter"
    )
    parser.add_argument("--label-map", action="store_true", help="the input is a label map")
    parser.add_argument(
        "--label-interpolation", choices=LABEL_INTERPOLATIONS, default="linear_argmax"
    )
    parser.add_argument("--compression-level", type=int, default=1, choices=range(1, 10))
    parser.add_argument("--threads", type=int, default=1)
    job = parser.add_argument_group(
        "workflow job", "given together: write a log, a manifest record or a failure record"
    )
    job.add_argument("--log", dest="log_path", help="job log (the one-line reason on failure)")
    job.add_argument("--record", dest="record_path", help="one-row TSV for the manifest")
    job.add_argument("--failure-record", dest="failure_path", help="one-row TSV on failure")
    return parser


def put_python_first_on_path(executable: str) -> None:
    """Let `python3` in the jobs' shell commands be `executable` (as activating its venv would)."""
    os.environ["PATH"] = os.pathsep.join([str(Path(executable).parent), os.environ.get("PATH", "")])


def job_arguments(options: dict) -> str:
    """settings.job_options(...) as the words build_parser() reads (shell-quoted), so that
    the rule's shell command runs exactly the options the workflow computed."""
    words = [str(size) for size in options["desired_volume"]]
    words += ["--engine", options["engine"], "--interpolation", options["interpolation"]]
    words += ["--label-interpolation", options["label_interpolation"]]
    words += ["--compression-level", str(options["compression_level"])]
    if not options["antialias"]:
        words.append("--no-antialias")
    if options["label_map"]:
        words.append("--label-map")
    return shlex.join(words)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_resample_job(
    in_path,
    out_path,
    record_path,
    failure_path,
    log_path,
    desired_volume,
    **options,
) -> int:
    """Resample one volume; on bad input, a one-line reason goes to the log, the console and
    a failure record, no output is left behind, and the exit status is 1."""
    failure_path, record_path = Path(failure_path), Path(record_path)
    # The record is written just before the volume is renamed into place; one left by an
    # earlier run of this volume (whose output Snakemake has removed) must not outlive it.
    record_path.unlink(missing_ok=True)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        print(
            f"resampling {in_path} -> {out_path} to {'x'.join(map(str, desired_volume))} voxels "
            f"({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})",
            file=log,
            flush=True,
        )
        try:
            record = resample_volume(
                in_path,
                out_path,
                desired_volume,
                before_commit=lambda row: write_record(record_path, row),
                **options,
            )
        except Exception as error:  # every failure must end as a one-line reason
            if isinstance(error, VolumeError):
                reason = _one_line(error)
            else:
                reason = _one_line(f"{Path(in_path).name}: {type(error).__name__}: {error}")
                traceback.print_exc(file=log)
            Path(out_path).unlink(missing_ok=True)
            record_path.unlink(missing_ok=True)
            write_failure(
                failure_path,
                {"input_path": str(in_path), "output_path": str(out_path), "reason": reason},
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
            f"spacing {record['original_spacing']} -> {record['new_spacing']} mm",
            file=log,
        )
    return 0
