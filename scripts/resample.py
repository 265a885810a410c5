"""Resample one NIfTI volume: the workflow's per-volume job, and a command line for one file.

    python scripts/resample.py in.nii.gz out.nii.gz 128 128 64 [--engine itk] [--kind label_map] ...

The work is done by the pure function `resample_volume` (nii_resample.volume). The rule runs
this file as a shell command, adding --log/--record/--failure-record (nii_resample.command,
nii_resample.jobs), not through `script:`, for which Snakemake reads the script's source for
every job while planning: 2 M instructions per job (docs/benchmarks.md).
"""

import sys

from nii_resample.errors import VolumeError
from nii_resample.command import build_parser, wants_voxel_size
from nii_resample.jobs import run_resample_job
from nii_resample.volume import resample_volume

__all__ = ["resample_volume", "main"]


def main(argv=None, run_by=None) -> int:
    """Run the command; `run_by`: the resident worker that runs this job, if any (its log
    says so, nii_resample.jobs)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(__doc__.splitlines()[0], wants_voxel_size(argv))
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


if __name__ == "__main__":
    sys.exit(main())
