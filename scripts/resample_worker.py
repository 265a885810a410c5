"""The resident worker of a workflow run (nii_resample.resident), started by the first
resample job of the run on this node (scripts/resample_job.py):

    python scripts/resample_worker.py <socket path> <ready fd>
"""

import sys

from nii_resample.resident import serve

if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], int(sys.argv[2])))
