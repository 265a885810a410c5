"""Smoke test: start a single-node SLURM cluster and run one sbatch job."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cluster import SlurmCluster, SlurmUnavailable, single_node_slurm

pytestmark = pytest.mark.slurm


def test_sbatch_job_completes(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    jobid = slurm_cluster.sbatch_wrap(
        "echo hello-from-slurm; echo $SLURM_JOB_ID",
        output=out,
        extra_args=["--mem=50", "--time=1", "--cpus-per-task=1"],
    )
    state = slurm_cluster.wait_for_job(jobid, timeout=120)
    assert state == "COMPLETED", slurm_cluster.daemon_logs()
    text = out.read_text()
    assert "hello-from-slurm" in text
    assert jobid in text


def test_failing_job_is_failed(slurm_cluster, tmp_path):
    jobid = slurm_cluster.sbatch_wrap("exit 3", output=tmp_path / "fail.out")
    assert slurm_cluster.wait_for_job(jobid, timeout=120) == "FAILED"
    info = slurm_cluster.run(["scontrol", "show", "job", jobid]).stdout
    assert "ExitCode=3:0" in info


def test_memory_request_beyond_node_is_rejected(slurm_cluster):
    too_much = slurm_cluster.real_memory_mb + 1000
    proc = slurm_cluster.run(
        ["sbatch", f"--mem={too_much}", "--wrap", "true"], check=False
    )
    assert proc.returncode != 0
    assert "Memory specification can not be satisfied" in proc.stderr


def test_context_manager_stops_its_daemons(tmp_path):
    """single_node_slurm yields an env and stops exactly its daemons on exit."""
    pids = {}
    try:
        with single_node_slurm(tmp_path) as env:
            conf_dir = Path(env["SLURM_CONF"]).parent.parent
            for name in ("slurmctld", "slurmd"):
                pids[name] = int((conf_dir / f"{name}.pid").read_text())
            proc = subprocess.run(
                ["sinfo", "-h", "-o", "%P %t"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert proc.stdout.split() == ["debug*", "idle"], proc
    except SlurmUnavailable as exc:
        pytest.skip(f"SLURM unavailable: {exc}")
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) still running"
    proc = subprocess.run(
        ["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "DOWN" in proc.stdout


def test_broken_config_raises_with_reason(tmp_path):
    """A daemon that cannot start gives SlurmUnavailable with its log, no hang."""
    cluster = SlurmCluster(tmp_path, extra_conf=["NoSuchOption=1"], start_timeout=30)
    with pytest.raises(SlurmUnavailable) as info:
        cluster.start()
    if "slurmctld" not in str(info.value):  # e.g. not root / no packages
        pytest.skip(f"SLURM unavailable: {info.value}")
    assert "NoSuchOption" in str(info.value)
    assert cluster.pids == {}
