"""Configuration problems stop the run before any job, with one sentence naming the problem."""

import json
from pathlib import Path

import pytest
import yaml

from support import REPO, run_snakemake
from nii_resample.errors import ConfigError, InputFolderError
from nii_resample.settings import DEFAULTS, discover_volumes, normalise_config, parse_desired_volume

SCHEMA_PROPERTIES = json.loads((REPO / "src/nii_resample/config.schema.json").read_text())["properties"]


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


# One path for every interface: values are coerced to the schema's types, then the whole
# configuration is validated once against the schema (nii_resample.settings).

BASE = {"nii_folder": "in", "output_path": "out", "desired_volume": [4, 4, 4]}


def _as_text(value) -> str:
    """A value as `--config key=value` writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_key_given_as_text_becomes_its_schema_type(key):
    """Generic, from the schema's types: no key needs code of its own to take text."""
    value = {"crop_or_pad": [8, 8, 8], "label_maps": ["*_seg.nii.gz", "*_mask.nii.gz"],
             "images": ["*_T1w.nii.gz"], "pad_value": -1024.0, "pad_to_multiple": 16,
             "cases": ["img/{case}.nii.gz", "seg/{case}.nii.gz"]}.get(key, DEFAULTS[key])
    spacing = {"desired_volume": None, "desired_spacing": [1, 1, 1]}  # crop/pad need a spacing
    typed = normalise_config({**BASE, **spacing, key: value})[key]
    assert normalise_config({**BASE, **spacing, key: _as_text(value)})[key] == typed
    assert type(typed) is type(value) or (value is None and typed is None)


def test_coercion_walks_refs_one_of_and_items():
    from nii_resample.settings import coerce

    assert coerce("4x5x6", {"$ref": "#/properties/desired_volume"}) == [4, 5, 6]
    assert coerce((1, 2, 3.0), {"$ref": "#/properties/desired_volume"}) == [1, 2, 3]
    spacing = {"$ref": "#/properties/desired_spacing"}  # oneOf: numbers or a rule
    assert coerce("1,1,2.5", spacing) == [1.0, 1.0, 2.5] and coerce(" nnunet ", spacing) == "nnunet"
    assert coerce(False, {"$ref": "#/properties/cases"}) == "off"  # YAML 1.1's unquoted off
    grids = coerce({"g": {"desired_spacing": "1,1,1", "pad_to_multiple": "16"}},
                   {"$ref": "#/properties/grids"})
    assert grids == {"g": {"desired_spacing": [1.0, 1.0, 1.0], "pad_to_multiple": 16}}
    assert coerce("sixty", {"type": "integer"}) == "sixty"  # left for validation to refuse


def test_the_configuration_is_validated_once(monkeypatch):
    from nii_resample import settings

    validator, calls = settings._validator(), []

    class Counting:
        def __getattr__(self, name):
            return getattr(validator, name)

        def iter_errors(self, instance):
            calls.append(instance)
            return validator.iter_errors(instance)

    monkeypatch.setattr(settings, "_validator", lambda: Counting())
    normalise_config({**BASE, "engine": "itk", "desired_spacing": "1,1,1", "qc": "true"})
    assert len(calls) == 1
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert "snakemake.utils import validate" not in common  # not a second time in the workflow


@pytest.mark.parametrize("override, message", [
    ({"pad_to_multiple": 0}, "pad_to_multiple must be between 1 and 4096, got 0"),
    ({"threads_per_job": "0"}, "threads_per_job must be at least 1, got 0"),
    ({"compression_level": "fast"}, "compression_level must be a whole number, got 'fast'"),
    ({"pad_value": ".inf"}, "pad_value must be a number or null, got .inf"),
    ({"pad_value": float("inf")}, "pad_value must be a number or null, got inf"),
    ({"desired_spacing": [float("nan"), 1, 1]}, "desired_spacing must be three positive numbers"),
    ({"desired_volume": "8x8"}, "desired_volume must be three positive integers [X, Y, Z] "
                                "(e.g. [128, 128, 64]), got 8x8"),
    ({"crop_or_pad": "x"}, "crop_or_pad must be three positive integers"),
    ({"reference": 3}, "reference must be the path of a NIfTI volume, got '3'"),
    ({"cases": "sometimes"}, "cases must be auto, off or a list of two or more file patterns "
                             "(the case's image first), each with one {case}, got ['sometimes']"),
    ({"cases": ["a/{case}{case}", "b/{case}"]}, "cases must be auto, off or a list of two"),
    ({"cases": True}, "cases must be auto, off or a list of patterns with {case}, got true"),
    ({"orientation": "ras4"}, "orientation must be keep or three letters, one of each pair "
                              "L/R, A/P and S/I (e.g. RAS, LPS, LAS), got 'ras4'"),
    ({"grids": {"g": {"desired_spacing": [1, 1, 1], "pad_to_multiple": 5000}}},
     "grid 'g': pad_to_multiple must be between 1 and 4096, got 5000"),
    ({"grids": {"g": {"desired_spacing": [1, 1, 1], "pad_value": "air"}}},
     "grid 'g': pad_value must be a number, got air"),
    ({"grids": {"g": {"pad_value": 3}}}, "grid 'g' must set exactly one of desired_volume, "
                                         "desired_spacing and reference, got {'pad_value': 3}"),
    ({"grids": 3}, "grids must map grid names to {desired_volume: [X, Y, Z]} or "
                   "{desired_spacing: [sx, sy, sz]}, got 3"),
    ({"datasets": 3}, "datasets must map dataset names to their keys"),
    ({"datasets": {"d": 3}}, "dataset 'd': it must set nii_folder, output_path and its keys"),
    ({"datasets": {"d": {"nii_folder": "x", "output_path": "y", "engine": "gpu"}}},
     "dataset 'd': engine must be one of fast, itk, got 'gpu'"),
    ({"engine": "gpu", "bogus": 1}, "unknown configuration key(s) bogus; known keys: "),
])
def test_each_refusal_is_one_sentence_naming_the_key(override, message):
    with pytest.raises(ConfigError) as refused:
        normalise_config({**BASE, **override})
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_a_grid_takes_the_same_ranges_as_the_top_level_key():
    grid = SCHEMA_PROPERTIES["grids"]["additionalProperties"]["properties"]
    for key in ("desired_volume", "pad_to_multiple"):
        assert {k: v for k, v in grid[key].items()} == {
            k: v for k, v in SCHEMA_PROPERTIES[key].items()
            if k not in ("title", "description", "default", "x-doc-type")}


def test_command_line_words_get_the_configs_sentence(capsys):
    from nii_resample.__main__ import build_parser

    parser = build_parser()
    assert parser.parse_args(["i", "o", "4", "4", "4", "--engine", "itk"]).engine == "itk"
    with pytest.raises(SystemExit):
        parser.parse_args(["i", "o", "4", "4", "4", "--engine", "gpu"])
    assert "argument --engine: engine must be one of fast, itk, got 'gpu'" in capsys.readouterr().err
    # Other flags hand their text to the API, which coerces and checks it with the config.
    args = parser.parse_args(["i", "o", "4", "4", "4", "--compression-level", "7",
                              "--pad-value", "-1024"])
    checked = normalise_config({**BASE, "compression_level": args.compression_level,
                                "pad_value": args.pad_value})
    assert (checked["compression_level"], checked["pad_value"]) == (7, -1024.0)
