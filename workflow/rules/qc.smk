"""Quality control: before/after pictures of every volume, a dataset overview, and the
manifest as a table, all in `snakemake --report report.html`. The dataset-wide ones are
cheap and run locally; the per-volume pictures read whole volumes, so on a cluster they are
submitted like the resample jobs (and can share their group: see workflow/profiles/slurm).
"""

from nii_resample.qc import outdated_report_inputs, report_labels


def creates_report():
    """Whether this invocation writes a report (--report): Snakemake sets no flag for it,
    but builds the DAG (and so calls final_targets) from its Workflow.create_report."""
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "create_report" and code.co_filename.endswith(
            f"snakemake{os.sep}workflow.py"
        ):
            return True
        frame = frame.f_back
    return False


def refuse_outdated_report():
    """A report must never show QC pictures older than the volumes they describe: Snakemake
    gathers whatever files exist. Called from final_targets, when the run mode is known.
    """
    if not (config["qc"] and creates_report()):
        return
    qc = f"{OUTPUT_PATH}/qc"
    volumes = [
        (str(path), str(resampled_path(OUTPUT_PATH, prefix, config["saving_mode"])))
        + (f"{qc}/{prefix}.png",)
        for prefix, path in VOLUMES.items()
    ]
    dataset = [f"{qc}/dataset/overview.png", f"{qc}/dataset/manifest.html"]
    manifest = f"{OUTPUT_PATH}/manifest.tsv"
    problems = outdated_report_inputs(volumes, manifest, dataset, DESIRED_VOLUME)
    if problems:
        raise WorkflowError(
            f"No report: {'; '.join(problems)}; run `snakemake --cores N` with this report's "
            "--config/--configfile options (qc=true included) first, then the report."
        )


localrules:
    qc_overview,
    qc_manifest_table,


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
    conda:
        "../envs/resample.yaml"
    script:
        "../../scripts/qc.py"
