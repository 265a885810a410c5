"""The resident worker started while Snakemake plans (runtime.smk, workflow_runtime.start_resident_worker_early;
scripts/resample_job.py --start-worker): a run starts it before its first job and its jobs
use it; the starter and a job arriving together make one worker, never two; a dry run starts
none; a dismissed worker (a run that runs no job on this host) ends, and a job that still
comes runs in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from test_resident_worker import CLIENT, job, processes_naming, stand_in_run, wait_until, workers_of

from support import REPO, SNAKEFILE, affine_from, smooth_volume, write_config, write_nifti
from nii_resample.workflow_worker import DISMISSED_MARK


def start_only(env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-S", str(CLIENT), "--start-worker"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_start_worker_leaves_a_listening_worker_that_the_jobs_use(tmp_path):
    with stand_in_run(tmp_path) as (run, env):
        started = start_only(env)
        assert started.returncode == 0 and not started.stdout and not started.stderr
        (worker,) = workers_of(run.pid)  # listening already: the starter waits for it
        source = write_nifti(tmp_path / "v.nii.gz", smooth_volume((20, 18, 12)), affine_from((1.0, 1.0, 2.0)))
        for name in ("a", "b"):
            result, files = job(tmp_path, CLIENT, source, name, env)
            assert result.returncode == 0, result.stderr
            assert (files / "out.nii.gz").exists()
        assert workers_of(run.pid) == [worker]
        assert start_only(env).returncode == 0  # a second start finds it: still one
        assert workers_of(run.pid) == [worker]
    assert wait_until(lambda: not workers_of(run.pid), 5)


def test_the_starter_and_a_job_arriving_together_make_one_worker(tmp_path):
    source = write_nifti(tmp_path / "v.nii.gz", smooth_volume((20, 18, 12)), affine_from((1.0, 1.0, 2.0)))
    for attempt in range(3):
        with stand_in_run(tmp_path) as (run, env):
            results = {}
            starter = threading.Thread(target=lambda: results.update(start=start_only(env)))
            starter.start()
            result, _ = job(tmp_path, CLIENT, source, f"job{attempt}", env)
            starter.join()
            assert result.returncode == 0 and results["start"].returncode == 0, result.stderr
            assert "in-process" not in result.stderr
            assert len(workers_of(run.pid)) == 1
        assert wait_until(lambda: not workers_of(run.pid), 5)


def test_a_dismissed_worker_ends_and_a_late_job_runs_in_process(tmp_path):
    with stand_in_run(tmp_path) as (run, env):
        folder = Path(env["NII_RESAMPLE_WORKER_DIR"])
        start_only(env)
        assert workers_of(run.pid)
        # What dismiss_resident_worker does to a listening worker: mark, remove the socket.
        (folder / DISMISSED_MARK).touch()
        for socket_path in folder.glob("*.sock"):
            socket_path.unlink()
        assert wait_until(lambda: not workers_of(run.pid), 5), "a dismissed worker went on"
        # Dismissed before it listens: it ends at once, and a job still gets done, in-process.
        source = write_nifti(tmp_path / "v.nii.gz", smooth_volume((20, 18, 12)), affine_from((1.0, 1.0, 2.0)))
        result, files = job(tmp_path, CLIENT, source, "late", env)
        assert result.returncode == 0, result.stderr
        assert (files / "out.nii.gz").exists() and not workers_of(run.pid)


def snakemake(tmp_path, *extra):
    folder = tmp_path / "in"
    for index in range(3):
        write_nifti(folder / f"v{index}.nii.gz", smooth_volume((24, 20, 12), seed=index), affine_from((1.0, 1.0, 2.0)))
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    config = write_config(workdir, nii_folder=str(folder), output_path=str(tmp_path / "out"),
                          desired_volume=[12, 10, 6])
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"), PYTHONPATH=str(REPO / "src"))
    (tmp_path / "tmp").mkdir(exist_ok=True)
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
               "--configfile", str(config), "--cores", "2", *extra]
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def zombie_of(pid: int, parent: int) -> bool:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z" and int(fields[1]) == parent


def test_a_run_starts_its_worker_before_its_first_job(tmp_path):
    process = snakemake(tmp_path)
    order = []
    while process.poll() is None and len(order) < 2:
        for word, what in (("--start-worker", "starter"), ("resample_job.py", "job")):
            running = [pid for pid in processes_naming(word) if what == "starter" or
                       "--start-worker" not in open(f"/proc/{pid}/cmdline").read()]
            if running and what not in order:
                order.append(what)
        time.sleep(0.002)
    # Its starter ends once the worker listens, and is reaped at once: no zombie child of
    # snakemake for the rest of the run.
    zombies = []
    if wait_until(lambda: not processes_naming("--start-worker"), 30) and process.poll() is None:
        time.sleep(0.2)
        zombies = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if zombie_of(pid, process.pid)]
    console, _ = process.communicate(timeout=300)
    assert process.returncode == 0, console
    assert order[:1] == ["starter"], f"seen in this order: {order}"
    assert not zombies, zombies
    assert len(list((tmp_path / "out").glob("v*/v*_resampled.nii.gz"))) == 3


def test_a_dry_run_starts_no_worker(tmp_path):
    process = snakemake(tmp_path, "-n")
    console, _ = process.communicate(timeout=300)
    assert process.returncode == 0, console
    runs = tmp_path / "tmp" / f"nii-resample-{os.getuid()}"
    assert not runs.exists() or not list(runs.iterdir()), "a dry run made a worker folder"
    assert not list((tmp_path / "out").glob("v*/v*_resampled.nii.gz"))


PRELOADED_THEN_JOBS = """
import sys
from pathlib import Path
from nii_resample import workflow_worker
workflow_worker.preload()
from nii_resample.jobs import volume_main
before = set(sys.modules)
folder = Path(sys.argv[1])
for name, extra in (("image", ["--threads", "2"]), ("labels", []), ("nan", [])):
    files = [f"--{kind}={folder / (name + '.' + kind)}" for kind in ("log", "record", "failure-record")]
    status = volume_main([str(folder / f"{name}.nii.gz"), str(folder / f"{name}_out.nii.gz"),
                            "14", "12", "9", *extra, *files])
    assert status == 0, (folder / f"{name}.log").read_text()
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_the_worker_imports_what_jobs_use_before_it_forks(tmp_path):
    """A module a job imports for itself is imported again by every forked child: the
    worker's preload has them all (image on 2 threads, label map, NaN map; SimpleITK, for
    the non-default itk engine only, stays a job's own import)."""
    import numpy as np

    data = smooth_volume((28, 24, 16))
    write_nifti(tmp_path / "image.nii.gz", data, affine_from((1.0, 1.0, 2.0)))
    write_nifti(tmp_path / "labels.nii.gz", (np.indices((28, 24, 16)).sum(axis=0) // 9 % 4).astype(np.uint8),
                affine_from((1.0, 1.0, 2.0)))
    nan = data.astype(np.float32)
    nan[:4] = np.nan
    write_nifti(tmp_path / "nan.nii.gz", nan, affine_from((1.0, 1.0, 2.0)))
    result = subprocess.run([sys.executable, "-c", PRELOADED_THEN_JOBS, str(tmp_path)], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
                            cwd=REPO / "src")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"imported by the jobs, not by the worker: {result.stdout}"
