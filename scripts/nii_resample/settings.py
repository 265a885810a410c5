"""Configuration checks and volume discovery, shared by the workflow, the Python API and the CLI.

Every problem is reported as one sentence naming the key or folder, before any job runs.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from .errors import ConfigError, InputFolderError

SAVING_MODES = ("case", "folder")
ENGINES = ("fast", "itk")
INTERPOLATIONS = ("bspline", "linear", "nearest")
LABEL_INTERPOLATIONS = ("linear_argmax", "nearest")
# What a volume is: forced by a file-name pattern, or decided from its header and content.
KINDS = ("auto", "label_map", "image")
VOLUME_SUFFIX = ".nii.gz"
RESAMPLED_SUFFIX = "_resampled.nii.gz"
REQUIRED_KEYS = ("nii_folder", "output_path", "desired_volume")
# Mirrors the defaults in workflow/schemas/config.schema.yaml (a test keeps them in step).
DEFAULTS = {
    "saving_mode": "case",
    "debug": False,
    "qc": False,
    "engine": "fast",
    "interpolation": "bspline",
    "antialias": True,
    "label_maps": [],
    "images": [],
    "detect_label_maps": True,
    "label_interpolation": "linear_argmax",
    "compression_level": 1,
    "threads_per_job": 1,
}


def parse_desired_volume(value) -> list[int]:
    """Three positive integers from a list, or from the string `--config` hands over.

    Accepts [128, 128, 64], ["128", "128", "64"], "[128,128,64]", "128,128,64", "128x128x64".
    """
    problem = (
        "desired_volume must be three positive integers [X, Y, Z] (e.g. [128, 128, 64]), "
        f"got {value!r}"
    )
    if isinstance(value, str):
        items = [item for item in re.split(r"[\s,x\[\]()]+", value.strip()) if item]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(problem)
    if len(items) != 3:
        raise ConfigError(problem)
    numbers = []
    for item in items:
        if isinstance(item, bool):
            raise ConfigError(problem)
        if isinstance(item, str):
            if not re.fullmatch(r"\+?\d+", item.strip()):
                raise ConfigError(problem)
            item = int(item)
        elif isinstance(item, float):
            if not item.is_integer():
                raise ConfigError(problem)
            item = int(item)
        elif not isinstance(item, int):
            raise ConfigError(problem)
        if item < 1:
            raise ConfigError(problem)
        numbers.append(int(item))
    return numbers


def _parse_bool(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _parse_int(key: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not re.fullmatch(r"\s*[+-]?\d+\s*", str(value)):
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    number = int(str(value))
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{key} must be {bounds}, got {number}")
    return number


def parse_choice(key: str, value, choices) -> str:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _parse_patterns(key: str, value) -> list[str]:
    """A list of file-name glob patterns; `--config label_maps=*_seg.nii.gz` gives one string."""
    if isinstance(value, str):
        value = [item for item in re.split(r"[,\s\[\]]+", value) if item]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(item, str) and item for item in value
    ):
        raise ConfigError(f"{key} must be a list of file-name patterns, got {value!r}")
    return list(value)


def matching_pattern(name: str, patterns) -> str | None:
    """The first glob pattern the file name matches, if any."""
    return next((p for p in patterns if fnmatch.fnmatchcase(name, p)), None)


def volume_kind(config: dict, file_name: str) -> tuple[str, str]:
    """(kind, reason) known before reading the file: a `label_maps` pattern (checked first)
    forces "label_map", an `images` pattern "image"; otherwise "auto" (the job decides from
    the header and voxels, with an empty reason) or, with detection off, "image"."""
    pattern = matching_pattern(file_name, config["label_maps"])
    if pattern:
        return "label_map", f"file name matches {pattern}"
    pattern = matching_pattern(file_name, config["images"])
    if pattern:
        return "image", f"file name matches images pattern {pattern}"
    if config["detect_label_maps"]:
        return "auto", ""
    return "image", "no label_maps pattern matches (detection off)"


def normalise_config(config: dict) -> dict:
    """A checked copy of `config` with defaults filled in and `--config` strings coerced."""
    unknown = sorted(set(config) - set(REQUIRED_KEYS) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown configuration key(s) {', '.join(unknown)}; "
            f"known keys: {', '.join(REQUIRED_KEYS + tuple(DEFAULTS))}"
        )
    missing = [key for key in REQUIRED_KEYS if config.get(key) in (None, "")]
    if missing:
        raise ConfigError(f"the configuration does not set {', '.join(missing)}")
    checked = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
    checked["nii_folder"] = str(checked["nii_folder"])
    checked["output_path"] = str(checked["output_path"])
    checked["desired_volume"] = parse_desired_volume(checked["desired_volume"])
    checked["saving_mode"] = parse_choice("saving_mode", checked["saving_mode"], SAVING_MODES)
    checked["engine"] = parse_choice("engine", checked["engine"], ENGINES)
    checked["interpolation"] = parse_choice(
        "interpolation", checked["interpolation"], INTERPOLATIONS
    )
    checked["label_interpolation"] = parse_choice(
        "label_interpolation", checked["label_interpolation"], LABEL_INTERPOLATIONS
    )
    checked["label_maps"] = _parse_patterns("label_maps", checked["label_maps"])
    checked["images"] = _parse_patterns("images", checked["images"])
    checked["detect_label_maps"] = _parse_bool("detect_label_maps", checked["detect_label_maps"])
    checked["antialias"] = _parse_bool("antialias", checked["antialias"])
    checked["debug"] = _parse_bool("debug", checked["debug"])
    checked["qc"] = _parse_bool("qc", checked["qc"])
    checked["compression_level"] = _parse_int("compression_level", checked["compression_level"], 1, 9)
    checked["threads_per_job"] = _parse_int("threads_per_job", checked["threads_per_job"], 1)
    return checked


def discover_volumes(nii_folder: str | os.PathLike) -> dict[str, Path]:
    """{prefix: path} for every regular `*.nii.gz` directly in `nii_folder`, sorted by prefix.

    Hidden files, sub-folders and this workflow's own `*_resampled.nii.gz` outputs are skipped.
    """
    folder = Path(nii_folder)
    if not folder.exists():
        raise InputFolderError(f"nii_folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise InputFolderError(f"nii_folder {str(folder)!r} is not a folder")
    volumes = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if (
                name.endswith(VOLUME_SUFFIX)
                and not name.startswith(".")
                and not name.endswith(RESAMPLED_SUFFIX)
                and len(name) > len(VOLUME_SUFFIX)
                and entry.is_file()
            ):
                volumes[name[: -len(VOLUME_SUFFIX)]] = folder / name
    if not volumes:
        raise InputFolderError(f"nii_folder {str(folder)!r} contains no {VOLUME_SUFFIX} volumes")
    return dict(sorted(volumes.items()))


def check_output_location(config: dict) -> None:
    """Folder mode must not write its outputs among the inputs."""
    if config["saving_mode"] != "folder":
        return
    inputs = Path(config["nii_folder"]).resolve()
    outputs = Path(config["output_path"]).resolve()
    if inputs == outputs:
        raise ConfigError(
            f"output_path {config['output_path']!r} is the input folder: with saving_mode "
            "'folder' the resampled volumes would be mixed into nii_folder; choose another "
            "output_path"
        )


def resampled_path(output_path: str | os.PathLike, prefix: str, saving_mode: str) -> Path:
    """Where the resampled volume of `prefix` goes for a saving mode."""
    name = f"{prefix}{RESAMPLED_SUFFIX}"
    if saving_mode == "case":
        return Path(output_path) / prefix / name
    return Path(output_path) / name


def job_options(config: dict, file_name: str) -> dict:
    """Options of the per-volume function for one file, shared by the workflow and the API.

    Threads are not among them: they change speed, not results, and must not trigger reruns.
    """
    kind, kind_reason = volume_kind(config, file_name)
    return {
        "desired_volume": config["desired_volume"],
        "kind": kind,
        "kind_reason": kind_reason,
        "engine": config["engine"],
        "interpolation": config["interpolation"],
        "antialias": config["antialias"],
        "label_interpolation": config["label_interpolation"],
        "compression_level": config["compression_level"],
    }
