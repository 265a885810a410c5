"""The one definition of every configuration key: config.schema.json, beside this file.

Everything else is derived from it: the defaults (settings.DEFAULTS), the choices, the
command line's plain flags (add_option_flags), the API docstring's option list
(options_doc) and config/README.md's table (`python -m nii_resample.options --config-readme
config/README.md` rewrites it; a test keeps the file in step). Snakemake's validate() reads
the same file (SCHEMA_PATH). JSON, not YAML: the standard library reads it in well under a
millisecond, and every job imports this module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Package data (pyproject.toml), so that an installed package finds it too.
SCHEMA_PATH = Path(__file__).with_name("config.schema.json")
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
PROPERTIES: dict[str, dict] = SCHEMA["properties"]
# Keys with a default are the plain options (flags, API keywords); the others (folders,
# grids, datasets) have a syntax of their own in each interface.
DEFAULTS = {key: spec["default"] for key, spec in PROPERTIES.items() if "default" in spec}
TABLE_HEADER = "| key | type, default | meaning |\n| --- | --- | --- |\n"
TABLE_NOTE = (
    "<!-- generated from src/nii_resample/config.schema.json by "
    "`python -m nii_resample.options --config-readme config/README.md`: edit the schema -->\n"
)


def choices(key: str) -> tuple:
    """The allowed values of an enum key, e.g. choices("engine") == ("fast", "itk")."""
    return tuple(PROPERTIES[key]["enum"])


def flag(key: str) -> str:
    """The command-line flag of a key: --key-with-dashes."""
    return "--" + key.replace("_", "-")


def _checked_word(key: str):
    """argparse type of an enum flag: the config's own coercion and check (settings), so that
    a bad word gets the config's sentence, not argparse's choices message."""
    def check(text: str):
        from .errors import ConfigError
        from .settings import parse_value

        try:
            return parse_value(key, text)
        except ConfigError as problem:
            raise argparse.ArgumentTypeError(str(problem)) from None

    return check


def add_option_flags(parser: argparse.ArgumentParser, keys) -> None:
    """One flag per key, from its schema entry: help = title, choices = enum (checked by the
    config's check), a list as zero or more words, a boolean as --flag / --no-flag. Values
    stay text: the API coerces them to the schema's types and validates them with the rest
    of the configuration (settings.normalise_config), one path for every interface."""
    for key in keys:
        spec, default = PROPERTIES[key], DEFAULTS[key]
        spec = {**spec, "title": spec["title"].replace("%", "%%")}  # argparse %-formats help
        if "oneOf" in spec:  # a word (auto, off) or a list of them (cases' patterns)
            parser.add_argument(flag(key), nargs="+", default=default, metavar="WORD",
                                help=f"{spec['title']} (default: %(default)s)")
        elif spec["type"] == "boolean":
            both = parser.add_mutually_exclusive_group()
            on, off = spec["title"], f"the opposite of {flag(key)}"
            on, off = (f"{on} (default)", off) if default else (on, f"{off} (default)")
            both.add_argument(flag(key), dest=key, action="store_true", help=on)
            both.add_argument(f"--no-{flag(key)[2:]}", dest=key, action="store_false", help=off)
            parser.set_defaults(**{key: default})
        elif spec["type"] == "array":
            parser.add_argument(flag(key), nargs="*", default=list(default), help=spec["title"])
        else:
            parser.add_argument(flag(key), default=default, choices=spec.get("enum"),
                                type=_checked_word(key) if "enum" in spec else None,
                                help=f"{spec['title']} (default: %(default)s)")


def _value_text(value) -> str:
    """A value as YAML shows it: true, [], case."""
    return value if isinstance(value, str) else json.dumps(value)


def type_text(key: str) -> str:
    """The table's "type, default" cell: x-doc-type where the schema's words would say too
    little, else from type, enum and bounds; then the default."""
    spec = PROPERTIES[key]
    text = spec.get("x-doc-type")
    if text is None and "enum" in spec:
        names = [f"`{value}`" for value in spec["enum"]]
        text = ", ".join(names[:-1]) + " or " + names[-1]
    elif text is None and spec["type"] == "integer" and "maximum" in spec:
        text = f"integer {spec['minimum']}-{spec['maximum']}"
    elif text is None and spec["type"] == "integer" and "minimum" in spec:
        text = f"integer >= {spec['minimum']}"
    elif text is None:
        text = spec["type"]
    if key in DEFAULTS:
        text += f", default `{_value_text(DEFAULTS[key])}`"
    return text


def config_readme_table() -> str:
    """config/README.md's table of every key, in the schema's order."""
    rows = [
        f"| `{key}` | {type_text(key)} | {spec['description']} |\n"
        for key, spec in PROPERTIES.items()
    ]
    return TABLE_NOTE + TABLE_HEADER + "".join(rows)


def replace_table(text: str) -> str:
    """`text` (config/README.md) with its key table, the note above it included, replaced by
    the generated one; the rest is kept."""
    lines = text.splitlines(keepends=True)
    header = TABLE_HEADER.splitlines(keepends=True)[0]
    if header not in lines:
        raise ValueError(f"no table starting with {header.strip()!r} found")
    start = lines.index(header)
    if start and lines[start - 1].startswith("<!-- generated"):
        start -= 1
    end = start + 1
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "".join(lines[:start]) + config_readme_table() + "".join(lines[end:])


def options_doc(keys) -> str:
    """The API docstring's option list: each key's title and default, indented as a
    docstring's body."""
    import textwrap  # only the API needs it: the jobs import this module too

    items = [f"{key}: {PROPERTIES[key]['title']} Default {DEFAULTS[key]!r}." for key in keys]
    return "".join(
        textwrap.fill(item, 92, initial_indent="    ", subsequent_indent="        ") + "\n"
        for item in items
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nii_resample.options",
                                     description="Documents derived from the config schema.")
    parser.add_argument("--config-readme", nargs="?", const="-", metavar="PATH", required=True,
                        help="print config/README.md's key table, or rewrite it in PATH")
    args = parser.parse_args(argv)
    if args.config_readme == "-":
        sys.stdout.write(config_readme_table())
        return 0
    path = Path(args.config_readme)
    partial = path.with_name(f".{path.name}.partial")  # never a half-written README
    partial.write_text(replace_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    os.replace(partial, path)
    print(f"{path}: key table rewritten from {SCHEMA_PATH.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
