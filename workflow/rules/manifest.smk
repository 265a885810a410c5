"""Aggregation: one manifest row per volume, and the end-of-run reports."""

from nii_resample.records import (
    collect_failures,
    manifest_after_failures,
    write_failures_report,
)
from nii_resample.report import print_failures, print_summary

MANIFEST = f"{OUTPUT_PATH}/manifest.tsv"


rule manifest:
    input:
        volumes=expand(resampled_volume_pattern(), prefix=VOLUMES),
    output:
        # update(): Snakemake keeps the previous manifest while the job runs and puts it
        # back if the job fails (a record that cannot be rebuilt), instead of deleting it.
        manifest=update(MANIFEST),
    log:
        f"{OUTPUT_PATH}/logs/manifest.log",
    # runs in the snakemake process itself (cheap), never submitted to a cluster
    localrule: True
    conda:
        "../envs/resample.yaml"
    params:
        jobs=expected_jobs(),
    script:
        "../../scripts/manifest.py"


onsuccess:
    release_claims()
    write_failures_report(f"{OUTPUT_PATH}/failures.tsv", [])
    if config["debug"]:
        print_summary(config, MANIFEST, len(VOLUMES))


onerror:
    release_claims()
    failures = collect_failures(expected_jobs())
    write_failures_report(f"{OUTPUT_PATH}/failures.tsv", failures)
    # Rule `manifest` never runs when a volume failed (--keep-going): build its manifest
    # here, failed volumes as failed rows, then mark it out of date (mtime 1970) so that the
    # next run rebuilds it through the rule, whatever the user fixed.
    written = manifest_after_failures(MANIFEST, expected_jobs(), failures)
    print_failures(
        failures,
        f"{OUTPUT_PATH}/failures.tsv",
        len(VOLUMES),
        MANIFEST if written else None,
    )
