"""Configuration checks and volume discovery, shared by the workflow, the Python API and the CLI.

Every problem is reported as one sentence naming the key or folder, before any job runs.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import os
import re
from pathlib import Path

from .errors import ConfigError, InputFolderError
from .formatting import numbers_text, size_text
from .options import DEFAULTS, PROPERTIES, SCHEMA, choices
from .orientation import KEEP, parse_orientation

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


# Values against the schema. What YAML, `--config key=value`, the command line or the API
# hands over is first taken as the type the schema declares (coerce: walks type, enum, items,
# properties, oneOf/anyOf and $ref), then the whole configuration is validated ONCE
# (jsonschema); its first error becomes one sentence naming the key (_problem). What a
# schema cannot say (a reference's header, names, one grid key per grid, cross-key rules)
# is checked after that, in normalise_config.

_NOT = object()  # "this value cannot be taken as that type": validation will say why
_WHOLE = re.compile(r"\s*[+-]?\d+\s*")
_NULL_WORDS = ("", "null", "None")
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
# YAML 1.1 reads unquoted off/no/on/yes as booleans: an enum that has the word gets it back.
_YAML_WORDS = {False: ("off", "no", "false"), True: ("on", "yes", "true")}
# A list in one string, by item type: 128x128x64, [1,1,2.5], *_seg.nii.gz,*_mask.nii.gz
_SEPARATORS = {"integer": r"[\s,\[\]()]+|(?<=\d)x(?=\d)", "number": r"[\s,\[\]()]+", "string": r"[,\s\[\]]+"}


def _resolved(schema: dict) -> dict:
    """`schema` with a local $ref (#/$defs/name) replaced by what it points at."""
    while "$ref" in schema:
        target = SCHEMA
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _types(schema: dict) -> list:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _as_null(value, schema):
    if value is None or (isinstance(value, str) and value.strip() in _NULL_WORDS):
        return None
    return _NOT


def _as_boolean(value, schema):
    if isinstance(value, str):
        return _BOOL_WORDS.get(value.strip().lower(), _NOT)
    return value if isinstance(value, bool) else _NOT


def _as_integer(value, schema):
    if isinstance(value, bool):
        return _NOT
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        return int(value)
    return value if isinstance(value, int) else _NOT


def _as_number(value, schema):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return _NOT
    try:
        return float(value)
    except (ValueError, OverflowError):
        return _NOT


def _as_string(value, schema):
    words = schema.get("enum")
    if words and isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]  # a word the command line gathered into a list (nargs="+")
    if words and isinstance(value, bool):
        return next((word for word in _YAML_WORDS[value] if word in words), _NOT)
    if isinstance(value, str):
        return value.strip() if words else value
    return _NOT


def _as_array(value, schema):
    items = _resolved(schema.get("items", {}))
    if isinstance(value, str):
        separators = _SEPARATORS[next(iter(_types(items)), "string")]
        value = [item for item in re.split(separators, value.strip()) if item]
    if not isinstance(value, (list, tuple)):
        return _NOT
    return [coerce(item, items) for item in value]


def _as_object(value, schema):
    if not isinstance(value, dict):
        return _NOT
    properties, others = schema.get("properties", {}), schema.get("additionalProperties")
    others = others if isinstance(others, dict) else {}
    return {key: coerce(item, properties.get(key, others)) for key, item in value.items()}


_AS_TYPE = {"null": _as_null, "boolean": _as_boolean, "integer": _as_integer,
            "number": _as_number, "string": _as_string, "array": _as_array,
            "object": _as_object}


def coerce(value, schema: dict):
    """`value` as the type `schema` declares, where it was handed over otherwise: text from
    `--config`, a tuple, a whole float for an integer, a YAML 1.1 boolean for an enum word.
    Never raises: what cannot be taken stays as it was, for validation to refuse. Of
    oneOf/anyOf, the first branch whose coercion it satisfies (else the last branch's)."""
    schema = _resolved(schema)
    for kind in _types(schema):
        taken = _AS_TYPE[kind](value, schema)
        if taken is not _NOT:
            value = taken
            break
    branches = schema.get("oneOf") or schema.get("anyOf")
    if branches:
        tried = [coerce(value, branch) for branch in branches]
        value = next((t for t, b in zip(tried, branches) if _validator().evolve(schema=b).is_valid(t)),
                     tried[-1])
    return value


@functools.lru_cache(maxsize=None)
def _validator():
    """The schema's jsonschema validator (imported only here: jobs import this module). A
    JSON number is finite: YAML's .inf and .nan are not numbers."""
    from jsonschema import Draft202012Validator, validators

    def finite(checker, value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(value, int) or math.isfinite(value))

    checker = Draft202012Validator.TYPE_CHECKER.redefine("number", finite)
    return validators.extend(Draft202012Validator, type_checker=checker)(SCHEMA)


# What a key must be, where its type's words would say too little. {raw}: the value as
# given, {typed}: as typed (as_typed), {value}: as coerced.
_VOXELS = "{key} must be three positive integers [X, Y, Z] (e.g. [128, 128, 64]), got {typed}"
_PATTERNS = "{key} must be a list of file-name patterns, got {value!r}"
MUST = {
    "desired_volume": _VOXELS,
    "crop_or_pad": _VOXELS,
    "desired_spacing": "{key} must be three positive numbers [sx, sy, sz] in mm (e.g. "
                       "[1.0, 1.0, 1.0]) or one of median, nnunet, got {typed}",
    "reference": "{key} must be the path of a NIfTI volume, got {typed!r}",
    "label_maps": _PATTERNS,
    "images": _PATTERNS,
    "cases": "cases must be auto, off or a list of two or more file patterns (the case's "
             "image first), each with one {{case}}, got {value!r}",
    "orientation": "orientation must be keep or three letters, one of each pair L/R, A/P and "
                   "S/I (e.g. RAS, LPS, LAS), got {raw!r}",
    "grids": "grids must map grid names to {{desired_volume: [X, Y, Z]}} or "
             "{{desired_spacing: [sx, sy, sz]}}, got {typed}",
    "datasets": "datasets must map dataset names to their keys (nii_folder, output_path, "
                "...), got {typed}",
}
CASES_TRUE = "cases must be auto, off or a list of patterns with {case}, got true"


def _problem(key: str, spec: dict, raw, value, error) -> str:
    """The sentence for a key whose value the schema refused: from MUST, else from its type."""
    kinds, template = _types(spec), MUST.get(key)
    if key == "cases" and value is True:  # YAML's on/yes/true
        return CASES_TRUE
    if template is None and "enum" in spec:
        template = f"{{key}} must be one of {', '.join(spec['enum'])}, got {{raw!r}}"
    elif template is None and kinds == ["boolean"]:
        template = "{key} must be true or false, got {raw!r}"
    elif template is None and kinds == ["integer"] and error.validator in ("minimum", "maximum"):
        low, high = spec.get("minimum"), spec.get("maximum")
        bounds = f"between {low} and {high}" if None not in (low, high) else (
            f"at least {low}" if low is not None else f"at most {high}")
        template = f"{{key}} must be {bounds}, got {{value}}"
    elif template is None and kinds == ["integer"]:
        template = "{key} must be a whole number, got {raw!r}"
    elif template is None and "number" in kinds:
        template = "{key} must be a number" + (" or null" if "null" in kinds else "") + ", got {typed}"
    elif template is None:
        return f"{key}: {error.message}"
    return template.format(key=key, raw=raw, typed=as_typed(raw), value=value)


def _grid_problem(name: str, spec, where: str) -> str:
    keys = [k for k in (sorted(spec) if isinstance(spec, dict) else []) if k not in SHAPE_KEYS]
    return (f"{where}grid {name!r} must set exactly one of desired_volume, desired_spacing and "
            f"reference, got {as_typed(spec) if not keys else ', '.join(keys)}")


def _dataset_problem(name: str, entry) -> str:
    if not isinstance(entry, dict) or not entry:
        return f"dataset {name!r}: it must set nii_folder, output_path and its keys"
    missing = [key for key in REQUIRED_KEYS[:2] if entry.get(key) in (None, "")]
    return f"dataset {name!r}: it does not set {', '.join(missing)}"


def _sentence(error, given: dict, checked: dict, where: str) -> str:
    """The first schema error as one sentence naming the key (given: the values as they came)."""
    path = list(error.absolute_path)
    if not path:  # additionalProperties of the configuration itself
        unknown = sorted(set(error.instance) - set(PROPERTIES))
        return (f"{where}unknown configuration key(s) {', '.join(unknown)}; "
                f"known keys: {', '.join(PROPERTIES)}")
    key = path[0]
    if key == "grids" and len(path) == 2:
        return _grid_problem(path[1], given["grids"][path[1]], where)
    if key == "grids" and len(path) > 2:
        name, option = path[1], path[2]
        spec = _resolved(PROPERTIES["grids"]["additionalProperties"]["properties"][option])
        problem = _problem(option, spec, given["grids"][name][option],
                           checked["grids"][name][option], error)
        return f"{where}grid {name!r}: {problem}"
    if key == "datasets" and len(path) > 1:
        return _dataset_problem(path[1], given["datasets"][path[1]])
    return where + _problem(key, _resolved(PROPERTIES[key]), given.get(key, checked[key]),
                            checked[key], error)


def _canonical_orientation(value):
    """keep / an axis code in the case the schema's pattern names (lower case is accepted)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    return KEEP if text.lower() == KEEP else text.upper()


def _coerced(config: dict) -> dict:
    checked = coerce(config, SCHEMA)
    if "orientation" in checked:
        checked["orientation"] = _canonical_orientation(checked["orientation"])
    return checked


def _schema_errors(checked: dict) -> list:
    """The schema's errors, unknown keys first, then in the schema's order of keys."""
    order = {key: n for n, key in enumerate(PROPERTIES)}
    return sorted(_validator().iter_errors(checked), key=lambda error: (
        order.get(error.absolute_path[0], len(order)) if error.absolute_path else -1))


def parse_value(key: str, value):
    """One key's value coerced to its schema type and validated (ConfigError, one sentence):
    what the command line's flags and parse_desired_volume check with."""
    given = {key: value}
    checked = _coerced(given)
    errors = _schema_errors(checked)
    if errors:
        raise ConfigError(_sentence(errors[0], given, checked, ""))
    return checked[key]


def parse_desired_volume(value) -> list[int]:
    """Three positive integers from a list, or from the string `--config` hands over.

    Accepts [128, 128, 64], ["128", "128", "64"], "[128,128,64]", "128,128,64", "128x128x64".
    """
    return parse_value("desired_volume", value)


def parse_reference(value: str, key: str = "reference") -> str:
    """A reference volume's path (the schema made it a non-empty string), its header read and
    checked now: a missing or unreadable reference stops the run before any job."""
    from .nifti import checked_header

    if not value.strip():
        raise ConfigError(MUST["reference"].format(key=key, typed=""))
    path = Path(value.strip())
    if not path.is_file():
        raise ConfigError(f"{key} {str(path)!r} is not a file")
    try:
        checked_header(path)
    except Exception as error:  # VolumeError, or whatever a non-NIfTI file makes nibabel say
        raise ConfigError(f"{key} {str(path)!r} cannot be used as a grid ({error})") from None
    return str(path)


def parse_choice(key: str, value, choices) -> str:
    """The volume function's own check of its keyword arguments (not of a configuration)."""
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


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


def normalise_config(config: dict, where: str = "") -> dict:
    """A checked copy of `config` with the schema's defaults filled in and its values
    coerced to the schema's types, validated once against the schema.

    `grids`, `desired_spacing` and `desired_volume` are checked when given (resolve_grids
    picks the one that counts); `datasets` entries are checked by normalise_datasets.
    `where` (e.g. "dataset 'ct': ") starts every message about a dataset's own keys.
    A key set to null (None) is not set: its default counts.
    """
    given = {k: v for k, v in config.items() if v is not None}
    for key in ("nii_folder", "output_path"):  # paths are text, whatever YAML made of them
        if key in given:
            given[key] = str(given[key])
    checked = _coerced({**DEFAULTS, **given})
    errors = _schema_errors(checked)
    if errors and not errors[0].absolute_path:  # unknown keys: said before anything else
        raise ConfigError(_sentence(errors[0], given, checked, where))
    if not given.get("datasets"):
        missing = [key for key in REQUIRED_KEYS[:2] if given.get(key) in (None, "")]
        if not any(given.get(key) not in (None, "", {}) for key in GRID_KEYS):
            missing.append("desired_volume")
        if missing:
            raise ConfigError(f"{where}the configuration does not set {', '.join(missing)}")
    if errors:
        raise ConfigError(_sentence(errors[0], given, checked, where))
    # What the schema cannot say.
    if "reference" in given:
        checked["reference"] = parse_reference(checked["reference"])
    if "grids" in given:
        checked["grids"] = parse_grids(checked["grids"], where, given["grids"])
    if isinstance(checked["cases"], list) and any(p.count("{case}") != 1 for p in checked["cases"]):
        raise ConfigError(f"{where}{MUST['cases'].format(value=checked['cases'])}")
    if "orientation" in given:
        parse_orientation(given["orientation"])  # one of each pair L/R, A/P, S/I
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


def parse_grids(value: dict, where: str = "", given: dict | None = None) -> dict[str, dict]:
    """{name: {"desired_volume": [...]}} or {name: {"desired_spacing": [...]}}, its values
    checked by the schema already: its names, one grid key each, a reference's header and
    the crop/pad keys' use. `given`: the grids as they came (for the messages)."""
    if not value:
        raise ConfigError(f"{where}{MUST['grids'].format(typed=as_typed(value))}")
    grids = {}
    for name, spec in value.items():
        _check_name("grid", name, where)
        keys = [k for k in sorted(spec) if k not in SHAPE_KEYS]
        if len(keys) != 1:
            raise ConfigError(_grid_problem(name, (given or value)[name], where))
        key = keys[0]
        try:
            grids[name] = {key: parse_reference(spec[key]) if key == "reference" else spec[key]}
            grids[name].update({option: spec[option] for option in SHAPE_KEYS if option in spec})
            check_shaping(grids[name])
        except ConfigError as problem:
            raise ConfigError(f"{where}grid {name!r}: {problem}") from None
    return grids


def normalise_datasets(top: dict, entries) -> dict[str, dict]:
    """Each dataset's full, checked configuration: the top-level keys are its defaults
    (never nii_folder or output_path); its own grid key replaces the inherited one."""
    if not entries:  # a mapping (the schema), but an empty one
        raise ConfigError(MUST["datasets"].format(typed="nothing"))
    datasets = {}
    for name, entry in entries.items():
        where = f"dataset {_check_name('dataset', name)!r}: "
        if "datasets" in entry:
            raise ConfigError(f"{where}datasets cannot be nested")
        own = [key for key in GRID_KEYS if entry.get(key) is not None]
        if len(own) > 1:
            raise ConfigError(f"{where}it sets {' and '.join(own)}; give one of them")
        inherited = {k: v for k, v in top.items() if k not in ("nii_folder", "output_path", "datasets")}
        if own:
            inherited = {k: v for k, v in inherited.items() if k not in GRID_KEYS}
        if any(entry.get(key) in (None, "") for key in REQUIRED_KEYS[:2]):  # null or ""
            raise ConfigError(_dataset_problem(name, entry))
        datasets[name] = normalise_config({**inherited, **entry}, where)
    return datasets


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
    label = size_text(size) + " voxels"
    return [{"name": None, "label": label, "desired_volume": size, "root": out}]


def spacing_label(spacing, shaping: dict) -> str:
    """The manifest's grid text of a target spacing: `1,1,1 mm`, `... cropped or padded to
    128x128x64`, `... padded to a multiple of 16`; a rule's result says the rule."""
    if isinstance(spacing, str):  # not resolved yet (fingerprint.resolve_spacing_rules)
        return spacing
    label = numbers_text(spacing) + " mm"
    if shaping.get("crop_or_pad"):
        label += ", cropped or padded to " + size_text(shaping["crop_or_pad"])
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
