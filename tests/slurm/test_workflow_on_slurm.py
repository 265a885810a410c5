"""This workflow on a real (single-node, throw-away) SLURM cluster through the shipped profile.

`snakemake --profile profiles/slurm` plus only what the test cluster needs on the
command line (no slurmdbd, so job status from squeue, and fast polling; its partition). Needs a
Python with snakemake, snakemake-executor-plugin-slurm and this workflow's dependencies
(`pip install -r requirements-slurm.txt`): the one running pytest or SNAKEMAKE_SLURM_PYTHON;
skipped with the reason otherwise. About 80-110 s.
"""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cluster import python_with, run_in_own_group

from support import (
    REPO,
    affine_from,
    fov_corners,
    rotation,
    smooth_volume,
    write_config,
    write_nifti,
)

pytestmark = pytest.mark.slurm

PROFILE = REPO / "profiles" / "slurm"
DESIRED = (10, 9, 6)
GOOD = ("vol_a", "vol_b", "vol_c")
BAD = "vol_bad"
# What the test cluster needs beyond the shipped profile (tests/slurm/NOTES.md):
# fmt: off
TEST_CLUSTER_ARGS = [
    "--slurm-status-command", "squeue",  # no slurmdbd: sacct fails and the run would wait forever
    "--slurm-init-seconds-before-status-checks", "1",  # poll every second, not every 40 s
    "--seconds-between-status-checks", "1",
    "--jobs", "4",
    # two volumes per SLURM job, so that 4 volumes become 2 jobs running side by side on the
    # 2-CPU node (the shipped 20 would put them all in one job, run one after another)
    "--group-components", "resample=2",
    "--default-resources", "slurm_partition=debug", "runtime=5",  # keep last: it takes a list
]
# fmt: on


@pytest.fixture(scope="module")
def snakemake_python() -> str:
    """A Python with snakemake, the slurm plugins and the workflow's packages (checked first)."""
    return python_with(
        "snakemake", "snakemake_executor_plugin_slurm", "snakemake_executor_plugin_slurm_jobstep",
        "nibabel", "SimpleITK", "nii_resample"
    )


def _snakemake(python, workdir, env, timeout=240, cluster_args=TEST_CLUSTER_ARGS):
    """Run snakemake on this repo through the shipped profile; kill its process group on timeout.

    With a failing status command the SLURM plugin waits forever and ignores SIGTERM.
    """
    cmd = [
        python, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--configfile", "config.yaml",
        "--profile", str(PROFILE),
        *cluster_args,
    ]  # fmt: skip
    started = time.monotonic()
    try:
        returncode, out = run_in_own_group(
            cmd, env={**env, "PYTHONDONTWRITEBYTECODE": "1"}, cwd=workdir, timeout=timeout
        )
    except TimeoutError as error:
        pytest.fail(f"snakemake {error}")
    print(f"--- snakemake exit {returncode} after {time.monotonic() - started:.1f}s")
    return returncode, out


def _job_stats(out: str) -> dict:
    """The 'Job stats' table Snakemake prints before running: {rule: count}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    stats = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


def _read_tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _slurm_jobs(cluster) -> dict:
    """{slurm job id: state} of every job the test cluster still remembers (MinJobAge=300 s)."""
    listing = cluster.run(["squeue", "--states=all", "-h", "-o", "%i|%T"], check=False).stdout
    return dict(line.split("|", 1) for line in listing.split())


def _make_inputs(work: Path) -> dict:
    inputs = {}
    for index, name in enumerate(GOOD):
        affine = affine_from((0.8, 1.1, 2.5), (-20.0 + index, 15.5, 40.0), rotation(10 * index, 2))
        path = write_nifti(
            work / "in" / f"{name}.nii.gz", smooth_volume((20, 18, 12), seed=index), affine
        )
        inputs[name] = (path, affine, (20, 18, 12))
    # a truncated gzip stream: cut a valid volume in half
    data = write_nifti(
        work / "tmp.nii.gz", smooth_volume((20, 18, 12), seed=9), np.eye(4)
    ).read_bytes()
    (work / "tmp.nii.gz").unlink()
    (work / "in" / f"{BAD}.nii.gz").write_bytes(data[: len(data) // 2])
    write_config(work, nii_folder="in", output_path="out", desired_volume=list(DESIRED), qc=False)
    return inputs


def _check_output(work: Path, name: str, affine, shape) -> None:
    image = nib.load(work / "out" / name / f"{name}_resampled.nii.gz")
    assert image.shape == DESIRED
    assert image.get_data_dtype() == np.int16
    spacing = np.linalg.norm(image.affine[:3, :3], axis=0)
    expected = np.linalg.norm(affine[:3, :3], axis=0) * np.array(shape) / np.array(DESIRED)
    np.testing.assert_allclose(spacing, expected, rtol=1e-5)
    # the field of view (all 8 outer corners, mm) is unchanged
    np.testing.assert_allclose(
        fov_corners(image.affine, DESIRED), fov_corners(affine, shape), atol=1e-3
    )


def test_workflow_on_slurm_with_a_bad_volume_then_resume(snakemake_python, slurm_cluster, tmp_path):
    work = tmp_path / "work"
    inputs = _make_inputs(work)

    # ---- run 1: three good volumes and a truncated one, bundled two per SLURM job -------
    earlier_jobs = set(_slurm_jobs(slurm_cluster))
    rc, out = _snakemake(snakemake_python, work, slurm_cluster.env)
    print(out[-4000:])
    assert rc != 0, out
    assert _job_stats(out)["resample_volume"] == 4, out

    # 4 volumes became 2 SLURM jobs; the one holding the bad volume FAILED
    jobs = {
        job: state for job, state in _slurm_jobs(slurm_cluster).items() if job not in earlier_jobs
    }
    assert len(jobs) == 2, jobs
    assert sorted(jobs.values()) == ["COMPLETED", "FAILED"], jobs
    failed_id = next(job for job, state in jobs.items() if state == "FAILED")
    assert "Error in group resample" in out, out

    # the SLURM log of the failed job is kept, named on the console, and holds the reason
    slurm_log = next((work / ".snakemake" / "slurm_logs").glob(f"group_resample*/{failed_id}.log"))
    assert str(slurm_log) in out
    log_text = slurm_log.read_text()
    assert f"{BAD}.nii.gz: the file is truncated" in log_text

    # failures.tsv: the bad volume with its one-line reason. A good volume that shared the bad
    # volume's SLURM job and had not run would be listed as "did not finish" (and run next
    # time); the workflow makes the group's inner Snakemake keep going, so there is none.
    failures = {
        Path(row["input_path"]).name: row for row in _read_tsv(work / "out" / "failures.tsv")
    }
    assert failures[f"{BAD}.nii.gz"]["reason"].startswith(f"{BAD}.nii.gz: the file is truncated")
    assert "\n" not in failures[f"{BAD}.nii.gz"]["reason"]
    assert failures[f"{BAD}.nii.gz"]["log"].endswith(f"logs/resample_volume/{BAD}.log")
    skipped = {name.removesuffix(".nii.gz") for name in failures} - {BAD}
    for name in skipped:
        assert failures[f"{name}.nii.gz"]["reason"].startswith(f"{name}.nii.gz: the job did not finish")
        assert f"prefix={name}" in log_text, f"{name} was not in the failed SLURM job"
    # The workflow lets a group job keep going past a bad volume (runtime.smk), so every good
    # volume of the failed group is done too.
    assert not skipped, failures
    assert "volumes failed (listed in out/failures.tsv)" in out

    # every good volume that ran is kept (not removed as "output of a failed job")
    done = [name for name in GOOD if name not in skipped]
    assert len(done) >= 2
    for name in done:
        _check_output(work, name, *inputs[name][1:])
    assert not (work / "out" / BAD).exists()
    # the manifest of a failed run: every volume that was resampled, and the bad one failed
    manifest = {Path(row["input_path"]).name: row for row in _read_tsv(work / "out" / "manifest.tsv")}
    assert manifest[f"{BAD}.nii.gz"]["status"] == "failed"
    assert manifest[f"{BAD}.nii.gz"]["reason"] == failures[f"{BAD}.nii.gz"]["reason"]
    assert all(manifest[f"{name}.nii.gz"]["status"] == "ok" for name in done)
    mtimes = {
        name: (work / "out" / name / f"{name}_resampled.nii.gz").stat().st_mtime_ns for name in done
    }

    # ---- run 2: the bad file is removed; only what is missing runs ----------------------
    (work / "in" / f"{BAD}.nii.gz").unlink()
    rc, out = _snakemake(snakemake_python, work, slurm_cluster.env)
    print(out[-3000:])
    assert rc == 0, out
    stats = _job_stats(out)
    assert stats.get("resample_volume", 0) == len(skipped), stats
    assert stats["manifest"] == 1, stats
    for name in done:  # not redone
        assert (work / "out" / name / f"{name}_resampled.nii.gz").stat().st_mtime_ns == mtimes[name]
    for name in GOOD:
        _check_output(work, name, *inputs[name][1:])
    manifest = _read_tsv(work / "out" / "manifest.tsv")
    assert [Path(row["input_path"]).name for row in manifest] == [f"{name}.nii.gz" for name in GOOD]
    assert {row["status"] for row in manifest} == {"ok"}
    assert {row["new_size"] for row in manifest} == {"x".join(map(str, DESIRED))}
    assert not (work / "out" / "failures.tsv").exists()


def test_generic_cluster_plugin_submits_through_sbatch(snakemake_python, slurm_cluster, tmp_path):
    """The README's example for other schedulers: any submit command, here sbatch."""
    probe = subprocess.run(
        [snakemake_python, "-c", "import snakemake_executor_plugin_cluster_generic"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"{snakemake_python} lacks snakemake-executor-plugin-cluster-generic")
    work = tmp_path / "work"
    inputs = _make_inputs(work)
    (work / "in" / f"{GOOD[2]}.nii.gz").unlink()
    (work / ".snakemake" / "cluster_logs").mkdir(parents=True)
    submit = (
        "sbatch --parsable --partition=debug --cpus-per-task={threads} --mem={resources.mem_mb}"
        " --time={resources.runtime} --job-name=smk-{rule} --output=.snakemake/cluster_logs/%j.log"
    )
    cmd = [
        snakemake_python, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--configfile", "config.yaml",
        "--executor", "cluster-generic",
        "--cluster-generic-submit-cmd", submit,
        "--jobs", "4", "--keep-going", "--latency-wait", "10",
        "--default-resources", "runtime=5",
    ]  # fmt: skip
    earlier_jobs = set(_slurm_jobs(slurm_cluster))
    try:
        returncode, out = run_in_own_group(
            cmd, env={**slurm_cluster.env, "PYTHONDONTWRITEBYTECODE": "1"}, cwd=work, timeout=180
        )
    except TimeoutError as error:
        pytest.fail(f"snakemake {error}")
    print(out[-3000:])
    assert returncode != 0, out  # the bad volume fails; --keep-going finishes the others
    jobs = {
        job: state for job, state in _slurm_jobs(slurm_cluster).items() if job not in earlier_jobs
    }
    assert len(jobs) == 3, jobs  # one sbatch per volume (without the profile, one volume per group)
    assert sorted(jobs.values()) == ["COMPLETED", "COMPLETED", "FAILED"], jobs
    for name in GOOD[:2]:
        _check_output(work, name, *inputs[name][1:])
    failures = _read_tsv(work / "out" / "failures.tsv")
    assert [Path(row["input_path"]).name for row in failures] == [f"{BAD}.nii.gz"]
    assert "the file is truncated" in failures[0]["reason"]


# Three volumes per SLURM job (6 volumes: 2 jobs side by side), and the SLURM log of every job
# kept (it names the job's volumes).
THREE_PER_JOB = [
    "--slurm-keep-successful-logs",
    *(arg.replace("resample=2", "resample=3") for arg in TEST_CLUSTER_ARGS),
]
# The first line of a volume's log when a resident worker ran it (nii_resample.workflow_worker).
RUN_BY = re.compile(r"nii-resample: run by resident worker (\d+) \(host (.+)\)")


def _proc(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int:
    stat = _proc(pid, "stat")
    return int(stat.rsplit(")", 1)[1].split()[1]) if stat else 0


def _environ(pid: int) -> dict:
    return dict(item.split("=", 1) for item in _proc(pid, "environ").split("\0") if "=" in item)


def _ancestors(pid: int) -> list[str]:
    """The command names of `pid`'s ancestors, nearest first."""
    names = []
    while pid > 1:
        pid = _parent(pid)
        names.append(_proc(pid, "comm").strip())
    return names


def _worker_socket(pid: int) -> str:
    """A worker's socket path: the word after the module in python -P -m
    nii_resample.workflow_worker SOCKET FD."""
    words = _proc(pid, "cmdline").split("\0")
    return words[words.index("nii_resample.workflow_worker") + 1]


def _live_workers() -> list[int]:
    """Live resident workers (python -m nii_resample.workflow_worker), not their forked children."""
    named = [int(entry.name) for entry in Path("/proc").iterdir()
             if entry.name.isdigit() and "nii_resample.workflow_worker" in _proc(int(entry.name), "cmdline")]
    return [pid for pid in named if _parent(pid) not in named]


def _two_completed_jobs(cluster, earlier_jobs, work) -> dict:
    """The run's SLURM jobs, two and both COMPLETED: {job id: its SLURM log (it names the
    volumes it ran; kept with --slurm-keep-successful-logs)}."""
    jobs = {job: state for job, state in _slurm_jobs(cluster).items() if job not in earlier_jobs}
    assert sorted(jobs.values()) == ["COMPLETED", "COMPLETED"], jobs
    logs = {}
    for job in jobs:
        (slurm_log,) = (work / ".snakemake" / "slurm_logs").glob(f"group_resample*/{job}.log")
        logs[job] = slurm_log.read_text()
    return logs


class WorkerWatch(threading.Thread):
    """Notes, 10 times a second while a run goes on, every resident worker alive (its socket,
    the SLURM job it was started in, its owner and where that owner runs) and the outer
    snakemake (this test's child): a worker ends with its owner, so it must be seen alive."""

    def __init__(self):
        super().__init__(daemon=True)
        self.workers: dict[int, dict] = {}
        self.outer: set[int] = set()
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.1):
            for pid in _live_workers():
                if pid in self.workers:
                    self.workers[pid]["last_seen"] = time.monotonic()
                    continue
                env = _environ(pid)
                owner = int(env.get("NII_RESAMPLE_WORKER_OWNER", "0 0").split()[0])
                self.workers[pid] = {
                    "socket": _worker_socket(pid),
                    "slurm_job": env.get("SLURM_JOB_ID"),
                    "owner": owner,
                    "owner_slurm_job": _environ(owner).get("SLURM_JOB_ID"),
                    "slurm_step": env.get("SLURM_STEP_ID"),
                    "owner_slurm_step": _environ(owner).get("SLURM_STEP_ID"),
                    "owner_command": _proc(owner, "cmdline").split("\0"),
                    "owner_ancestors": _ancestors(owner),
                    "last_seen": time.monotonic(),
                }
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and _parent(int(entry.name)) == os.getpid():
                    if "snakemake" in _proc(int(entry.name), "cmdline"):
                        self.outer.add(int(entry.name))


def test_each_slurm_job_runs_its_volumes_in_one_resident_worker_of_its_own(
    snakemake_python, slurm_cluster, tmp_path
):
    """Issue 14: a worker lives inside the SLURM job that uses it. Six volumes, three per
    SLURM job: each job's volumes are run by one worker, started inside that job and owned
    by the Snakemake running there (not by the outer one), and none outlives the run."""
    work = tmp_path / "work"
    names = [f"vol_{index}" for index in range(6)]
    for index, name in enumerate(names):
        write_nifti(work / "in" / f"{name}.nii.gz", smooth_volume((20, 18, 12), seed=index),
                    affine_from((0.8, 1.1, 2.5)))
    write_config(work, nii_folder="in", output_path="out", desired_volume=list(DESIRED), qc=False)

    earlier_jobs = set(_slurm_jobs(slurm_cluster))
    watch = WorkerWatch()
    watch.start()
    started = time.monotonic()
    try:
        rc, out = _snakemake(snakemake_python, work, slurm_cluster.env, cluster_args=THREE_PER_JOB)
    finally:
        ended = time.monotonic()
        watch.done.set()
        watch.join()
    print(out[-3000:])
    assert rc == 0, out
    # Which volumes each SLURM job ran, and which worker ran each volume (the first line of
    # the volume's log).
    logs = _two_completed_jobs(slurm_cluster, earlier_jobs, work)
    jobs = set(logs)
    volumes_of = {job: {name for name in names if f"prefix={name}" in text} for job, text in logs.items()}
    assert sorted(map(len, volumes_of.values())) == [3, 3], volumes_of
    assert set.union(*volumes_of.values()) == set(names)
    run_by = {}
    for name in names:
        first = (work / "out" / "logs" / "resample_volume" / f"{name}.log").read_text().splitlines()[0]
        named = RUN_BY.fullmatch(first)
        assert named, f"{name} did not run in a resident worker: {first}"
        assert named[2] == socket.gethostname()
        run_by[name] = int(named[1])

    # (a) one worker per SLURM job: all of a job's volumes, and no other job's
    worker_of = {}
    for job, volumes in volumes_of.items():
        pids = {run_by[name] for name in volumes}
        assert len(pids) == 1, f"SLURM job {job} used several workers: {pids}"
        worker_of[job] = pids.pop()
    assert len(set(worker_of.values())) == 2, worker_of
    started_in_jobs = {pid for pid, seen in watch.workers.items() if seen["slurm_job"] in jobs}
    assert started_in_jobs == set(worker_of.values()), watch.workers

    # (b) each worker was started inside its SLURM job (it detaches, so its parent is init:
    # its environment names the job) and is owned by the Snakemake running that job (its
    # folder is that Snakemake's), a process of the job: not the outer snakemake
    assert len(watch.outer) == 1, watch.outer
    for job, pid in worker_of.items():
        assert pid in watch.workers, f"worker {pid} was never seen alive: {watch.workers}"
        seen = watch.workers[pid]
        assert seen["slurm_job"] == job, seen
        assert seen["owner"] not in watch.outer, seen
        assert seen["owner_slurm_job"] == job, seen
        # started by the job's own Snakemake while it planned (runtime.smk,
        # start_resident_worker_early), in its step, not in the srun step of a volume (with
        # cgroup process tracking, SLURM ends a step's processes with the step)
        assert seen["slurm_step"] == seen["owner_slurm_step"], seen
        assert "slurmstepd" in seen["owner_ancestors"], seen
        # the Snakemake of the job itself, not the one it runs for a single volume (srun)
        assert "slurm-jobstep" in seen["owner_command"], seen
        folder = Path(seen["socket"]).parent
        assert folder.name.startswith(f"{socket.gethostname()}-{seen['owner']}-"), seen

    # (d) the outer snakemake submits and runs no volume here: the worker it starts while it
    # plans (runtime.smk, start_resident_worker_early) is dismissed then, not kept for the run
    head = [seen for seen in watch.workers.values() if seen["owner"] in watch.outer]
    assert all(seen["last_seen"] < ended - 10 for seen in head), head
    # (e) a volume's threads are the CPUs of its SLURM job (the profile's `cores: 1`), not
    # those of the node (2) that the Snakemake running one volume under srun (--cores all) has
    for name in names:
        text = (work / "out" / "logs" / "resample_volume" / f"{name}.log").read_text()
        assert "threads=1)" in text, text

    # (c) nothing of these SLURM jobs outlives the run by more than 2 s: no worker process,
    # no worker folder (other runs on this machine may have theirs)
    def left_behind():
        alive = [pid for pid in _live_workers() if _environ(pid).get("SLURM_JOB_ID") in jobs]
        return alive + [folder for folder in folders if folder.exists()]

    ours = [watch.workers[pid] for pid in started_in_jobs]
    folders = {Path(seen["socket"]).parent for seen in ours}
    while left_behind() and time.monotonic() < ended + 2.0:
        time.sleep(0.05)
    assert not left_behind(), "a resident worker or its folder outlived the run"
    runs = Path(tempfile.gettempdir()) / f"nii-resample-{os.getuid()}"
    owners = {seen["owner"] for seen in ours}
    left = [f for f in runs.glob("*") if any(f"-{owner}-" in f.name for owner in owners)]
    assert not left, left
    print(f"--- workers {worker_of} (SLURM job: pid) in {sorted(map(str, folders))}; "
          f"run {ended - started:.1f}s")


def test_several_grids_are_bundled_by_volume(snakemake_python, slurm_cluster, tmp_path):
    """The rules of several grids are named per grid (resample_volume_<grid>, decode_volume):
    their group is set in the rules, so the profile's group-components bundles them all. Four
    volumes on two grids, two volumes per SLURM job: 2 jobs, each running its volumes'
    decoding and both grids."""
    work = tmp_path / "work"
    names = [f"vol_{index}" for index in range(4)]
    for index, name in enumerate(names):
        write_nifti(work / "in" / f"{name}.nii.gz", smooth_volume((20, 18, 12), seed=index),
                    affine_from((0.8, 1.1, 2.5)))
    write_config(work, nii_folder="in", output_path="out", qc=False,
                 grids={"low": {"desired_volume": [8, 7, 6]}, "mm": {"desired_spacing": [2.0, 2.0, 3.0]}})
    earlier_jobs = set(_slurm_jobs(slurm_cluster))
    rc, out = _snakemake(snakemake_python, work, slurm_cluster.env,
                         cluster_args=["--slurm-keep-successful-logs", *TEST_CLUSTER_ARGS])
    print(out[-3000:])
    assert rc == 0, out
    ran = {}
    for job, text in _two_completed_jobs(slurm_cluster, earlier_jobs, work).items():
        ran[job] = {name for name in names if f"prefix={name}" in text}
        for rule in ("decode_volume", "resample_volume_low", "resample_volume_mm"):
            assert f"rule {rule}:" in text or f"localrule {rule}:" in text, (rule, text[-2000:])
    assert sorted(map(len, ran.values())) == [2, 2] and set.union(*ran.values()) == set(names), ran
    for name in names:
        assert nib.load(work / "out" / "low" / name / f"{name}_resampled.nii.gz").shape == (8, 7, 6)
        assert (work / "out" / "mm" / name / f"{name}_resampled.nii.gz").exists()
