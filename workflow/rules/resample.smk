"""One job per input volume: resample it onto the target grid."""


rule resample_volume:
    input:
        volume=get_input_volume,
    output:
        volume=resampled_volume_pattern(),
        record=record_path("{prefix}"),
    log:
        log_path("resample_volume", "{prefix}"),
    benchmark:
        f"{OUTPUT_PATH}/benchmarks/resample_volume/{{prefix}}.tsv"
    conda:
        "../envs/resample.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=estimate_mem_mb,
    params:
        options=get_resample_options,
        failure_record=lambda wildcards: failure_record_path(wildcards.prefix),
    script:
        "../../scripts/resample.py"
