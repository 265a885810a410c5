"""One definition of every option: src/nii_resample/config.schema.json. The defaults, the
command line's flags, the API's keywords and docstring, config/README.md's table and the
per-volume job's parser all follow it; an installed package finds it too."""

import csv
import inspect
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from support import REPO
from nii_resample import api, command
from nii_resample.__main__ import build_parser
from nii_resample.api import resampling_dataset

SCHEMA_FILE = REPO / "src" / "nii_resample" / "config.schema.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text())
PROPERTIES = SCHEMA["properties"]
SCHEMA_DEFAULTS = {key: spec["default"] for key, spec in PROPERTIES.items() if "default" in spec}


def _scripts_env(scripts) -> dict:
    return {**os.environ, "PYTHONPATH": str(scripts)}


def test_every_schema_key_is_an_api_parameter_with_the_schemas_default():
    """Except the keys NOT_IN_API lists, each with its reason."""
    parameters = inspect.signature(resampling_dataset).parameters
    NOT_IN_API = api.NOT_IN_API
    assert all(reason for reason in NOT_IN_API.values())
    assert set(NOT_IN_API) <= set(PROPERTIES)
    for key, spec in PROPERTIES.items():
        if key in NOT_IN_API:
            assert key not in parameters, f"{key} is listed as not in the API, yet it is"
            continue
        assert key in parameters, f"config key {key} is not a parameter of resampling_dataset"
        default = parameters[key].default
        if "default" in spec:
            shown = list(default) if isinstance(default, tuple) else default
            assert shown == spec["default"], f"{key}: API default {default!r}, schema {spec['default']!r}"
        else:  # folders are required, the grid keys None unless given
            assert default in (inspect.Parameter.empty, None), key
    assert set(api.API_OPTIONS) == set(SCHEMA_DEFAULTS) - set(NOT_IN_API)


def test_api_docstring_lists_every_option_with_its_title():
    doc = " ".join(resampling_dataset.__doc__.split())
    for key in set(SCHEMA_DEFAULTS) - {"qc"}:
        title = " ".join(PROPERTIES[key]["title"].split())
        assert f"{key}: {title} Default {SCHEMA_DEFAULTS[key]!r}." in doc, key


def test_command_line_flags_follow_the_schema_and_reach_the_volumes(tmp_path, make_dataset):
    parser = build_parser()
    actions = {action.dest: [] for action in parser._actions}
    for action in parser._actions:
        actions[action.dest].append(action)
    defaults = vars(parser.parse_args(["in", "out", "8", "8", "8"]))
    for key in set(SCHEMA_DEFAULTS) - {"qc"}:
        spec, flag = PROPERTIES[key], "--" + key.replace("_", "-")
        flags = [name for action in actions[key] for name in action.option_strings]
        assert defaults[key] == SCHEMA_DEFAULTS[key], key
        if spec.get("type") == "boolean":  # --flag / --no-flag, either way round
            assert sorted(flags) == sorted([flag, "--no-" + flag[2:]]), flags
            assert vars(parser.parse_args(["i", "o", "8", "8", "8", flag]))[key] is True
            assert vars(parser.parse_args(["i", "o", "8", "8", "8", "--no-" + flag[2:]]))[key] is False
        else:
            [action] = actions[key]
            assert action.option_strings == [flag]
            assert action.help.startswith(spec["title"]), key
            assert list(action.choices or []) == spec.get("enum", []), key
    # The special ones are kept as they were.
    assert {"--grid", "--desired-spacing", "--cores", "--no-progress"} <= set(parser._option_string_actions)
    # A word or patterns (cases): one or more words, checked by the config's parser.
    assert vars(parser.parse_args(["i", "o", "8", "8", "8", "--cases", "off"]))["cases"] == ["off"]
    # Wired: the command line's volumes equal the API's with the same options.
    folder, inputs = make_dataset()
    words = ["--engine", "itk", "--no-antialias", "--compression-level", "9",
             "--interpolation", "linear", "--images", "mri*", "--no-detect-label-maps",
             "--saving-mode", "folder", "--cores", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "nii_resample", str(folder), str(tmp_path / "cli"), "9", "8", "7",
         *words], capture_output=True, text=True, env=_scripts_env(REPO / "src"))
    assert result.returncode == 0, result.stderr
    resampling_dataset(folder, tmp_path / "api", (9, 8, 7), "folder", engine="itk",
                       antialias=False, compression_level=9, interpolation="linear",
                       images=["mri*"], detect_label_maps=False, cores=1)
    with open(tmp_path / "cli" / "manifest.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(r["engine"], r["interpolation"], r["antialias"]) for r in rows] == [
        ("itk", "linear", "False")] * len(inputs)
    for prefix in inputs:
        name = f"{prefix}_resampled.nii.gz"
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes()


def test_config_readme_table_is_the_generated_one():
    """Rerun `python -m nii_resample.options --config-readme config/README.md` after editing
    the schema."""
    from nii_resample import options

    # Every key has a title (the flags' help) and a description (the table).
    assert all(spec.get("title") and spec.get("description") for spec in PROPERTIES.values())
    text = (REPO / "config" / "README.md").read_text()
    assert options.config_readme_table() in text
    assert options.replace_table(text) == text
    for key, spec in PROPERTIES.items():
        assert f"| `{key}` |" in text and spec["description"] in text, key


def test_config_readme_command_prints_and_rewrites_only_the_table(tmp_path):
    from nii_resample import options

    readme = (REPO / "config" / "README.md").read_text()
    stale = tmp_path / "README.md"
    stale.write_text(readme.replace("| `debug` | boolean", "| `debug` | old words"))
    env = _scripts_env(REPO / "src")
    printed = subprocess.run([sys.executable, "-m", "nii_resample.options", "--config-readme"],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
    assert printed.returncode == 0 and printed.stdout == options.config_readme_table()
    rewrite = subprocess.run(
        [sys.executable, "-m", "nii_resample.options", "--config-readme", str(stale)],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert rewrite.returncode == 0, rewrite.stderr
    assert stale.read_text() == readme
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # no partial left


def test_shipped_config_sets_exactly_the_schema_keys():
    shipped_text = (REPO / "config" / "config.yaml").read_text()
    shipped = yaml.safe_load(shipped_text)
    # desired_spacing, grids and datasets are shown commented out (they would win).
    commented = {"desired_spacing", "reference", "grids", "datasets"}
    assert set(shipped) == set(PROPERTIES) - commented
    assert all(f"# {key}:" in shipped_text for key in commented)
    assert not (REPO / "workflow" / "schemas").exists()  # one schema file, the package's


NEW_OPTION = {"type": "string", "enum": ["plain", "fancy"], "default": "plain",
              "title": "A new option.", "description": "What the new option does."}


def test_a_new_schema_entry_reaches_every_interface(tmp_path):
    """Adding an option = its schema entry (+ its implementation): defaults, checks, flags,
    config/README.md's table and the job parser's defaults follow without other edits."""
    scripts = tmp_path / "src"
    shutil.copytree(REPO / "src" / "nii_resample", scripts / "nii_resample",
                    ignore=shutil.ignore_patterns("__pycache__"))
    schema = json.loads(SCHEMA_FILE.read_text())
    schema["properties"]["new_option"] = NEW_OPTION
    schema["properties"]["compression_level"]["default"] = 6
    (scripts / "nii_resample" / "config.schema.json").write_text(json.dumps(schema))
    probe = """
import json
from nii_resample import settings, options, command, __main__
from nii_resample.errors import ConfigError
base = {"nii_folder": "a", "output_path": "b", "desired_volume": [2, 2, 2]}
try:
    settings.normalise_config({**base, "new_option": "odd"})
except ConfigError as error:
    refused = str(error)
args = __main__.build_parser().parse_args(["i", "o", "2", "2", "2", "--new-option", "fancy"])
job = command.build_parser().parse_args(["i", "o", "2", "2", "2"])
print(json.dumps({"defaults": settings.DEFAULTS, "refused": refused,
                  "checked": settings.normalise_config({**base, "new_option": "fancy"})["new_option"],
                  "flag": args.new_option, "job_level": job.compression_level,
                  "table": options.config_readme_table()}))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=_scripts_env(scripts), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["defaults"]["new_option"] == "plain" and seen["defaults"]["compression_level"] == 6
    assert seen["refused"] == "new_option must be one of plain, fancy, got 'odd'"
    assert seen["checked"] == "fancy" and seen["flag"] == "fancy" and seen["job_level"] == 6
    assert "| `new_option` | `plain` or `fancy`, default `plain` | What the new option does. |" in seen["table"]
    assert "| `compression_level` | integer 1-9, default `6` |" in seen["table"]


def test_installed_package_finds_its_schema(tmp_path):
    """`pip install .` (not editable) carries the schema: the package works from anywhere."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src" / "nii_resample", source / "src" / "nii_resample",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import json, nii_resample.settings as s; "
             "print(json.dumps([s.__file__, s.DEFAULTS]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=elsewhere, env=_scripts_env(target))
    assert result.returncode == 0, result.stderr
    where, defaults = json.loads(result.stdout)
    assert where.startswith(str(target)) and defaults == SCHEMA_DEFAULTS
    assert (target / "nii_resample" / "config.schema.json").read_text() == SCHEMA_FILE.read_text()
