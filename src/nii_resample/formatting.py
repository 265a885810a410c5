"""How numbers are written in manifests, logs, messages and pictures: one function per kind,
so that every file that shows a size or a spacing shows it the same way."""

from __future__ import annotations

import time


def size_text(shape, separator: str = "x") -> str:
    """Voxel counts: `20x18x16` (the manifest's sizes, messages); `separator` for pictures."""
    return separator.join(str(int(n)) for n in shape)


def exact_text(values) -> str:
    """Numbers exactly, comma-separated (the manifest's spacings, origins and direction):
    Python's shortest repr that reads back the same float, `2.0` for a whole number."""
    return ",".join(repr(float(v)) if not float(v).is_integer() else str(float(v)) for v in values)


def number_text(value, digits: int = 6) -> str:
    """One number to `digits` significant digits (format `g`: `1.5`, `3.12346`, `1e-07`)."""
    return f"{float(value):.{digits}g}"


def numbers_text(values, digits: int = 6, separator: str = ",") -> str:
    """Numbers to `digits` significant digits, joined by `separator`: `1,1.1,2`."""
    return separator.join(number_text(value, digits) for value in values)


def decimals_text(text: str, decimals: int) -> str:
    """A comma-separated vector with at most `decimals` decimals and no trailing zeros
    (`0.7, 0.9, 3.3`); text that is not numbers as it is."""
    try:
        return ", ".join(
            f"{float(v):.{decimals}f}".rstrip("0").rstrip(".") for v in text.split(",")
        )
    except ValueError:
        return text


def seconds_since(started: float) -> float:
    """Seconds since `started` (time.perf_counter()), to the millisecond: a record's `seconds`."""
    return round(time.perf_counter() - started, 3)
