"""One job per input volume and grid: resample it onto the target grid. With several grids,
each .nii.gz is first decoded once (decode_volume) for all of them (README, "Several grids").
"""

# The job is a small client of the run's resident worker (scripts/resample_job.py, -S: no
# site-packages to import), which falls back to running `python -m nii_resample volume`
# in-process.
# On a cluster, a volume's jobs (its decoding, its grids' resamples, its QC pictures) form
# one group, and `group-components: resample=N` (profiles/slurm) bundles N volumes
# per cluster job, whatever the rules are called (datasets and grids name them). Ignored in
# local runs.
CLUSTER_GROUP = "resample"
RESAMPLE_SHELL = (
    "python3 -S {params.script:q} {input.volume:q} {output.volume:q} {params.options}"
    " --threads {threads} --log {log:q} --record {params.record:q}"
    " --failure-record {params.failure_record:q}"
)
DECODE_SCRIPT = str(WORKFLOW_ROOT / "scripts" / "decode.py")


for DATASET in DATASETS:
    if DATASET.decodes:

        # Low priority: the scheduler resamples a decoded volume on every grid (higher
        # priority) before it decodes another, so few decoded copies exist at a time.
        rule:
            name:
                DATASET.rule("decode_volume")
            input:
                volume=DATASET.decode_input(),
            output:
                volume=DATASET.decoded(DATASET.targets[0].key),
            log:
                DATASET.decode_log(DATASET.targets[0].key),
            priority: 0
            group:
                CLUSTER_GROUP
            conda:
                "../envs/resample.yaml"
            params:
                script=DECODE_SCRIPT,
                failures=DATASET.decode_failures,
            shell:
                "python3 {params.script:q} {input.volume:q} {output.volume:q}"
                " {params.failures} 2> {log:q}"

        # Highest priority: as soon as every grid of a volume is done, its decoded copy is
        # emptied (disk), but stays as an up-to-date, ancient() input (common.smk).
        rule:
            name:
                DATASET.rule("release_decoded")
            input:
                DATASET.grid_outputs,
            output:
                touch(DATASET.released(DATASET.targets[0].key)),
            priority: 20
            localrule: True
            params:
                decoded=DATASET.decoded(DATASET.targets[0].key),
            shell:
                "if [ -s {params.decoded:q} ]; then : > {params.decoded:q}; fi"


for TARGET in TARGETS:

    rule:
        name:
            TARGET.rule("resample_volume")
        input:
            volume=TARGET.input_volume(),
            source=TARGET.source_volume(),
            grid=TARGET.grid_inputs(),
        output:
            volume=TARGET.output_pattern(),
        log:
            TARGET.log("resample_volume", TARGET.key),
        benchmark:
            f"{TARGET.root}/benchmarks/resample_volume/{TARGET.key}.tsv"
        priority: 10 if TARGET.dataset.decodes else 0
        group:
            CLUSTER_GROUP
        conda:
            "../envs/resample.yaml"
        threads: threads_per_volume(TARGET.config["threads_per_job"])
        resources:
            mem_mb=TARGET.estimate_mem_mb,
        params:
            script=RESAMPLE_SCRIPT,
            options=TARGET.arguments,
            # Not outputs: a second output cost Snakemake 40 % more planning per job. The
            # record is written just before the volume appears (nii_resample.jobs), and
            # read by the manifest; the failure record is the one-line reason of a failure.
            record=TARGET.record(TARGET.key),
            failure_record=TARGET.failure_record(TARGET.key),
        # A shell command rather than `script:`: same script, but Snakemake plans 10,000
        # jobs ~4 s faster without reading the script's source for each of them
        # (docs/benchmarks.md).
        shell:
            RESAMPLE_SHELL
