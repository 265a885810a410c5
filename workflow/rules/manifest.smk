"""Aggregation: one manifest row per volume, and the end-of-run reports."""

from nii_resample.rebuild import RecordNotRebuilt
from nii_resample.records import (
    build_manifest,
    collect_failures,
    mark_out_of_date,
    rebuilt_line,
    write_failures_report,
)
from nii_resample.report import print_failures, print_summary

MANIFEST = f"{OUTPUT_PATH}/manifest.tsv"


def manifest_jobs():
    """Per volume: its paths, record and job options (to rebuild a record deleted by hand)."""
    return [
        {
            **job,
            "record_path": record_path(prefix),
            "options": job_options(config, Path(job["input_path"]).name),
        }
        for prefix, job in zip(VOLUMES, expected_jobs())
    ]


localrules:
    manifest,


rule manifest:
    input:
        volumes=expand(resampled_volume_pattern(), prefix=VOLUMES),
    output:
        # update(): Snakemake keeps the previous manifest while the job runs and puts it
        # back if the job fails (a record that cannot be rebuilt), instead of deleting it.
        manifest=update(MANIFEST),
    log:
        f"{OUTPUT_PATH}/logs/manifest.log",
    conda:
        "../envs/resample.yaml"
    params:
        jobs=manifest_jobs(),
    script:
        "../../scripts/manifest.py"


def write_manifest_after_failures(failures):
    """With --keep-going, rule `manifest` never runs when a volume failed: build the same
    manifest here, failed volumes as failed rows. Either way the manifest is then marked out
    of date (mtime 1970), so the next run rebuilds it through the rule whatever the user
    fixed (a volume replaced, or deleted, or a record): no stale failed or missing row.
    Returns whether it wrote the manifest."""
    written = False
    if failures:
        try:
            rebuilt = build_manifest(manifest_jobs(), MANIFEST, failures)
            written = True
            if rebuilt:
                print(rebuilt_line(rebuilt), flush=True)
        except RecordNotRebuilt as problem:  # the previous manifest stays as it was
            print(f"ERROR {problem}", flush=True)
    mark_out_of_date(MANIFEST)
    return written


onsuccess:
    release_claims()
    write_failures_report(f"{OUTPUT_PATH}/failures.tsv", [])
    if config["debug"]:
        print_summary(config, MANIFEST, len(VOLUMES))


onerror:
    release_claims()
    failures = collect_failures(expected_jobs())
    write_failures_report(f"{OUTPUT_PATH}/failures.tsv", failures)
    written = write_manifest_after_failures(failures)
    print_failures(
        failures,
        f"{OUTPUT_PATH}/failures.tsv",
        len(VOLUMES),
        MANIFEST if written else None,
    )
