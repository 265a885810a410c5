"""Aggregation: one manifest per dataset (a row per volume and grid), and the end-of-run
reports."""

from nii_resample.stale_locks import release_claims
from nii_resample.records import (
    collect_failures,
    manifest_after_failures,
    write_failures_report,
)
from nii_resample.summary import print_failures, print_summary

for DATASET in DATASETS:

    rule:
        name:
            DATASET.rule("manifest")
        input:
            volumes=DATASET.outputs(),
        output:
            **(
                {"fingerprint": DATASET.fingerprint_file}
                if DATASET.fingerprints
                else {}
            ),
            # update(): Snakemake keeps the previous manifest while the job runs and puts
            # it back if the job fails (a record that cannot be rebuilt), instead of
            # deleting it.
            manifest=update(DATASET.manifest),
            # The spacing `desired_spacing: median|nnunet` chose, and what it saw.
        log:
            f"{DATASET.out}/logs/manifest.log",
        # cheap: runs on this machine, in a subprocess of Snakemake (script:), never
        # submitted to a cluster
        localrule: True
        conda:
            "../envs/resample.yaml"
        params:
            jobs=DATASET.expected_jobs(),
            fingerprints=DATASET.fingerprints,
        script:
            "../../scripts/manifest.py"


onsuccess:
    release_claims()
    for dataset in DATASETS:
        write_failures_report(f"{dataset.out}/failures.tsv", [])
        if dataset.config["debug"]:
            grids = [target.grid for target in dataset.targets]
            print_summary(
                dataset.config, dataset.manifest, len(dataset.volumes), grids
            )


onerror:
    release_claims()
    for dataset in DATASETS:
        jobs = dataset.expected_jobs()
        failures = collect_failures(jobs)
        write_failures_report(f"{dataset.out}/failures.tsv", failures)
        # Rule `manifest` never runs when a volume failed (--keep-going): build its
        # manifest here, failed volumes as failed rows, then mark it out of date (mtime
        # 1970) so that the next run rebuilds it through the rule, whatever was fixed.
        written = manifest_after_failures(dataset.manifest, jobs, failures)
        print_failures(
            failures,
            f"{dataset.out}/failures.tsv",
            len(dataset.volumes),
            dataset.manifest if written else None,
            n_grids=len(dataset.targets),
        )
