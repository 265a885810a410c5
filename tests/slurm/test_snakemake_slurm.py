"""Run a tiny Snakefile through snakemake-executor-plugin-slurm on the test cluster.

Needs a Python with snakemake >= 8 and snakemake-executor-plugin-slurm: the
one running pytest, or the one named by SNAKEMAKE_SLURM_PYTHON (e.g.
/tmp/venv-slurm/bin/python).  Skipped with the reason otherwise.
"""

from __future__ import annotations

import shutil
import textwrap
import time
from pathlib import Path

import pytest
from cluster import python_with, run_in_own_group

pytestmark = pytest.mark.slurm

PROFILE_DIR = Path(__file__).resolve().parent / "profile"

SNAKEFILE = textwrap.dedent("""
    SAMPLES = [1, 2, 3, 4]

    rule all:
        input: "summary.txt", "broken.txt"

    rule small:
        output: "small/{s}.txt"
        group: "smalls"
        resources: mem_mb=50, runtime=2
        shell: "echo sample {wildcards.s} job=$SLURM_JOB_ID > {output}"

    rule summary:
        input: expand("small/{s}.txt", s=SAMPLES)
        output: "summary.txt"
        shell: "cat {input} > {output}"

    rule broken:
        output: "broken.txt"
        shell: "echo about-to-fail >&2; exit 7"
    """)


@pytest.fixture(scope="module")
def snakemake_python() -> str:
    """A Python with snakemake + the slurm plugins (checked before the cluster starts)."""
    return python_with(
        "snakemake", "snakemake_executor_plugin_slurm", "snakemake_executor_plugin_slurm_jobstep"
    )


def _run(cmd, *, env, cwd, timeout):
    try:
        return run_in_own_group(cmd, env=env, cwd=cwd, timeout=timeout)
    except TimeoutError as error:
        pytest.fail(f"snakemake {error}")


def test_workflow_through_slurm_executor(snakemake_python, slurm_cluster, tmp_path):
    python = snakemake_python
    work = tmp_path / "wf"
    work.mkdir()
    (work / "Snakefile").write_text(SNAKEFILE)
    profile = tmp_path / "profile"
    shutil.copytree(PROFILE_DIR, profile)

    t0 = time.monotonic()
    rc, out = _run(
        [
            python,
            "-m",
            "snakemake",
            "--profile",
            str(profile),
            "--group-components",
            "smalls=4",
        ],
        env=slurm_cluster.env,
        cwd=work,
        timeout=600,
    )
    elapsed = time.monotonic() - t0
    print(f"workflow took {elapsed:.1f}s\n{out[-3000:]}")

    # the failing rule fails the run, --keep-going lets the rest finish
    assert rc != 0, out
    assert (work / "summary.txt").read_text().count("sample") == 4, out
    assert not (work / "broken.txt").exists()
    assert "Error in rule broken" in out
    assert "SLURM status is: 'FAILED'" in out
    logs = work / ".snakemake" / "slurm_logs"
    broken_logs = list((logs / "rule_broken").glob("*.log"))
    assert len(broken_logs) == 1, out
    assert "about-to-fail" in broken_logs[0].read_text()
    assert str(broken_logs[0]) in out
    # the four group members went into a single sbatch job
    assert len(list((logs / "group_smalls_small").glob("*.log"))) == 1, out
    jobs = {
        line.split("job=")[1]
        for line in (work / "summary.txt").read_text().splitlines()
    }
    assert len(jobs) == 1, jobs
