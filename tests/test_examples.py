"""Every ready config of config/examples/ (one per example of resampling_dataset's own
documentation) runs on the bundled demo data, at its documented sizes."""

import csv
from pathlib import Path

import nibabel as nib
import pytest
import yaml

from support import REPO, run_snakemake
from nii_resample.plan import plan_run
from nii_resample.settings import normalise_config

EXAMPLES = sorted((REPO / "config" / "examples").glob("*.yaml"))
DOCUMENTED = ("basic", "folder_mode", "small_size", "high_resolution", "anisotropic",
              "multi_resolution", "several_datasets")
# Beyond the original function: network-ready preparation (README, "Fixed shapes").
BEYOND = ("nnunet_preparation",)


def test_every_documented_example_has_a_config():
    assert sorted(path.stem for path in EXAMPLES) == sorted(DOCUMENTED + BEYOND)


def _relocated(config: dict, out: Path) -> dict:
    """The config with its folders made absolute: inputs in this repository, outputs in `out`
    (the files are written for a run from the repository root)."""
    def move(entry):
        entry["nii_folder"] = str(REPO / entry["nii_folder"])
        entry["output_path"] = str(out / entry["output_path"])
    for entry in config.get("datasets", {}).values():
        move(entry)
    if "nii_folder" in config:
        move(config)
    return config


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_config_runs_on_the_demo_data(tmp_path, path):
    config = _relocated(yaml.safe_load(path.read_text()), tmp_path)
    run_snakemake(tmp_path / "work", config)
    datasets = list(config.get("datasets", {}).values()) or [config]
    for dataset in datasets:
        dataset = {"saving_mode": config.get("saving_mode", "case"), **dataset}
        with open(Path(dataset["output_path"]) / "manifest.tsv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        [planned] = plan_run(normalise_config(dataset))  # spacing rules resolved
        grids = planned["grids"]
        assert len(rows) == 4 * len(grids)  # the four demo volumes on every grid
        assert {row["status"] for row in rows} == {"ok"}
        for row in rows:
            grid = next(g for g in grids if g["label"] == row["grid"])
            assert Path(grid["root"]) in Path(row["output_path"]).parents
            shape = grid.get("desired_volume") or grid.get("crop_or_pad")
            if grid.get("pad_to_multiple", 1) > 1:
                shape = [-(-n // grid["pad_to_multiple"]) * grid["pad_to_multiple"] for n in shape]
            assert nib.load(row["output_path"]).shape[:3] == tuple(shape)
