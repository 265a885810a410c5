"""Why the SLURM tests skip: the reason names only the modules the interpreter lacks."""

import sys

import pytest

from support import REPO

sys.path.insert(0, str(REPO / "tests" / "slurm"))

from cluster import python_with  # noqa: E402

MODULES = ("snakemake", "snakemake_executor_plugin_slurm", "nibabel", "SimpleITK", "nii_resample")


def _skip_reason(monkeypatch, python):
    monkeypatch.setenv("SNAKEMAKE_SLURM_PYTHON", python)
    with pytest.raises(pytest.skip.Exception) as skipped:
        python_with(*MODULES)
    return str(skipped.value)


def test_skip_names_only_the_missing_plugin(monkeypatch):
    # The project's own venv has everything but the SLURM plugin (a separate install).
    pytest.importorskip("nibabel")
    if _has_plugin():
        pytest.skip("this interpreter has the SLURM plugin: nothing is missing")
    reason = _skip_reason(monkeypatch, sys.executable)
    assert reason.startswith(f"{sys.executable} lacks snakemake_executor_plugin_slurm (")
    for present in ("snakemake,", "nibabel", "SimpleITK", "nii_resample"):
        assert present not in reason, reason
    assert "No module named 'snakemake_executor_plugin_slurm'" in reason
    assert "SNAKEMAKE_SLURM_PYTHON" in reason


def test_skip_names_every_module_of_an_interpreter_that_does_not_run(monkeypatch, tmp_path):
    reason = _skip_reason(monkeypatch, str(tmp_path / "no-python"))
    assert f"lacks {', '.join(MODULES)} (" in reason and "does not run" in reason


def _has_plugin():
    import importlib.util

    return importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None
