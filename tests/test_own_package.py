"""Every job uses this workflow's own nii_resample, even when another version is importable
first (an older install in the environment, a PYTHONPATH): every script of scripts/ puts
this workflow's src/ first on the path (the `script:` jobs, manifest and QC, which Snakemake
runs from a copy, find it from snakemake.scriptdir), and the resample job starts the worker
and its in-process fallback with src/ first on PYTHONPATH."""

import os

from support import run_snakemake


def test_jobs_ignore_another_nii_resample_on_the_path(tmp_path, make_dataset):
    decoy = tmp_path / "decoy" / "nii_resample"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text('raise ImportError("the decoy nii_resample was imported")\n')
    folder, _ = make_dataset(names=("a", "b"))
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [8, 8, 8], "qc": True}
    env = {**os.environ, "PYTHONPATH": str(decoy.parent)}
    result = run_snakemake(tmp_path / "work", config, env=env)
    assert "decoy" not in result.output
    assert (tmp_path / "out" / "manifest.tsv").exists()
    assert (tmp_path / "out" / "qc" / "a.png").exists()
