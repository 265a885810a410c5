"""Decode one .nii.gz into a plain .nii (byte-exact gunzip), once for all of a volume's grids.

    python scripts/decode.py in.nii.gz out.nii [--failure-record RECORD OUTPUT ...]

With several grids the workflow decodes each input once (rule decode_volume) and every
grid's resample job reads the decoded copy (emptied, not deleted, once every grid is done:
rule release_decoded): decoding the gzip is a large
part of a job (README, "Several grids"). On bad gzip data the one-line reason goes to each
grid's failure record, as the resample job would have written it.
"""

import argparse
import os
import sys
from pathlib import Path

# This workflow's own package (src/nii_resample) first: never another version installed in
# the environment.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from nii_resample.errors import VolumeError, one_line
from nii_resample.files import atomic_write
from nii_resample.nifti import decompress
from nii_resample.records import write_failure


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("in_path")
    parser.add_argument("out_path")
    parser.add_argument("--failure-record", nargs=2, action="append", default=[],
                        metavar=("RECORD", "OUTPUT"), help="a grid's failure record, its output")
    args = parser.parse_args(argv)
    in_path = Path(args.in_path)
    try:
        raw = decompress(in_path, in_path.read_bytes())
    except (VolumeError, OSError) as error:
        reason = one_line(error)
        for record, output in args.failure_record:
            write_failure(record, {"input_path": str(in_path), "output_path": output,
                                   "reason": reason})
        sys.stderr.write(f"\nERROR {reason}\n")
        return 1
    atomic_write(args.out_path, lambda stream: stream.write(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
