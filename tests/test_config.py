"""Configuration problems stop the run before any job, with one sentence naming the problem."""

import json
from pathlib import Path

import pytest
import yaml

from support import REPO, run_snakemake
from nii_resample.errors import ConfigError, InputFolderError
from nii_resample.settings import DEFAULTS, discover_volumes, normalise_config, parse_desired_volume


@pytest.mark.parametrize(
    "value, expected",
    [
        ([128, 128, 64], [128, 128, 64]),
        (["128", "128", "64"], [128, 128, 64]),
        ("[128,128,64]", [128, 128, 64]),
        ("128, 128, 64", [128, 128, 64]),
        ("128x128x64", [128, 128, 64]),
        ((1, 2, 3.0), [1, 2, 3]),
    ],
)
def test_desired_volume_is_coerced(value, expected):
    assert parse_desired_volume(value) == expected


@pytest.mark.parametrize(
    "value",
    [[128, 128], [1, 2, 3, 4], [0, 1, 1], [-1, 2, 3], [1.5, 2, 3], ["a", "b", "c"], "big", 64, None,
     [True, 2, 3]],
)
def test_bad_desired_volume_is_rejected(value):
    with pytest.raises(ConfigError, match="desired_volume must be three positive integers"):
        parse_desired_volume(value)


def test_schema_defaults_match_the_code():
    schema = json.loads((REPO / "src/nii_resample/config.schema.json").read_text())
    schema_defaults = {
        key: spec["default"] for key, spec in schema["properties"].items() if "default" in spec
    }
    assert schema_defaults == DEFAULTS
    shipped = yaml.safe_load((REPO / "config/config.yaml").read_text())
    # desired_spacing, grids and datasets are shown commented out (they would win).
    commented = {"desired_spacing", "reference", "grids", "datasets"}
    assert set(shipped) == set(schema["properties"]) - commented
    shipped_text = (REPO / "config/config.yaml").read_text()
    assert all(f"# {key}:" in shipped_text for key in commented)
    documented = (REPO / "config/README.md").read_text()
    for key in schema["properties"]:
        assert f"`{key}`" in documented, f"{key} is not documented in config/README.md"


def test_discovery_skips_hidden_subfolders_and_outputs(tmp_path):
    for name in ["a.nii.gz", "with space.nii.gz", ".hidden.nii.gz", "a_resampled.nii.gz",
                 "notes.txt", "b.nii", ".nii", "c.nii.gz.bak"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.nii.gz").mkdir()
    (tmp_path / "sub.nii.gz" / "c.nii.gz").write_bytes(b"x")
    assert discover_volumes(tmp_path) == {
        "a": tmp_path / "a.nii.gz", "b": tmp_path / "b.nii", "with space": tmp_path / "with space.nii.gz"}


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(InputFolderError, match="does not exist"):
        discover_volumes(tmp_path / "nowhere")
    with pytest.raises(InputFolderError, match=r"contains no NIfTI volumes .*: it is empty"):
        discover_volumes(tmp_path)


def test_unknown_key_and_missing_key():
    with pytest.raises(ConfigError, match="unknown configuration key"):
        normalise_config({"nii_folder": "a", "output_path": "b", "desired_volume": [1, 1, 1],
                          "desired_volumes": [1, 1, 1]})
    with pytest.raises(ConfigError, match="does not set desired_volume"):
        normalise_config({"nii_folder": "a", "output_path": "b"})


def _assert_clean_refusal(result, message, output: Path):
    assert result.returncode != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not output.exists(), "nothing may be written when the configuration is refused"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"desired_volume": [64, 0, 64]}, "desired_volume must be three positive integers"),
        ({"desired_volume": [64, 64]}, "desired_volume must be three positive integers"),
        ({"desired_volume": "sixty-four"}, "desired_volume must be three positive integers"),
        ({"saving_mode": "patient"}, "saving_mode must be one of case, folder, got 'patient'"),
        ({"nii_folder": "/nonexistent/folder"}, "nii_folder '/nonexistent/folder' does not exist"),
        ({"engine": "gpu"}, "engine must be one of fast, itk"),
    ],
)
def test_workflow_refuses_bad_config(tmp_path, make_dataset, override, message):
    folder, _ = make_dataset()
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [8, 8, 8], **override}
    result = run_snakemake(tmp_path / "work", config, check=False)
    _assert_clean_refusal(result, message, tmp_path / "out")


def test_workflow_refuses_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    config = {"nii_folder": str(tmp_path / "empty"), "output_path": str(tmp_path / "out"),
              "desired_volume": [8, 8, 8]}
    result = run_snakemake(tmp_path / "work", config, check=False)
    _assert_clean_refusal(result, "contains no NIfTI volumes (*.nii.gz or *.nii): it is empty",
                          tmp_path / "out")


def test_folder_mode_refuses_to_write_into_the_inputs(tmp_path, make_dataset):
    folder, _ = make_dataset()
    config = {"nii_folder": str(folder), "output_path": str(folder) + "/.",
              "desired_volume": [8, 8, 8], "saving_mode": "folder"}
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert "would be mixed into nii_folder" in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["ct.nii.gz", "mri.nii.gz"]


def test_config_overrides_from_the_command_line(tmp_path, make_dataset):
    folder, _ = make_dataset()
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [8, 8, 8]}
    run_snakemake(tmp_path / "work", config, "--config", "saving_mode=folder",
                  "desired_volume=[6,7,5]")
    import nibabel as nib

    image = nib.load(tmp_path / "out" / "ct_resampled.nii.gz")
    assert image.shape == (6, 7, 5)


def test_label_detection_keys_from_command_line_strings():
    """`--config images=*_T1w.nii.gz,*_bold.nii.gz detect_label_maps=false` arrive as strings."""
    base = {"nii_folder": "in", "output_path": "out", "desired_volume": [4, 4, 4]}
    checked = normalise_config({**base, "images": "*_T1w.nii.gz,*_bold.nii.gz",
                                "detect_label_maps": "false"})
    assert checked["images"] == ["*_T1w.nii.gz", "*_bold.nii.gz"]
    assert checked["detect_label_maps"] is False
    assert normalise_config(base)["detect_label_maps"] is True
    with pytest.raises(ConfigError, match="detect_label_maps must be true or false, got 'maybe'"):
        normalise_config({**base, "detect_label_maps": "maybe"})
    with pytest.raises(ConfigError, match="images must be a list of file-name patterns"):
        normalise_config({**base, "images": [3]})
