"""Quality control: before/after pictures of every volume, a dataset overview, and the
manifest as a table, all in `snakemake --report report.html`. The dataset-wide ones are
cheap and run on this machine (local rules); the per-volume pictures read whole volumes, so on
a cluster they are submitted like the resample jobs, in their group (CLUSTER_GROUP,
resample.smk). Every path is nii_resample.plan's (the output layout).
"""

from nii_resample.qc_figures import report_labels

for TARGET in TARGETS:

    rule:
        name:
            TARGET.rule("qc_figure")
        input:
            volume=TARGET.dataset.input_volume_pattern(),
            resampled=TARGET.output_pattern(),
        output:
            png=report(
                TARGET.qc_png(TARGET.key),
                caption="../report/qc_figure.rst",
                category="Volumes",
                labels=lambda wildcards, target=TARGET: report_labels(
                    volume_key(wildcards), target.record(volume_key(wildcards))
                ),
            ),
        log:
            TARGET.log("qc_figure", TARGET.key),
        group:
            CLUSTER_GROUP
        conda:
            "../envs/resample.yaml"
        params:
            record=TARGET.record(TARGET.key),
        script:
            "../../scripts/qc.py"


for DATASET in DATASETS:

    rule:
        name:
            DATASET.rule("qc_overview")
        input:
            manifest=DATASET.manifest,
        output:
            png=report(
                DATASET.qc_pictures["overview"],
                caption="../report/qc_overview.rst",
                category="Dataset",
                labels={"figure": "overview"},
            ),
        log:
            f"{DATASET.out}/logs/qc_overview.log",
        # cheap: runs on this machine, in a subprocess of Snakemake (script:), never
        # submitted to a cluster
        localrule: True
        conda:
            "../envs/resample.yaml"
        script:
            "../../scripts/qc.py"

    rule:
        name:
            DATASET.rule("qc_manifest_table")
        input:
            manifest=DATASET.manifest,
        output:
            html=report(
                DATASET.qc_pictures["table"],
                caption="../report/manifest_table.rst",
                category="Dataset",
                labels={"figure": "manifest"},
            ),
        log:
            f"{DATASET.out}/logs/qc_manifest_table.log",
        # cheap: runs on this machine, in a subprocess of Snakemake (script:), never
        # submitted to a cluster
        localrule: True
        conda:
            "../envs/resample.yaml"
        script:
            "../../scripts/qc.py"
