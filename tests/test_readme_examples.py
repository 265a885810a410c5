"""The README's Python API and command-line examples run as written (on the demo data)."""

import re
import subprocess
import sys

import nibabel as nib

from support import REPO

README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _demo_workdir(tmp_path):
    (tmp_path / "workflow" / "resources").mkdir(parents=True)
    (tmp_path / "workflow" / "resources" / "demo").symlink_to(REPO / "workflow/resources/demo")
    return tmp_path


def test_python_api_example(tmp_path):
    code = re.findall(r"```python\n(.*?)```", _section("Python API"), re.S)[0]
    result = subprocess.run([sys.executable, "-c", code], cwd=_demo_workdir(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "4 volumes written" in result.stdout and "Resampling summary" in result.stdout
    seg = nib.load(tmp_path / "results/api_demo/ct_chest_seg_resampled.nii.gz")
    assert seg.shape == (64, 64, 48)


def test_command_line_example(tmp_path):
    command = re.findall(r"```bash\n(python -m nii_resample .*?)\n```", _section("Command line"))[0]
    result = subprocess.run(command, shell=True, cwd=_demo_workdir(tmp_path), capture_output=True,
                            text=True, timeout=300, executable="/bin/bash",
                            env={"PATH": f"{sys.prefix}/bin:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "results/cli_demo").glob("*_resampled.nii.gz"))) == 4


def _run_readme_command(command, workdir, timeout=300):
    """A README `snakemake ...` command, run as written on the demo data in `workdir` (the
    repository's Snakefile and config, as from the repository folder)."""
    import os
    import shutil

    (workdir / "config").mkdir(exist_ok=True)
    shutil.copy(REPO / "config" / "config.yaml", workdir / "config" / "config.yaml")
    command = command.replace("snakemake", f"snakemake --snakefile {REPO / 'Snakefile'}", 1)
    return subprocess.run(command, shell=True, cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, executable="/bin/bash",
                          env={**os.environ, "PATH": f"{sys.prefix}/bin:{os.environ['PATH']}"})


def test_bad_input_sample_error_is_what_the_user_sees(tmp_path):
    sample = re.findall(r"```\n(\$ snakemake .*?)```", _section("Bad input"), re.S)[0]
    command, *expected = sample.strip().splitlines()
    result = _run_readme_command(command[2:], _demo_workdir(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for line in expected:  # "..." stands for what varies (the path, a line number)
        pattern = ".*?".join(re.escape(part) for part in line.split("..."))
        assert re.search(f"^{pattern}$", output, re.M), (line, output)
    # "shown as typed": the README's second example
    typed = re.search(r"`--config (desired_volume=\S+)` gives `(got [^`]+)`", README)
    result = _run_readme_command(f"snakemake -n --config {typed[1]}", tmp_path)
    assert f"{typed[2]}.\n" in result.stdout + result.stderr


def test_recommended_dry_run_prints_the_volumes_to_resample(tmp_path):
    section = _section("Using it on your data")
    [command] = re.findall(r"```bash\n(snakemake -n .*?)\n```", section)
    result = _run_readme_command(command, _demo_workdir(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"^resample_volume\s+4$", output, re.M), output  # the 4 demo volumes
    assert "This was a dry-run" in output
    assert len(output.splitlines()) < 60, output  # no block per job


def test_recommended_quiet_flag_keeps_the_progress_line(tmp_path):
    section = _section("Using it on your data")
    flag = re.search(r"Progress is\s+Snakemake's own `N of M steps \(x%\) done`, which `([^`]+)`"
                     r"\s+keeps", section)[1]
    result = _run_readme_command(f"snakemake --cores 2 {flag}", _demo_workdir(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"^\d+ of (\d+) steps \(100%\) done$", output, re.M), output
    assert "rule resample_volume:" not in output  # the per-job blocks are gone


def test_profiles_match_what_the_readme_and_config_say():
    import yaml

    local = yaml.safe_load((REPO / "profiles/local/config.yaml").read_text())
    flags = re.search(r"A ready-made local profile sets (`[^\n]+`):", README)[1]
    assert flags == "`--cores all --keep-going --rerun-incomplete`"
    assert (local["cores"], local["keep-going"], local["rerun-incomplete"]) == ("all", True, True)
    slurm_text = (REPO / "profiles/slurm/config.yaml").read_text()
    slurm = yaml.safe_load(slurm_text)
    # one setting for threads on a cluster: the profile's cores (runtime.smk threads_per_volume)
    profile = " ".join(slurm_text.replace("#", " ").split())
    assert "the one setting for threads on the cluster" in profile
    assert "not threads_per_job" in profile and isinstance(slurm["cores"], int)
    assert "On a cluster it is not used" in (REPO / "config/config.yaml").read_text()
    # a failed group: the README and the profile say the same (tests/slurm asserts it)
    cluster = " ".join(_section("Running on a cluster").split())
    for text in (cluster, profile):
        assert "every other volume of that group is still resampled" in text.lower()
        assert "not yet started" not in text
