"""Aggregation: one manifest row per volume, and the end-of-run reports."""

from nii_resample.records import collect_failures, write_failures_report
from nii_resample.report import print_failures, print_summary


localrules:
    manifest,


rule manifest:
    input:
        volumes=expand(resampled_volume_pattern(), prefix=VOLUMES),
    output:
        manifest=f"{OUTPUT_PATH}/manifest.tsv",
    log:
        f"{OUTPUT_PATH}/logs/manifest.log",
    conda:
        "../envs/resample.yaml"
    params:
        records=expand(record_path("{prefix}"), prefix=VOLUMES),
    script:
        "../../scripts/manifest.py"


onsuccess:
    release_claims()
    write_failures_report(f"{OUTPUT_PATH}/failures.tsv", [])
    if config["debug"]:
        print_summary(config, f"{OUTPUT_PATH}/manifest.tsv", len(VOLUMES))


onerror:
    release_claims()
    failures = collect_failures(expected_jobs())
    write_failures_report(f"{OUTPUT_PATH}/failures.tsv", failures)
    print_failures(failures, f"{OUTPUT_PATH}/failures.tsv", len(VOLUMES))
