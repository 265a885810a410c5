"""The resident worker (nii_resample.workflow_worker, scripts/resample_job.py): a job run through it
writes what the in-process job writes and exits the same way; its threads reach the forked
child; nothing outlives a run killed with kill -9, which then resumes; a worker killed
mid-volume costs that volume nothing (its client runs it in-process)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from support import REPO, SNAKEFILE, affine_from, run_snakemake, smooth_volume, write_config, write_nifti
from nii_resample.processes import process_start

CLIENT = REPO / "scripts" / "resample_job.py"
# A resident worker's command line: python -P -m nii_resample.workflow_worker SOCKET FD.
WORKER_MODULE = "nii_resample.workflow_worker"
# The job in-process: what the client runs without a worker.
IN_PROCESS = ["-m", "nii_resample", "volume"]


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def processes_naming(word: str) -> list[int]:
    """Live processes whose command line holds `word` (workers, their children, clients)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and any(word in arg for arg in cmdline(int(entry.name))):
            found.append(int(entry.name))
    return found


def workers_of(owner_pid: int) -> list[int]:
    """The resident workers of the run (or test) whose process is `owner_pid`: their socket
    path holds it; their forked children (same command line) are left out."""
    named = [pid for pid in processes_naming(WORKER_MODULE)
             if any(f"-{owner_pid}-" in arg for arg in cmdline(pid))]
    return [pid for pid in named if parent(pid) not in named]


def wait_until(condition, seconds=60.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def owner_env(tmp_path, owner_pid: int) -> dict:
    """A job's environment as a run whose Snakemake is `owner_pid` gives it (runtime.smk)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    env["NII_RESAMPLE_WORKER_DIR"] = str(tmp_path / f"run-{owner_pid}-x")
    env["NII_RESAMPLE_WORKER_OWNER"] = f"{owner_pid} {process_start(owner_pid)}"
    return env


@contextlib.contextmanager
def stand_in_run(tmp_path):
    """(process, jobs' environment) of a stand-in for the run's Snakemake: the worker lives
    as long as it does; killed on the way out."""
    owner = subprocess.Popen(["sleep", "300"])
    try:
        yield owner, owner_env(tmp_path, owner.pid)
    finally:
        owner.kill()
        owner.wait()


def job(tmp_path, script, source, name, env, *extra):
    """One job as the rule runs it (python3 -S for the client), with its own job files."""
    files = tmp_path / name
    launch = ["-S", str(CLIENT)] if script == CLIENT else script
    command = [sys.executable, *launch, str(source),
               str(files / "out.nii.gz"), "12", "10", "8", *extra, "--log", str(files / "job.log"),
               "--record", str(files / "record.tsv"), "--failure-record", str(files / "failed.tsv")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(command, process.returncode, out, err)
    result.pid = process.pid  # the client's, for the served job
    return result, files


def job_files(files: Path) -> dict:
    """The job's files with its timings masked (they differ between any two runs), and
    without the log's line naming the resident worker that ran it (the in-process job has none)."""
    texts = {}
    for name in ("job.log", "record.tsv", "failed.tsv"):
        path = files / name
        if path.exists():
            text = path.read_text().replace(str(files), "<job>")
            lines = text.splitlines()
            if name == "job.log" and lines[0].startswith("nii-resample: run by resident worker "):
                lines = lines[1:]
            if name == "record.tsv":
                seconds = lines[0].split("\t").index("seconds")
                lines = ["\t".join(v if i != seconds else "<s>" for i, v in enumerate(line.split("\t")))
                         for line in lines]
            texts[name] = [line.split(" in ", 1)[0] if line.startswith("done in") else line
                           for line in lines]
    return texts


def test_job_through_the_worker_writes_what_the_in_process_job_writes(tmp_path):
    with stand_in_run(tmp_path) as (owner, env):
        good = write_nifti(tmp_path / "ct.nii.gz", smooth_volume((20, 18, 9)), affine_from((0.8, 0.9, 2.5)))
        truncated = tmp_path / "bad.nii.gz"
        truncated.write_bytes(good.read_bytes()[:-40])
        for source in (good, truncated):
            direct, direct_files = job(tmp_path, IN_PROCESS, source, f"direct_{source.name}", env)
            served, served_files = job(tmp_path, CLIENT, source, f"served_{source.name}", env)
            assert workers_of(owner.pid), "the job must have run in a resident worker"
            assert served.returncode == direct.returncode == (0 if source == good else 1)
            assert served.stderr.replace("served_", "direct_") == direct.stderr
            assert job_files(served_files) == job_files(direct_files)
            # The served job's log names the worker that ran it (live, not the client); the
            # in-process job's names none.
            (worker,) = workers_of(owner.pid)
            assert worker != served.pid
            assert (served_files / "job.log").read_text().splitlines()[0] == (
                f"nii-resample: run by resident worker {worker} (host {socket.gethostname()})"
            )
            assert not (direct_files / "job.log").read_text().startswith("nii-resample:")
        assert "ERROR bad.nii.gz:" in served.stderr and len(served.stderr.strip().splitlines()) == 1
        made = nib.load(served_files.parent / f"served_{good.name}" / "out.nii.gz")
        reference = nib.load(direct_files.parent / f"direct_{good.name}" / "out.nii.gz")
        np.testing.assert_allclose(made.affine, reference.affine, atol=1e-6)
        assert np.array_equal(np.asanyarray(made.dataobj), np.asanyarray(reference.dataobj))
        usage, _ = job(tmp_path, CLIENT, good, "usage", env, "--threads", "x")
        assert usage.returncode == 2 and "--threads: invalid int value" in usage.stderr
    # Its owner (the run's Snakemake) gone, the worker ends and removes the run's folder.
    assert wait_until(lambda: not workers_of(owner.pid), 5)
    assert not Path(env["NII_RESAMPLE_WORKER_DIR"]).exists()


def most_threads(pids_of, seconds) -> int:
    """The largest thread count seen in the processes pids_of() returns, for `seconds`."""
    most, deadline = 0, time.time() + seconds
    while time.time() < deadline:
        for pid in pids_of():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            most = max(most, int(status.split("Threads:", 1)[1].split()[0]))
        time.sleep(0.005)
    return most


def test_the_jobs_threads_reach_the_forked_child(tmp_path):
    with stand_in_run(tmp_path) as (owner, env):
        source = write_nifti(tmp_path / "ct.nii.gz", smooth_volume((160, 160, 60)), affine_from((0.8, 0.8, 2.0)))
        job(tmp_path, CLIENT, source, "warm", env)  # starts the worker
        (worker,) = workers_of(owner.pid)
        seen = {}
        for threads in (1, 3):
            command = [sys.executable, "-S", str(CLIENT), str(source), str(tmp_path / f"t{threads}.nii.gz"),
                       "150", "150", "90", "--engine", "itk", "--threads", str(threads)]
            running = subprocess.Popen(command, env=env)
            children = lambda: [pid for pid in processes_naming(WORKER_MODULE) if parent(pid) == worker]
            seen[threads] = most_threads(children, 1.5)
            assert running.wait(timeout=120) == 0
        # ITK's pool runs the job's threads (the worker itself computes nothing).
        assert seen[1] <= 2 < 3 <= seen[3]


def start_run(tmp_path, count, shape, cores="1"):
    folder = tmp_path / "in"
    for index in range(count):
        write_nifti(folder / f"v{index}.nii.gz", smooth_volume(shape, seed=index), affine_from((0.8, 0.8, 2.0)))
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = write_config(workdir, nii_folder=str(folder), output_path=str(tmp_path / "out"),
                          desired_volume=[150, 150, 90], engine="itk")
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
               "--configfile", str(config), "--cores", cores]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    return process, workdir, config


def check_outputs(output: Path, count: int) -> None:
    for index in range(count):
        image = nib.load(output / f"v{index}" / f"v{index}_resampled.nii.gz")
        assert np.asanyarray(image.dataobj).shape == (150, 150, 90)  # whole gzip stream read
    assert not list(output.rglob("*.partial"))
    assert len((output / "manifest.tsv").read_text().splitlines()) == count + 1


def test_kill_9_of_snakemake_leaves_no_process_and_the_run_resumes(tmp_path):
    process, workdir, config = start_run(tmp_path, 6, (160, 160, 60))
    output = tmp_path / "out"
    assert wait_until(lambda: workers_of(process.pid), 120), "the run must use a resident worker"
    assert wait_until(lambda: list(output.glob("records/*.tsv")), 120)
    os.kill(process.pid, signal.SIGKILL)  # snakemake alone: its jobs' clients live on
    process.wait()
    assert 0 < len(list(output.glob("records/*.tsv"))) < 6, "the kill must land mid-run"
    # The worker sees its run's end, kills its child; the orphaned client dies of it.
    assert wait_until(lambda: not workers_of(process.pid), 5), "a worker outlived its run"
    assert wait_until(lambda: not processes_naming(str(output)), 5), "a job outlived its run"
    resumed = run_snakemake(workdir, None, "--configfile", str(config), cores=2)
    assert "Nothing to be done" not in resumed.output
    check_outputs(output, 6)


def test_a_worker_killed_mid_volume_costs_that_volume_nothing(tmp_path):
    process, _, _ = start_run(tmp_path, 3, (160, 160, 60))
    assert wait_until(lambda: workers_of(process.pid), 120), "the run must use a resident worker"
    (worker,) = workers_of(process.pid)
    assert wait_until(lambda: any(parent(pid) == worker for pid in processes_naming(WORKER_MODULE)), 60)
    os.kill(worker, signal.SIGKILL)  # mid-volume: its child is running
    console, _ = process.communicate(timeout=300)
    assert process.returncode == 0, console
    assert "the resident worker ended before this job did; running this volume in-process" in console
    check_outputs(tmp_path / "out", 3)
    assert wait_until(lambda: not workers_of(process.pid), 5)
