"""Command line: `python -m nii_resample IN OUT X Y Z [options]`, the workflow without YAML
(or `--desired-spacing SX SY SZ`, `--reference PATH`, or `--grid NAME=128x128x64 --grid
NAME=1,1,1mm --grid NAME=atlas.nii.gz ...`, instead of X Y Z); and `python -m nii_resample
restore PREDICTIONS OUTPUT --manifest MANIFEST`, the way back onto the original grids; and
`python -m nii_resample volume IN.nii.gz OUT.nii.gz X Y Z`, one volume (nii_resample.jobs)."""

from __future__ import annotations

import argparse
import sys

from .api import API_OPTIONS, ResamplingFailed, resampling_dataset
from .command import (
    add_desired_spacing,
    add_desired_volume,
    positive_int,
    program_name,
    wants_voxel_size,
)
from .options import add_option_flags


def grid_argument(text: str) -> tuple[str, dict]:
    """--grid NAME=XxYxZ (voxels), NAME=SX,SY,SZmm (spacing in mm) or NAME=PATH.nii[.gz]
    (a reference volume's grid)."""
    name, _, spec = text.partition("=")
    spec = spec.strip()
    try:
        if spec.endswith((".nii", ".nii.gz")):
            ok, grid = True, {"reference": spec}
        elif spec.lower().endswith("mm"):
            values = [float(v) for v in spec[:-2].split(",")]
            ok = len(values) == 3 and all(v > 0 and v != float("inf") for v in values)
            grid = {"desired_spacing": values}
        else:
            values = [int(v) for v in spec.lower().split("x")]
            ok = len(values) == 3 and all(v > 0 for v in values)
            grid = {"desired_volume": values}
    except ValueError:
        ok = False
    if not (name and ok):
        raise argparse.ArgumentTypeError(
            f"must be NAME=XxYxZ (voxels, e.g. low=128x128x64), NAME=SX,SY,SZmm "
            f"(e.g. iso=1,1,1mm) or NAME=PATH.nii.gz (a reference grid), got {text!r}"
        )
    return name, grid


def build_parser(positionals: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="Resample every .nii.gz in a folder to X x Y x Z voxels, keeping the field "
        "of view. Options map onto the keys of config/config.yaml.",
        epilog=f"{program_name()} restore PREDICTIONS OUTPUT --manifest MANIFEST: the way "
        "back, predictions onto the original grids (restore --help). "
        f"{program_name()} volume IN.nii.gz OUT.nii.gz X Y Z: one volume (volume --help).",
    )
    parser.add_argument("nii_folder", help="folder of input .nii.gz volumes")
    parser.add_argument("output_path", help="folder for the results (created)")
    if positionals:
        add_desired_volume(parser, "target voxels")
    add_desired_spacing(parser, positionals)
    parser.add_argument("--grid", dest="grids", action="append", type=grid_argument,
                        metavar="NAME=SIZE",
                        help="a named grid instead of X Y Z, repeatable: NAME=XxYxZ voxels or "
                        "NAME=SX,SY,SZmm; each goes to OUTPUT_PATH/NAME/")
    add_option_flags(parser, API_OPTIONS)  # the plain options, from the config schema
    parser.add_argument("--cores", type=positive_int, default=None,
                        help="parallel volumes (default: all)")
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                        default=None, help="no progress bar (it only shows on a terminal anyway)")
    return parser


def build_restore_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{program_name()} restore",
        description="Restore predictions made on the resampled grid onto the original scans' "
        "grids: each file is matched to its input in the manifest by name and written as "
        "OUTPUT/<input file name>, with OUTPUT/restore_manifest.tsv.",
    )
    parser.add_argument("predictions", help="folder of predicted .nii.gz/.nii volumes")
    parser.add_argument("output", help="folder for the restored volumes (created)")
    parser.add_argument("--manifest", required=True,
                        help="the manifest.tsv written when the inputs were resampled")
    parser.add_argument("--label-maps", dest="label_maps", nargs="+", default=[],
                        metavar="PATTERN", help="file-name glob patterns of label maps (the "
                        "others are decided from their header and voxels)")
    parser.add_argument("--cores", type=positive_int, default=None,
                        help="parallel volumes (default: all)")
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                        default=None, help="no progress bar (it only shows on a terminal anyway)")
    return parser


def run_reporting(call, done: str) -> int:
    """Exit status of a dataset call: 0 and `done` (formatted with the count written),
    1 when some volumes failed, 2 for a bad folder or option; errors in one line."""
    try:
        written = call()
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ResamplingFailed as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    print(done.format(len(written)))
    return 0


def restore_main(argv) -> int:
    from .restore import restore_dataset

    args = build_restore_parser().parse_args(argv)
    return run_reporting(
        lambda: restore_dataset(args.predictions, args.output, args.manifest,
                                label_maps=args.label_maps, cores=args.cores,
                                progress=args.progress),
        f"{{}} predictions restored into {args.output}",
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["restore"]:
        return restore_main(argv[1:])
    if argv[:1] == ["volume"]:
        from .jobs import volume_main

        return volume_main(argv[1:])
    parser = build_parser(wants_voxel_size(argv))
    args = parser.parse_args(argv)
    if args.grids and len(dict(args.grids)) != len(args.grids):
        parser.error("each --grid NAME must be given once")
    return run_reporting(
        lambda: resampling_dataset(
            args.nii_folder,
            args.output_path,
            args.desired_volume,
            desired_spacing=args.desired_spacing,
            grids=dict(args.grids) if args.grids else None,
            reference=args.reference,
            cores=args.cores,
            **{key: getattr(args, key) for key in API_OPTIONS},
            progress=args.progress,
        ),
        f"{{}} volumes resampled into {args.output_path}",
    )


if __name__ == "__main__":
    sys.exit(main())
