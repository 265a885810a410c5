"""Every Python version the README names is exercised: import, `--help` and a small workflow
run on each interpreter .ci/run builds (NII_RESAMPLE_PYTHONS), and the README and .ci/run
name the same versions."""

import os
import re
import subprocess

import nibabel as nib
import numpy as np
import pytest

from support import REPO, SNAKEFILE, affine_from, smooth_volume, write_config, write_nifti

README = (REPO / "README.md").read_text()
CI_SCRIPT = (REPO / ".ci" / "run").read_text()
VARIABLE = "NII_RESAMPLE_PYTHONS"


def readme_versions() -> list[str]:
    sentence = re.search(r"Requires Python ((?:3\.\d+(?:, | or ))*3\.\d+)\b", README)
    assert sentence, "README.md: no 'Requires Python 3.x, 3.y or 3.z' sentence"
    return re.findall(r"3\.\d+", sentence.group(1))


def ci_versions() -> list[str]:
    line = re.search(r'^PYTHON_VERSIONS="([^"]*)"', CI_SCRIPT, re.M)
    assert line, ".ci/run: no PYTHON_VERSIONS=\"...\" line"
    return line.group(1).split()


def test_readme_and_ci_name_the_same_versions():
    assert readme_versions() == ci_versions()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'requires-python = ">={readme_versions()[0]}"' in pyproject


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"),
                   "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=environment, **kwargs)


def _interpreter(version: str) -> str:
    """The interpreter of `version` among NII_RESAMPLE_PYTHONS; skipped without the variable,
    except on CI (CI=true), where a missing variable or version fails."""
    value = os.environ.get(VARIABLE, "").split()
    if not value:
        message = (f"{VARIABLE} is not set: it names one interpreter per Python version of the "
                   "README (.ci/run builds them and sets it)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; on CI this must not be skipped")
        pytest.skip(message)
    for python in value:
        found = _run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        assert found.returncode == 0, f"{python}: {found.stderr}"
        if found.stdout.strip() == version:
            return python
    pytest.fail(f"{VARIABLE}={' '.join(value)} has no Python {version} interpreter")


@pytest.mark.parametrize("version", readme_versions())
def test_import_help_and_a_workflow_run(tmp_path, version):
    python = _interpreter(version)
    imported = _run([python, "-c", "import nii_resample.api, nii_resample.volume, snakemake; "
                     "print(nii_resample.api.__file__)"])
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == str(REPO / "src" / "nii_resample" / "api.py")

    helped = _run([python, "-m", "nii_resample", "--help"])
    assert helped.returncode == 0, helped.stderr
    assert "nii_folder output_path X Y Z" in helped.stdout

    for index, name in enumerate(("ct", "mri")):
        data = smooth_volume((20, 18, 12), (np.int16, np.float32)[index], seed=index)
        write_nifti(tmp_path / "in" / f"{name}.nii.gz", data, affine_from((0.9, 1.1, 2.5)))
    config = write_config(tmp_path, nii_folder="in", output_path="out",
                          desired_volume=[8, 9, 10], saving_mode="folder")
    ran = _run([python, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
                str(tmp_path), "--cores", "2", "--configfile", str(config)], cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    for name in ("ct", "mri"):
        image = nib.load(tmp_path / "out" / f"{name}_resampled.nii.gz")
        assert image.shape == (8, 9, 10)
        assert np.allclose(image.header.get_zooms(), (0.9 * 20 / 8, 1.1 * 18 / 9, 2.5 * 12 / 10))
    assert (tmp_path / "out" / "manifest.tsv").read_text().count("\tok\t") == 2
