"""Command line: `python -m nii_resample IN OUT X Y Z [options]`, the workflow without YAML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .api import ResamplingFailed, resampling_dataset
from .command import add_desired_volume, positive_int
from .settings import DEFAULTS, ENGINES, INTERPOLATIONS, LABEL_INTERPOLATIONS, SAVING_MODES


def _program_name() -> str:
    """`nii-resample` when run as the installed command, else `python -m nii_resample`."""
    name = Path(sys.argv[0]).name
    return "python -m nii_resample" if name in ("__main__.py", "-c", "") else name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_program_name(),
        description="Resample every .nii.gz in a folder to X x Y x Z voxels, keeping the field "
        "of view. Options map onto the keys of config/config.yaml.",
    )
    parser.add_argument("nii_folder", help="folder of input .nii.gz volumes")
    parser.add_argument("output_path", help="folder for the results (created)")
    add_desired_volume(parser, "target voxels")
    parser.add_argument("--saving-mode", choices=SAVING_MODES, default=DEFAULTS["saving_mode"])
    parser.add_argument("--cores", type=positive_int, default=None,
                        help="parallel volumes (default: all)")
    parser.add_argument("--debug", action="store_true", help="print a summary at the end")
    parser.add_argument("--engine", choices=ENGINES, default=DEFAULTS["engine"])
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default=DEFAULTS["interpolation"])
    parser.add_argument("--no-antialias", dest="antialias", action="store_false",
                        help="no Gaussian prefilter before downsampling")
    parser.add_argument("--label-maps", nargs="*", default=DEFAULTS["label_maps"], metavar="GLOB",
                        help='file-name patterns of label maps, e.g. "*_seg.nii.gz"')
    parser.add_argument("--images", nargs="*", default=DEFAULTS["images"], metavar="GLOB",
                        help='file-name patterns of volumes always treated as images')
    parser.add_argument("--no-detect-label-maps", dest="detect_label_maps", action="store_false",
                        help="label maps only by --label-maps, not by header or content")
    parser.add_argument("--label-interpolation", choices=LABEL_INTERPOLATIONS,
                        default=DEFAULTS["label_interpolation"])
    parser.add_argument("--compression-level", type=int, default=DEFAULTS["compression_level"])
    parser.add_argument("--threads-per-job", type=int, default=DEFAULTS["threads_per_job"])
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                        default=None, help="no progress bar (it only shows on a terminal anyway)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = resampling_dataset(
            args.nii_folder,
            args.output_path,
            args.desired_volume,
            args.saving_mode,
            args.debug,
            cores=args.cores,
            engine=args.engine,
            interpolation=args.interpolation,
            antialias=args.antialias,
            label_maps=args.label_maps,
            images=args.images,
            detect_label_maps=args.detect_label_maps,
            label_interpolation=args.label_interpolation,
            compression_level=args.compression_level,
            threads_per_job=args.threads_per_job,
            progress=args.progress,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ResamplingFailed as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    print(f"{len(written)} volumes resampled into {args.output_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
