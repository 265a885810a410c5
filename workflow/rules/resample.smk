"""One job per input volume: resample it onto the target grid."""


rule resample_volume:
    input:
        volume=input_volume_pattern(),
    output:
        volume=resampled_volume_pattern(),
    log:
        log_path("resample_volume", "{prefix}"),
    benchmark:
        f"{OUTPUT_PATH}/benchmarks/resample_volume/{{prefix}}.tsv"
    conda:
        "../envs/resample.yaml"
    threads: threads_per_volume
    resources:
        mem_mb=estimate_mem_mb,
    params:
        script=RESAMPLE_SCRIPT,
        options=get_resample_arguments,
        # Not outputs: a second output cost Snakemake 40 % more planning per job. The
        # record is written just before the volume appears (nii_resample.jobs), and read by
        # the manifest; the failure record is the one-line reason of a failed volume.
        record=record_path("{prefix}"),
        failure_record=failure_record_path("{prefix}"),
    # A shell command rather than `script:`: same script, but Snakemake plans 10,000 jobs
    # ~4 s faster without reading the script's source for each of them (docs/benchmarks.md).
    shell:
        "python3 {params.script:q} {input.volume:q} {output.volume:q} {params.options}"
        " --threads {threads} --log {log:q} --record {params.record:q}"
        " --failure-record {params.failure_record:q}"
