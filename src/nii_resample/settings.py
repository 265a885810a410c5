"""Configuration checks and volume discovery, shared by the workflow, the Python API and the CLI.

Every problem is reported as one sentence naming the key or folder, before any job runs.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from pathlib import Path

from .errors import ConfigError, InputFolderError
from .options import DEFAULTS, PROPERTIES, choices
from .orientation import parse_orientation

SAVING_MODES = choices("saving_mode")
ENGINES = choices("engine")
INTERPOLATIONS = choices("interpolation")
LABEL_INTERPOLATIONS = choices("label_interpolation")
# What a volume is: forced by a file-name pattern, or decided from its header and content.
KINDS = ("auto", "label_map", "image")
# Input volumes: gzipped or plain NIfTI-1/-2 (outputs are always .nii.gz).
VOLUME_SUFFIXES = (".nii.gz", ".nii")
RESAMPLED_SUFFIX = "_resampled.nii.gz"
REQUIRED_KEYS = ("nii_folder", "output_path", "desired_volume")
# Target grid keys: one of them per dataset. At one level of the config, grids wins over
# reference, then desired_spacing, then desired_volume (a user's --configfile/--config that sets
# desired_spacing or grids then overrides the shipped desired_volume: after Snakemake's
# merge, which layer set which key cannot be told).
GRID_KEYS = ("grids", "reference", "desired_spacing", "desired_volume")
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


def as_typed(value) -> str:
    """A config value as the user typed it, without Python's quotes: `--config
    desired_volume=32,32` hands over '32,32' and `[32,32]` ['32', '32']; show `32,32` and
    `[32, 32]`, as a YAML list [64, 0, 64] shows `[64, 0, 64]`."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(as_typed(item) for item in value) + "]"
    if isinstance(value, str):
        return value.strip()
    return str(value)


def _three_items(value, separators: str, problem: str) -> list:
    """The three items of a list, or of the string `--config` hands over (split on
    `separators`, a regex character class body); booleans are never items."""
    if isinstance(value, str):
        items = [item for item in re.split(rf"[{separators}]+", value.strip()) if item]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(problem)
    if len(items) != 3 or any(isinstance(item, bool) for item in items):
        raise ConfigError(problem)
    return items


def parse_desired_volume(value, key: str = "desired_volume") -> list[int]:
    """Three positive integers from a list, or from the string `--config` hands over.

    Accepts [128, 128, 64], ["128", "128", "64"], "[128,128,64]", "128,128,64", "128x128x64".
    """
    problem = (
        f"{key} must be three positive integers [X, Y, Z] (e.g. [128, 128, 64]), "
        f"got {as_typed(value)}"
    )
    numbers = []
    for item in _three_items(value, r"\s,x\[\]()", problem):
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


# desired_spacing chosen from the dataset's headers (nii_resample.fingerprint).
SPACING_RULES = ("median", "nnunet")


def parse_desired_spacing(value, key: str = "desired_spacing") -> list[float] | str:
    """Three positive, finite numbers (mm) from a list or the string `--config` hands over:
    [1, 1, 2.5], "1,1,2.5", "[1,1,2.5]"; or a rule, `median` or `nnunet`."""
    if isinstance(value, str) and value.strip() in SPACING_RULES:
        return value.strip()
    problem = (
        f"{key} must be three positive numbers [sx, sy, sz] in mm (e.g. [1.0, 1.0, 1.0]) "
        f"or one of {', '.join(SPACING_RULES)}, got {as_typed(value)}"
    )
    items = _three_items(value, r"\s,\[\]()", problem)
    try:
        numbers = [float(item) for item in items]
    except (TypeError, ValueError):
        raise ConfigError(problem) from None
    if not all(math.isfinite(n) and n > 0 for n in numbers):
        raise ConfigError(problem)
    return numbers


def parse_reference(value, key: str = "reference") -> str:
    """A reference volume's path, its header read and checked now: a missing or unreadable
    reference stops the run before any job."""
    from .nifti import checked_header

    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be the path of a NIfTI volume, got {as_typed(value)!r}")
    path = Path(value.strip())
    if not path.is_file():
        raise ConfigError(f"{key} {str(path)!r} is not a file")
    try:
        checked_header(path)
    except Exception as error:  # VolumeError, or whatever a non-NIfTI file makes nibabel say
        raise ConfigError(f"{key} {str(path)!r} cannot be used as a grid ({error})") from None
    return str(path)


def _parse_number(key: str, value) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "null", "None")):
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a number or null, got {as_typed(value)}")
    return number


def _parse_bool(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _parse_int(key: str, value, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not re.fullmatch(r"\s*[+-]?\d+\s*", str(value)):
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    number = int(str(value))
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"between {low} and {high}" if None not in (low, high) else (
            f"at least {low}" if low is not None else f"at most {high}")
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
    """The first glob pattern the file name matches, if any. An uncompressed `x.nii` also
    matches the patterns written for `x.nii.gz` (e.g. "*_seg.nii.gz")."""
    names = (name, f"{name}.gz") if name.endswith(".nii") else (name,)
    return next(
        (p for p in patterns if any(fnmatch.fnmatchcase(n, p) for n in names)), None
    )


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


def _known_keys() -> tuple:
    return tuple(PROPERTIES)


def parse_option(key: str, value):
    """A plain option (one with a default) checked, and coerced from the string `--config`
    hands over, by its schema entry: boolean, enum, integer bounds, list of patterns."""
    spec = PROPERTIES[key]
    if key == "cases":  # auto, off or patterns: the one key of two types
        from .cases import parse_cases

        return parse_cases(value)
    if key == "crop_or_pad":  # [X, Y, Z] or [] (off)
        empty = value in ([], (), "", "[]", None)
        return [] if empty else parse_desired_volume(value, key)
    if key == "pad_value":  # a number or null
        return _parse_number(key, value)
    if key == "orientation":
        return parse_orientation(value)
    if spec["type"] == "boolean":
        return _parse_bool(key, value)
    if "enum" in spec:
        return parse_choice(key, value, spec["enum"])
    if spec["type"] == "integer":
        return _parse_int(key, value, spec.get("minimum"), spec.get("maximum"))
    if spec["type"] == "array":
        return _parse_patterns(key, value)
    # A new kind of option needs its check here: never pass a value through unchecked.
    raise NotImplementedError(f"{key}: no check for schema type {spec['type']!r}")


def normalise_config(config: dict, where: str = "") -> dict:
    """A checked copy of `config` with defaults filled in and `--config` strings coerced.

    `grids`, `desired_spacing` and `desired_volume` are checked when given (resolve_grids
    picks the one that counts); `datasets` entries are checked by normalise_datasets.
    `where` (e.g. "dataset 'ct': ") starts every message about a dataset's own keys.
    """
    unknown = sorted(set(config) - set(_known_keys()))
    if unknown:
        raise ConfigError(
            f"{where}unknown configuration key(s) {', '.join(unknown)}; "
            f"known keys: {', '.join(_known_keys())}"
        )
    given = {k: v for k, v in config.items() if v is not None}
    if not given.get("datasets"):
        missing = [key for key in REQUIRED_KEYS[:2] if given.get(key) in (None, "")]
        if not any(given.get(key) not in (None, "", {}) for key in GRID_KEYS):
            missing.append("desired_volume")
        if missing:
            raise ConfigError(f"{where}the configuration does not set {', '.join(missing)}")
    checked = {**DEFAULTS, **given}
    for key in ("nii_folder", "output_path"):
        if key in checked:
            checked[key] = str(checked[key])
    if "desired_volume" in given:
        checked["desired_volume"] = parse_desired_volume(checked["desired_volume"])
    if "desired_spacing" in given:
        checked["desired_spacing"] = parse_desired_spacing(checked["desired_spacing"])
    if "reference" in given:
        checked["reference"] = parse_reference(checked["reference"])
    if "grids" in given:
        checked["grids"] = parse_grids(checked["grids"], where)
    for key in DEFAULTS:
        checked[key] = parse_option(key, checked[key])
    if not checked.get("grids") and not given.get("datasets"):
        effective = next((k for k in GRID_KEYS[1:] if checked.get(k)), None)
        try:
            check_shaping({effective: True, **{k: checked[k] for k in SHAPE_KEYS}})
        except ConfigError as problem:
            raise ConfigError(f"{where}{problem}") from None
    if "datasets" in given:
        checked["datasets"] = normalise_datasets(checked, given["datasets"])
    return checked


# Keys that shape a target spacing's grid (crop, pad); per dataset or per grid.
SHAPE_KEYS = ("crop_or_pad", "pad_to_multiple", "pad_value")


def shaping_keys(config: dict) -> dict:
    """The crop/pad keys that do something (crop_or_pad set, pad_to_multiple > 1, a
    pad_value): only they reach the jobs, so other command lines stay as they were."""
    active = {
        "crop_or_pad": bool(config.get("crop_or_pad")),
        "pad_to_multiple": (config.get("pad_to_multiple") or 1) > 1,
        "pad_value": config.get("pad_value") is not None,
    }
    return {key: config[key] for key, on in active.items() if on}


def check_shaping(config: dict) -> None:
    """crop_or_pad and pad_to_multiple only shape a target spacing's grid: with a fixed
    shape (desired_volume) or a reference grid they are a configuration error."""
    shaping = [k for k in shaping_keys(config) if k != "pad_value"]
    fixed = next((k for k in ("reference", "desired_volume") if config.get(k)), None)
    if shaping and not config.get("desired_spacing") and fixed:
        raise ConfigError(
            f"{' and '.join(shaping)} shape a desired_spacing grid; with {fixed} the shape is "
            "fixed already: remove one of them"
        )


def _check_name(kind: str, name, where: str = "") -> str:
    """Grid and dataset names become folder and rule names: letters, digits, _ . -"""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ConfigError(
            f"{where}{kind} name {as_typed(name)!r} must start with a letter or digit and "
            "hold only letters, digits, _, . and -"
        )
    return name


def parse_grids(value, where: str = "") -> dict[str, dict]:
    """{name: {"desired_volume": [...]}} or {name: {"desired_spacing": [...]}}, checked."""
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"{where}grids must map grid names to {{desired_volume: [X, Y, Z]}} or "
            f"{{desired_spacing: [sx, sy, sz]}}, got {as_typed(value)}"
        )
    grids = {}
    for name, spec in value.items():
        _check_name("grid", name, where)
        keys = sorted(spec) if isinstance(spec, dict) else []
        shaping = {k: spec[k] for k in SHAPE_KEYS if k in keys}
        keys = [k for k in keys if k not in SHAPE_KEYS]
        if keys not in (["desired_volume"], ["desired_spacing"], ["reference"]):
            raise ConfigError(
                f"{where}grid {name!r} must set exactly one of desired_volume, "
                f"desired_spacing and reference, got {as_typed(spec) if not keys else ', '.join(keys)}"
            )
        key = keys[0]
        parse = {
            "desired_volume": parse_desired_volume,
            "desired_spacing": parse_desired_spacing,
            "reference": parse_reference,
        }[key]
        try:
            grids[name] = {key: parse(spec[key])}
            for option, given in shaping.items():
                grids[name][option] = parse_option(option, given)
            check_shaping(grids[name])
        except ConfigError as problem:
            raise ConfigError(f"{where}grid {name!r}: {problem}") from None
    return grids


def normalise_datasets(top: dict, entries) -> dict[str, dict]:
    """Each dataset's full, checked configuration: the top-level keys are its defaults
    (never nii_folder or output_path); its own grid key replaces the inherited one."""
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(
            "datasets must map dataset names to their keys (nii_folder, output_path, ...), "
            f"got {as_typed(entries) if entries else 'nothing'}"
        )
    datasets = {}
    for name, entry in entries.items():
        where = f"dataset {_check_name('dataset', name)!r}: "
        if not isinstance(entry, dict) or not entry:
            raise ConfigError(f"{where}it must set nii_folder, output_path and its keys")
        if "datasets" in entry:
            raise ConfigError(f"{where}datasets cannot be nested")
        own = [key for key in GRID_KEYS if entry.get(key) is not None]
        if len(own) > 1:
            raise ConfigError(f"{where}it sets {' and '.join(own)}; give one of them")
        inherited = {k: v for k, v in top.items() if k not in ("nii_folder", "output_path", "datasets")}
        if own:
            inherited = {k: v for k, v in inherited.items() if k not in GRID_KEYS}
        missing = [key for key in REQUIRED_KEYS[:2] if entry.get(key) in (None, "")]
        if missing:
            raise ConfigError(f"{where}it does not set {', '.join(missing)}")
        datasets[name] = normalise_config({**inherited, **entry}, where)
    return datasets


def _number_text(value) -> str:
    return f"{float(value):g}"


def resolve_grids(config: dict) -> list[dict]:
    """The grids of one dataset (a checked config), with where each is written: grids wins
    over desired_spacing, which wins over desired_volume (GRID_KEYS). Named grids go to
    output_path/<name>/; a flat desired_volume or desired_spacing to output_path itself."""
    out = config["output_path"]
    # The dataset's crop_or_pad/pad_to_multiple/pad_value: defaults of its spacing grids.
    shaping = shaping_keys(config)
    if config.get("grids"):
        return [
            {"name": name, "label": name,
             **(shaping if spec.get("desired_spacing") else {}), **spec,
             "root": str(Path(out) / name)}
            for name, spec in config["grids"].items()
        ]
    if config.get("reference"):
        reference = config["reference"]
        label = f"reference {Path(reference).name}"
        return [{"name": None, "label": label, "reference": reference, "root": out}]
    if config.get("desired_spacing"):
        spacing = config["desired_spacing"]
        label = spacing_label(spacing, shaping)
        return [{"name": None, "label": label, "desired_spacing": spacing, **shaping,
                 "root": out}]
    size = config["desired_volume"]
    label = "x".join(str(n) for n in size) + " voxels"
    return [{"name": None, "label": label, "desired_volume": size, "root": out}]


def spacing_label(spacing, shaping: dict) -> str:
    """The manifest's grid text of a target spacing: `1,1,1 mm`, `... cropped or padded to
    128x128x64`, `... padded to a multiple of 16`; a rule's result says the rule."""
    if isinstance(spacing, str):  # not resolved yet (fingerprint.resolve_spacing_rules)
        return spacing
    label = ",".join(_number_text(v) for v in spacing) + " mm"
    if shaping.get("crop_or_pad"):
        label += ", cropped or padded to " + "x".join(map(str, shaping["crop_or_pad"]))
    if shaping.get("pad_to_multiple", 1) > 1:
        label += f", padded to a multiple of {shaping['pad_to_multiple']}"
    return label


def grid_spec(grid: dict) -> dict:
    """{"desired_volume": [...]}, {"desired_spacing": [...], crop/pad keys} or {"reference":
    path}: what the volume function takes."""
    key = next(k for k in ("reference", "desired_spacing", "desired_volume") if grid.get(k))
    spec = {key: grid[key]}
    if key == "desired_spacing":
        spec.update(shaping_keys(grid))
    return spec


def volume_prefix(name: str) -> str | None:
    """`name` without its NIfTI suffix (`.nii.gz` or `.nii`), or None if it has neither."""
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _describe_contents(skipped: dict[str, list[str]]) -> str:
    """What a folder without volumes does hold, e.g. "3 files (a.txt, b.dcm, c.png), none of
    them NIfTI; 1 sub-folder (sub-01)"."""
    if not any(skipped.values()):
        return "it is empty"
    labels = {
        "other": ("file", "none of them NIfTI"),
        "hidden": ("hidden file", "skipped"),
        "resampled": (f"*{RESAMPLED_SUFFIX} output", "this workflow's own, skipped"),
        "folders": ("sub-folder", "not searched"),
    }
    parts = []
    for kind, (noun, why) in labels.items():
        names = sorted(skipped[kind])
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            plural = "s" if len(names) > 1 else ""
            parts.append(f"{len(names)} {noun}{plural} ({shown}), {why}")
    return "it holds " + "; ".join(parts)


def discover_volumes(nii_folder: str | os.PathLike) -> dict[str, Path]:
    """{prefix: path} for every regular `*.nii.gz` or `*.nii` file directly in `nii_folder`,
    sorted by prefix (the file name without its suffix).

    Hidden files, sub-folders and this workflow's own `*_resampled.nii.gz` outputs are
    skipped. `a.nii` beside `a.nii.gz` is refused: both would be written to one output.
    """
    folder = Path(nii_folder)
    if not folder.exists():
        raise InputFolderError(f"nii_folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise InputFolderError(f"nii_folder {str(folder)!r} is not a folder")
    volumes: dict[str, Path] = {}
    skipped: dict[str, list[str]] = {"other": [], "hidden": [], "resampled": [], "folders": []}
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            prefix = volume_prefix(name)
            if name.startswith("."):
                skipped["hidden"].append(name)
            elif entry.is_dir():
                skipped["folders"].append(name)
            elif prefix is None or not entry.is_file():
                skipped["other"].append(name)
            elif name.endswith(RESAMPLED_SUFFIX):
                skipped["resampled"].append(name)
            elif prefix in volumes:
                both = sorted([volumes[prefix].name, name])
                raise InputFolderError(
                    f"nii_folder {str(folder)!r} holds both {both[0]} and {both[1]}, which would "
                    f"be written to the same {prefix}{RESAMPLED_SUFFIX}; keep one of them"
                )
            else:
                volumes[prefix] = folder / name
    if not volumes:
        raise InputFolderError(
            f"nii_folder {str(folder)!r} contains no NIfTI volumes (*.nii.gz or *.nii): "
            f"{_describe_contents(skipped)}"
        )
    return dict(sorted(volumes.items()))


def _nearest_existing(path: Path) -> Path:
    """`path` or the closest of its ancestors that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_location(config: dict) -> None:
    """output_path must be a folder, or be creatable as one, that we may write to; in folder
    mode it must not be the input folder (the outputs would be mixed into the inputs)."""
    given = config["output_path"]
    outputs = Path(given).resolve()
    existing = _nearest_existing(outputs)
    if existing == outputs and not outputs.is_dir():
        raise ConfigError(f"output_path {given!r} is a file, not a folder")
    if not existing.is_dir():
        raise ConfigError(f"output_path {given!r} is inside {str(existing)!r}, which is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"output_path {given!r} is not writable: cannot create files in {str(existing)!r}"
        )
    if config["saving_mode"] == "folder" and Path(config["nii_folder"]).resolve() == outputs:
        raise ConfigError(
            f"output_path {given!r} is the input folder: with saving_mode "
            "'folder' the resampled volumes would be mixed into nii_folder; choose another "
            "output_path"
        )


def resampled_path(output_path: str | os.PathLike, prefix: str, saving_mode: str) -> Path:
    """Where the resampled volume of `prefix` goes for a saving mode."""
    name = f"{prefix}{RESAMPLED_SUFFIX}"
    if saving_mode == "case":
        return Path(output_path) / prefix / name
    return Path(output_path) / name


def job_options(config: dict, file_name: str, grid: dict | None = None, case=None) -> dict:
    """Options of the per-volume function for one file and grid (resolve_grids; default:
    the dataset's first), shared by the workflow and the API. `case`: (path of the case's
    image, role, why) for a member of a case (nii_resample.cases): it takes that image's
    grid, and a label map by its layout is one unless an `images` pattern says otherwise.

    Threads are not among them: they change speed, not results, and must not trigger reruns.
    """
    kind, kind_reason = volume_kind(config, file_name)
    grid = grid_spec(grid or resolve_grids(config)[0])
    extra = {}
    if case is not None and "reference" not in grid:  # a reference grid is everyone's
        image, role, why = case
        extra["case_reference"] = str(image)
        if not kind_reason.startswith("file name matches") and role != "auto":
            kind, kind_reason = role, f"case member: {why}"
    return {
        **grid,
        **extra,
        "kind": kind,
        "kind_reason": kind_reason,
        "engine": config["engine"],
        "interpolation": config["interpolation"],
        "antialias": config["antialias"],
        "label_interpolation": config["label_interpolation"],
        "compression_level": config["compression_level"],
        # Only when set: the default keeps the manifest rule's params, hence an upgrade's
        # finished run, as they were (nothing to be done).
        **({"orientation": config["orientation"]} if config["orientation"] != "keep" else {}),
    }
