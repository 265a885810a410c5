"""requirements.txt, environment.yml and the jobs' conda env name the same packages and
minimum versions (conda names differ for a few)."""

import re

import yaml

from support import REPO

CONDA_NAMES = {"isal": "python-isal", "matplotlib": "matplotlib-base", "simpleitk": "simpleitk",
               "pyyaml": "pyyaml"}
TEST_TOOLS = {"pytest", "snakefmt", "nbclient", "nbformat", "ipykernel"}


def pip_requirements():
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, spec = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?(.*)", line).groups()
        name = CONDA_NAMES.get(name.lower(), name.lower())
        found[name] = spec.strip()
    return found


def conda_requirements(path):
    found = {}
    for item in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(item, str) and item not in ("pip", "pygments"):
            name, spec = re.match(r"([A-Za-z0-9_.-]+)(.*)", item).groups()
            if name != "python":
                found[name.lower()] = spec.strip()
    return found


def test_environment_yml_matches_requirements():
    assert conda_requirements(REPO / "environment.yml") == pip_requirements()


def test_job_environment_matches_requirements_without_test_tools():
    expected = {k: v for k, v in pip_requirements().items() if k not in TEST_TOOLS}
    assert conda_requirements(REPO / "workflow/envs/resample.yaml") == expected
