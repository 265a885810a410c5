"""Quality control: before/after pictures of every volume, a dataset overview, and the
manifest as a table, all in `snakemake --report report.html`. The dataset-wide ones are
cheap and run locally; the per-volume pictures read whole volumes, so on a cluster they are
submitted like the resample jobs (and can share their group: see workflow/profiles/slurm).
"""

from nii_resample.qc import report_labels


rule qc_figure:
    input:
        volume=input_volume_pattern(),
        resampled=resampled_volume_pattern(),
    output:
        png=report(
            f"{OUTPUT_PATH}/qc/{{prefix}}.png",
            caption="../report/qc_figure.rst",
            category="Volumes",
            labels=lambda wildcards: report_labels(
                wildcards.prefix, record_path(wildcards.prefix)
            ),
        ),
    log:
        log_path("qc_figure", "{prefix}"),
    conda:
        "../envs/resample.yaml"
    params:
        record=record_path("{prefix}"),
    script:
        "../../scripts/qc.py"


rule qc_overview:
    input:
        manifest=f"{OUTPUT_PATH}/manifest.tsv",
    output:
        png=report(
            f"{OUTPUT_PATH}/qc/dataset/overview.png",
            caption="../report/qc_overview.rst",
            category="Dataset",
            labels={"figure": "overview"},
        ),
    log:
        f"{OUTPUT_PATH}/logs/qc_overview.log",
    # runs in the snakemake process itself (cheap), never submitted to a cluster
    localrule: True
    conda:
        "../envs/resample.yaml"
    script:
        "../../scripts/qc.py"


rule qc_manifest_table:
    input:
        manifest=f"{OUTPUT_PATH}/manifest.tsv",
    output:
        html=report(
            f"{OUTPUT_PATH}/qc/dataset/manifest.html",
            caption="../report/manifest_table.rst",
            category="Dataset",
            labels={"figure": "manifest"},
        ),
    log:
        f"{OUTPUT_PATH}/logs/qc_manifest_table.log",
    # runs in the snakemake process itself (cheap), never submitted to a cluster
    localrule: True
    conda:
        "../envs/resample.yaml"
    script:
        "../../scripts/qc.py"
