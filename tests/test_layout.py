"""The repository has the standard layout, and the README's "Layout of this repository" names
every file a newcomer looks for: each rule file, profile, rule script and package module."""

import re
import subprocess

from support import REPO

README = (REPO / "README.md").read_text()
LAYOUT = README.split("## Layout of this repository\n", 1)[1].split("\n## ", 1)[0]


def _tracked(folder: str) -> list[str]:
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", folder], capture_output=True,
                            text=True, check=True).stdout.split()
    return listed or sorted(str(p.relative_to(REPO)) for p in (REPO / folder).rglob("*") if p.is_file())


def _named(path: str) -> bool:
    """A file is named by its full path, or by its name in the indented list under its folder."""
    return path in LAYOUT or re.search(rf"(^|[\s,]){re.escape(path.rsplit('/', 1)[-1])}([\s,]|$)",
                                       LAYOUT, re.M) is not None


def test_layout_section_names_every_rule_file_profile_script_and_module():
    wanted = [p for p in _tracked("workflow/rules") + _tracked("profiles") + _tracked("scripts")
              + _tracked("src/nii_resample") if "__pycache__" not in p]
    assert any(p.endswith("snakemake_compat.py") for p in wanted)
    missing = [p for p in wanted if not _named(p)]
    assert not missing, f"README's layout section does not name: {missing}"


def test_the_standard_layout():
    # The package in src/ (src layout), scripts/ only what the rules run, one profiles root.
    assert (REPO / "src" / "nii_resample" / "__init__.py").exists()
    assert 'package-dir = { "" = "src" }' in (REPO / "pyproject.toml").read_text()
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    for script in (REPO / "scripts").iterdir():
        if script.suffix == ".py":
            assert f"scripts/{script.name}" in rules or f'"{script.name}"' in rules, script.name
    assert not _tracked("scripts/nii_resample")
    assert not _tracked("workflow/profiles")
    assert {p.name for p in (REPO / "profiles").iterdir()} == {"default", "local", "slurm"}
    # common.smk is the plan; the runtime plumbing is beside it.
    assert len((REPO / "workflow/rules/common.smk").read_text().splitlines()) < 300
