"""Resample every NIfTI volume of a folder onto one voxel grid, keeping the field of view.

Edit config/config.yaml (documented in config/README.md), then: snakemake --cores 2
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/runtime.smk"
include: "workflow/rules/resample.smk"
include: "workflow/rules/manifest.smk"
include: "workflow/rules/qc.smk"


rule all:
    default_target: True
    input:
        final_targets,
