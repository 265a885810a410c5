"""The per-volume job's command line (the resample rule's shell command runs
scripts/resample.py): its parser, the words for a volume's options, and the interpreter.
Its flags are the job's own (hand-written); their defaults and choices come from the config
schema (options.py), as everywhere.

Kept free of the numerical modules: the workflow imports it while Snakemake starts.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from pathlib import Path

from .options import DEFAULTS, PROPERTIES
from .orientation import parse_orientation
from .settings import ENGINES, INTERPOLATIONS, KINDS, LABEL_INTERPOLATIONS


def positive_int(text: str) -> int:
    """argparse type of X, Y, Z (and counts): a whole number of at least 1."""
    if not re.fullmatch(r"\s*\+?\d+\s*", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def positive_float(text: str) -> float:
    """argparse type of a spacing: a positive, finite number (mm)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def orientation_code(text: str) -> str:
    """argparse type of --orientation: keep or an axis code, with the config's sentence."""
    try:
        return parse_orientation(text)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None


def wants_voxel_size(argv) -> bool:
    """Whether a command line gives X Y Z (positionals), not --desired-spacing or --grid."""
    return not any(
        word.startswith(("--desired-spacing", "--grid")) for word in (argv or [])
    )


def add_desired_spacing(parser: argparse.ArgumentParser, positionals: bool) -> None:
    """--desired-spacing SX SY SZ (mm), instead of the positionals X Y Z."""
    parser.add_argument("--desired-spacing", nargs=3, type=positive_float, default=None,
                        metavar=("SX", "SY", "SZ"),
                        help="target voxel size in mm instead of X Y Z (the field of view's "
                        "centre is kept)")
    if not positionals:
        parser.set_defaults(desired_volume=None)


def add_desired_volume(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The positionals X Y Z, gathered into `desired_volume` (a list). Not one nargs=3
    positional with a tuple metavar: that crashes argparse's help and usage errors (3.11)."""
    for axis in "XYZ":
        parser.add_argument("desired_volume", metavar=axis, type=positive_int, action="append",
                            help=f"{help_text} along {axis}")


def build_parser(description: str | None = None, positionals: bool = True) -> argparse.ArgumentParser:
    """The command line of scripts/resample.py: one volume, by hand or as a workflow job
    (`positionals` False: --desired-spacing instead of X Y Z; see wants_voxel_size)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("in_path", help="input .nii.gz volume")
    parser.add_argument("out_path", help="output .nii.gz path (folders are created)")
    if positionals:
        add_desired_volume(parser, "voxels")
    add_desired_spacing(parser, positionals)
    parser.add_argument("--source", default=None,
                        help="the input in_path was decoded from (the record names it)")
    parser.add_argument("--engine", choices=ENGINES, default=DEFAULTS["engine"])
    parser.add_argument(
        "--interpolation", choices=INTERPOLATIONS, default=DEFAULTS["interpolation"]
    )
    parser.add_argument(
        "--no-antialias", dest="antialias", action="store_false", help="no Gaussian prefilter"
    )
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="auto",
        help="label_map or image; auto (default) decides from the header and the voxels",
    )
    parser.add_argument(
        "--label-map",
        dest="kind",
        action="store_const",
        const="label_map",
        help="the same as --kind label_map",
    )
    parser.add_argument(
        "--kind-reason", default="", help="why --kind was chosen (for the manifest's kind_reason)"
    )
    parser.add_argument(
        "--label-interpolation",
        choices=LABEL_INTERPOLATIONS,
        default=DEFAULTS["label_interpolation"],
    )
    level = PROPERTIES["compression_level"]
    parser.add_argument(
        "--compression-level",
        type=int,
        default=DEFAULTS["compression_level"],
        choices=range(level["minimum"], level["maximum"] + 1),
    )
    parser.add_argument("--orientation", type=orientation_code, default=DEFAULTS["orientation"],
                        help=PROPERTIES["orientation"]["title"])
    parser.add_argument("--threads", type=int, default=DEFAULTS["threads_per_job"])
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
    if options.get("desired_spacing"):
        words = ["--desired-spacing", *(repr(float(v)) for v in options["desired_spacing"])]
    else:
        words = [str(size) for size in options["desired_volume"]]
    words += ["--engine", options["engine"], "--interpolation", options["interpolation"]]
    words += ["--label-interpolation", options["label_interpolation"]]
    words += ["--compression-level", str(options["compression_level"])]
    if not options["antialias"]:
        words.append("--no-antialias")
    words += ["--kind", options["kind"]]
    if options["kind_reason"]:
        words += ["--kind-reason", options["kind_reason"]]
    # Only when set (settings.job_options): the default leaves finished outputs as they were.
    if options.get("orientation", "keep") != "keep":
        words += ["--orientation", options["orientation"]]
    return shlex.join(words)
