"""Every argparse path of the three command lines (`python -m nii_resample`, the installed
`nii-resample` command, `python -m nii_resample volume`): help exits 0 and lists X Y Z and the options;
a usage error exits 2 with the usage and a one-line error, never a traceback."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

README = (REPO / "README.md").read_text()
# The options the README's "Command line" section promises `--help` lists.
CLI_OPTIONS = re.findall(r"`(--[a-z-]+)`", README.split("`python -m nii_resample --help` lists", 1)[1]
                         .split(")", 1)[0])
SCRIPT_OPTIONS = ["--engine", "--interpolation", "--no-antialias", "--label-map",
                  "--label-interpolation", "--compression-level", "--threads", "--log",
                  "--record", "--failure-record"]
CONSOLE_COMMAND = Path(sys.executable).parent / "nii-resample"
PROGRAMS = {
    "python -m nii_resample": ([sys.executable, "-m", "nii_resample"], CLI_OPTIONS),
    "nii-resample": ([str(CONSOLE_COMMAND)], CLI_OPTIONS),
    "python -m nii_resample volume": ([sys.executable, "-m", "nii_resample", "volume"],
                                      SCRIPT_OPTIONS),
}
USAGE_ERRORS = {
    "no arguments": ([], "the following arguments are required: "),
    "missing Z": (["in", "out", "64", "64"], "the following arguments are required: Z"),
    "extra argument": (["in", "out", "64", "64", "64", "65"], "unrecognized arguments: 65"),
    "not a number": (["in", "out", "64", "abc", "64"],
                     "argument Y: must be a positive integer, got 'abc'"),
    "zero": (["in", "out", "0", "64", "64"], "argument X: must be a positive integer, got '0'"),
    "negative": (["in", "out", "64", "64", "-3"], "argument Z: must be a positive integer"),
}


def _run(program: str, *words: str) -> subprocess.CompletedProcess:
    command, _ = PROGRAMS[program]
    if program == "nii-resample":
        assert CONSOLE_COMMAND.exists(), f"{CONSOLE_COMMAND} missing: pip install -e . installs it"
    return subprocess.run(
        [*command, *words], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_lists_x_y_z_and_every_option(program):
    assert "--saving-mode" in CLI_OPTIONS and "--no-progress" in CLI_OPTIONS  # README read
    result = _run(program, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: ")
    assert re.search(r"\bX Y Z\b", result.stdout), result.stdout
    for axis in "XYZ":
        assert re.search(rf"^  {axis}\s+\S", result.stdout, re.M), result.stdout
    for option in PROGRAMS[program][1]:
        assert option in result.stdout, option


@pytest.mark.parametrize("case", USAGE_ERRORS)
@pytest.mark.parametrize("program", PROGRAMS)
def test_usage_errors_exit_2_with_usage_and_one_line(program, case):
    words, message = USAGE_ERRORS[case]
    result = _run(program, *words)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("usage: ")
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0] == result.stderr.splitlines()[-1], result.stderr
    assert ": error: " + message in errors[0], result.stderr


@pytest.mark.parametrize("program", ["python -m nii_resample", "nii-resample"])
def test_cores_must_be_positive(program):
    result = _run(program, "in", "out", "8", "8", "8", "--cores", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        "error: argument --cores: must be a positive integer, got '0'")


def test_installed_command_names_itself_in_usage():
    result = _run("nii-resample")
    assert result.stderr.startswith("usage: nii-resample ")
