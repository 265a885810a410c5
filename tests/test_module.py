"""Used as a module of another workflow (`module` + `use rule * from ... as ...`, what
`snakedeploy deploy-workflow` writes), run from that workflow's folder with the config given
in the module block: every job still finds this workflow's scripts."""

import os
import subprocess
import sys

import nibabel as nib
import yaml

from support import SNAKEFILE, affine_from, smooth_volume, write_nifti

OUTER = """\
configfile: "config/config.yaml"


module nii_resample:
    snakefile:
        {snakefile!r}
    config:
        config["nii_resample"]


use rule * from nii_resample as nii_resample_*


rule all:
    default_target: True
    input:
        rules.nii_resample_all.input,
"""


def test_runs_as_a_module_of_another_workflow(tmp_path):
    outer = tmp_path / "outer"
    (outer / "config").mkdir(parents=True)
    write_nifti(outer / "data" / "ct.nii.gz", smooth_volume((30, 26, 12)), affine_from((1, 1, 3)))
    (outer / "config" / "config.yaml").write_text(yaml.safe_dump({"nii_resample": {
        "nii_folder": "data", "output_path": "results/ct", "desired_volume": [12, 10, 8]}}))
    # relative, as snakedeploy writes it (lint refuses absolute paths)
    module_snakefile = os.path.relpath(SNAKEFILE, outer)
    (outer / "Snakefile").write_text(OUTER.format(snakefile=module_snakefile))
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=outer,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    image = nib.load(outer / "results" / "ct" / "ct" / "ct_resampled.nii.gz")
    assert image.shape == (12, 10, 8)
    assert (outer / "results" / "ct" / "manifest.tsv").exists()
    # Nothing of this workflow's was looked for in the outer workflow's folder.
    assert not (outer / "scripts").exists()
    lint = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=outer,
                          capture_output=True, text=True, timeout=600)
    assert lint.returncode == 0, lint.stdout + lint.stderr
