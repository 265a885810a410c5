"""Resample one NIfTI volume: the workflow's per-volume job, and a command line for one file.

The work is done by the pure function `resample_volume` (nii_resample.volume); this file only
connects it to Snakemake (the shim at the bottom) and to the shell (`main`).
"""

import argparse
import sys

from nii_resample.errors import VolumeError
from nii_resample.jobs import run_resample_job
from nii_resample.settings import ENGINES, INTERPOLATIONS, LABEL_INTERPOLATIONS
from nii_resample.volume import resample_volume

__all__ = ["resample_volume", "main"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("in_path", help="input .nii.gz volume")
    parser.add_argument("out_path", help="output .nii.gz path (folders are created)")
    parser.add_argument("size", nargs=3, type=int, metavar=("X", "Y", "Z"), help="voxels per axis")
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
    args = parser.parse_args(argv)
    if min(args.size) < 1:
        parser.error("X, Y and Z must be positive integers")
    try:
        record = resample_volume(
            args.in_path,
            args.out_path,
            args.size,
            engine=args.engine,
            interpolation=args.interpolation,
            antialias=args.antialias,
            label_map=args.label_map,
            label_interpolation=args.label_interpolation,
            compression_level=args.compression_level,
            threads=args.threads,
        )
    except VolumeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{record['output_path']}: {record['original_size']} -> {record['new_size']} voxels")
    return 0


if "snakemake" in globals():  # run by the workflow's `script:` directive
    sys.exit(
        run_resample_job(
            snakemake.input.volume,
            snakemake.output.volume,
            snakemake.output.record,
            snakemake.params.failure_record,
            snakemake.log[0],
            threads=snakemake.threads,
            **snakemake.params.options,
        )
    )
elif __name__ == "__main__":
    sys.exit(main())
