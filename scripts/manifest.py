"""Join the one-row records of the resample jobs into the run's manifest (a TSV, one row per
volume), rebuilding any record deleted by hand. The end-of-run handler of a run with
failures (workflow/rules/manifest.smk, onerror) calls the same records.build_manifest."""

import sys
from pathlib import Path

if "snakemake" in globals():
    # Snakemake appends this script's folder to sys.path: put it first, so that the job uses
    # this workflow's own nii_resample, never another version installed in the environment.
    sys.path.insert(0, snakemake.scriptdir)

from nii_resample.errors import RecordNotRebuilt
from nii_resample.records import build_manifest, rebuilt_line


def say(line: str, log) -> None:
    """One line on the console (Snakemake shows the job's stderr) and in the log."""
    sys.stderr.write(f"\n{line}\n")
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        print(line, file=handle)


def main(jobs, manifest_path, log, fingerprints=None, fingerprint_path=None) -> int:
    if fingerprint_path:
        from nii_resample.files import atomic_write_bytes
        from nii_resample.fingerprint import dataset_json

        atomic_write_bytes(fingerprint_path, dataset_json(fingerprints))
    try:
        rebuilt = build_manifest(jobs, manifest_path)
    except RecordNotRebuilt as problem:
        # Snakemake puts the previous manifest.tsv back: it is an update() output.
        say(f"ERROR {problem}", log)
        return 1
    if rebuilt:
        say(rebuilt_line(rebuilt), log)
    return 0


if "snakemake" in globals():  # run by the workflow's `script:` directive
    fingerprint = snakemake.output.get("fingerprint")
    if main(snakemake.params.jobs, snakemake.output.manifest, snakemake.log[0],
            snakemake.params.fingerprints, fingerprint):
        sys.exit(1)
