"""The per-volume job's command line (`python -m nii_resample volume`, which the resample
rule's job runs through scripts/resample_job.py): its parser, the words for a volume's
options, and the interpreter.
Its flags are the job's own (hand-written); their defaults and choices come from the config
schema (options.py), as everywhere.

Kept free of the numerical modules: the workflow imports it while Snakemake starts.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
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
    """Whether a command line gives X Y Z (positionals), not --desired-spacing, --reference
    or --grid."""
    return not any(
        word.startswith(("--desired-spacing", "--grid", "--reference")) for word in (argv or [])
    )


class DesiredSpacing(argparse.Action):
    """SX SY SZ (positive mm), or one word: median / nnunet (chosen from the dataset)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) == 1 and values[0] in ("median", "nnunet"):
            setattr(namespace, self.dest, values[0])
            return
        if len(values) != 3:
            parser.error(f"{option_string}: give SX SY SZ (mm), median or nnunet")
        try:
            setattr(namespace, self.dest, [positive_float(v) for v in values])
        except argparse.ArgumentTypeError as problem:
            parser.error(f"{option_string}: {problem}")


def add_desired_spacing(parser: argparse.ArgumentParser, positionals: bool) -> None:
    """--desired-spacing SX SY SZ (mm), instead of the positionals X Y Z."""
    parser.add_argument("--desired-spacing", nargs="+", action=DesiredSpacing, default=None,
                        metavar="SX SY SZ|median|nnunet",
                        help="target voxel size in mm instead of X Y Z (the field of view's "
                        "centre is kept), or median / nnunet: chosen from the dataset")
    parser.add_argument("--reference", default=None, metavar="PATH",
                        help="a volume whose exact grid (shape, affine) the output takes, "
                        "instead of X Y Z")
    if not positionals:
        parser.set_defaults(desired_volume=None)


def add_desired_volume(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The positionals X Y Z, gathered into `desired_volume` (a list). Not one nargs=3
    positional with a tuple metavar: that crashes argparse's help and usage errors (3.11)."""
    for axis in "XYZ":
        parser.add_argument("desired_volume", metavar=axis, type=positive_int, action="append",
                            help=f"{help_text} along {axis}")


def program_name() -> str:
    """`nii-resample` when run as the installed command, else `python -m nii_resample`."""
    name = Path(sys.argv[0]).name
    return "python -m nii_resample" if name in ("__main__.py", "-c", "", "-m") else name


def build_parser(description: str | None = None, positionals: bool = True) -> argparse.ArgumentParser:
    """The command line of `nii_resample volume`: one volume, by hand or as a workflow job
    (`positionals` False: --desired-spacing instead of X Y Z; see wants_voxel_size)."""
    parser = argparse.ArgumentParser(prog=f"{program_name()} volume", description=description)
    parser.add_argument("in_path", help="input .nii.gz volume")
    parser.add_argument("out_path", help="output .nii.gz path (folders are created)")
    if positionals:
        add_desired_volume(parser, "voxels")
    add_desired_spacing(parser, positionals)
    parser.add_argument("--source", default=None,
                        help="the input in_path was decoded from (the record names it)")
    parser.add_argument("--crop-or-pad", nargs=3, type=positive_int, default=None,
                        metavar=("X", "Y", "Z"),
                        help="with --desired-spacing: centre-crop or pad to exactly X Y Z voxels")
    parser.add_argument("--pad-to-multiple", type=positive_int, default=1, metavar="N",
                        help="with --desired-spacing: pad each axis up to a multiple of N")
    parser.add_argument("--pad-value", type=float, default=None, metavar="V",
                        help="padded image voxels' value (physical); default the minimum")
    parser.add_argument("--case-reference", default=None, metavar="IMAGE",
                        help="the case's image: the output takes that image's output grid "
                        "(X Y Z or --desired-spacing applied to it), bit for bit")
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


def point_jobs_at(executable: str, package_root) -> None:
    """What Snakemake's jobs inherit from its environment: `python3` in their shell commands
    is `executable` (as activating its venv would), and `package_root` (this workflow's src/)
    comes first on their PYTHONPATH, so every job imports this workflow's nii_resample,
    never another version installed in the environment."""
    os.environ["PATH"] = os.pathsep.join([str(Path(executable).parent), os.environ.get("PATH", "")])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(package_root), *filter(None, [os.environ.get("PYTHONPATH")])]
    )


def job_arguments(options: dict) -> str:
    """settings.job_options(...) as the words build_parser() reads (shell-quoted), so that
    the rule's shell command runs exactly the options the workflow computed."""
    if options.get("reference"):
        words = ["--reference", options["reference"]]
    elif options.get("desired_spacing"):
        words = ["--desired-spacing", *(repr(float(v)) for v in options["desired_spacing"])]
    else:
        words = [str(size) for size in options["desired_volume"]]
    words += ["--engine", options["engine"], "--interpolation", options["interpolation"]]
    words += ["--label-interpolation", options["label_interpolation"]]
    words += ["--compression-level", str(options["compression_level"])]
    if not options["antialias"]:
        words.append("--no-antialias")
    if options.get("crop_or_pad"):
        words += ["--crop-or-pad", *(str(n) for n in options["crop_or_pad"])]
    if options.get("pad_to_multiple", 1) > 1:
        words += ["--pad-to-multiple", str(options["pad_to_multiple"])]
    if options.get("pad_value") is not None:
        words += ["--pad-value", repr(float(options["pad_value"]))]
    if options.get("case_reference"):
        words += ["--case-reference", options["case_reference"]]
    words += ["--kind", options["kind"]]
    if options["kind_reason"]:
        words += ["--kind-reason", options["kind_reason"]]
    # Only when set (settings.job_options): the default leaves finished outputs as they were.
    if options.get("orientation", "keep") != "keep":
        words += ["--orientation", options["orientation"]]
    return shlex.join(words)
