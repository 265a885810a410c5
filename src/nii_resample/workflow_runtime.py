"""The workflow's runtime plumbing (workflow/rules/runtime.smk): the resident worker's start
and dismissal and its environment variables, the threads of a volume on a cluster, the local
scheduling, and the release of a killed run's stale lock. Facts about the invocation come
from nii_resample.snakemake_compat (Invocation), never from Snakemake's internals here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from glob import escape as glob_escape
from pathlib import Path

from .processes import pid_is_gone, this_process
from .snakemake_compat import Invocation, state_folder
from .stale_locks import LockedError, release_stale_locks
from .workflow_worker import DISMISSED_MARK

# --- Locks -------------------------------------------------------------------------------


def release_killed_runs_lock(workflow, roots) -> list[str]:
    """Before a run that holds its own lock (Invocation.holds_own_lock): remove a killed
    run's lock on `roots` when it is proven stale (nii_resample.stale_locks). Returns the
    lines to print (one line, or none); raises LockedError (one sentence) when a lock is
    not proven stale. When Snakemake keeps its state elsewhere than in files
    (--persistence-backend db), nothing can be checked: one line says so."""
    if state_folder(workflow) is None:
        return [
            "Snakemake keeps its locks in a database here (--persistence-backend), which "
            "this workflow cannot check: a lock left by a killed run is not removed "
            "(run `snakemake --unlock` once if no run is active)."
        ]
    if release_stale_locks(roots):
        return ["An earlier run was killed: removed its stale lock; resuming."]
    return []


# --- Threads and scheduling --------------------------------------------------------------


def threads_per_volume(facts: Invocation, threads_per_job: int) -> int:
    """Threads of a resample job: `threads_per_job`, except on a cluster with a `cores`
    setting (the SLURM profile's: a cluster job's CPUs), where every volume uses all of
    them, so that one setting says both (README, "Running on a cluster")."""
    cores = facts.cores
    if facts.cluster_job:
        cores = cluster_job_cpus(cores)
    if facts.on_cluster and isinstance(cores, int) and cores > 0:
        return cores
    return threads_per_job


def cluster_job_cpus(cores):
    """Inside a cluster job, the CPUs it was given: its Snakemake runs each volume in a
    Snakemake of its own (srun) started with `--cores all`, which would otherwise be every
    CPU of the node (tests/slurm)."""
    given = [len(os.sched_getaffinity(0))]
    slurm_cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm_cpus and slurm_cpus.isdigit():
        given.append(int(slurm_cpus))
    if isinstance(cores, int) and cores > 0:
        given.append(cores)
    return min(given)


def local_subsample(cores, decodes: bool) -> int | None:
    """The waiting jobs a local scheduling round considers: 4 per core, at least 16 (a
    round starts at most one job per free core, and the volumes are independent); None (all
    of them) with several grids, whose decode-then-resample order needs every priority
    seen (docs/benchmarks.md, "Start-up per job")."""
    if decodes:
        return None
    return max(16, 4 * cores) if isinstance(cores, int) else 100


# --- The resident worker -----------------------------------------------------------------

WORKER_VARIABLES = (
    "NII_RESAMPLE_WORKER_DIR",
    "NII_RESAMPLE_WORKER_OWNER",
    "NII_RESAMPLE_WORKER_JOB",
)

_STARTER: subprocess.Popen | None = None


def name_resident_worker(facts: Invocation, resample_script: str) -> None:
    """Let the resample jobs of this Snakemake (the run's, or the inner one of a cluster
    job: never shared across nodes) use one resident worker (nii_resample.workflow_worker):
    its folder, owner and SLURM job go to the jobs through the environment, not the command
    line, which must not change between runs (Snakemake would rerun every job).
    NII_RESAMPLE_WORKER=0 turns it off: each job then runs in-process, as
    `python -m nii_resample volume`. Called while the Snakefile is read."""
    # An outer run's (a cluster job inherits it), or this cluster job's (below).
    inherited = {name: os.environ.pop(name, None) for name in WORKER_VARIABLES}
    if os.environ.get("NII_RESAMPLE_WORKER", "1") == "0":
        return
    me = this_process()
    if is_this_slurm_jobs_worker(inherited, me["host"]):
        os.environ.update(inherited)
        return
    runs = Path(tempfile.gettempdir()) / f"nii-resample-{os.getuid()}"
    remove_ended_runs_folders(runs, me["host"])
    os.environ.update(
        NII_RESAMPLE_WORKER_DIR=str(runs / f"{me['host']}-{me['pid']}-{me['start']}"),
        NII_RESAMPLE_WORKER_OWNER=f"{me['pid']} {me['start']}",
        NII_RESAMPLE_WORKER_JOB=os.environ.get("SLURM_JOB_ID", ""),
    )
    start_resident_worker_early(facts, resample_script)


def is_this_slurm_jobs_worker(inherited: dict, host: str) -> bool:
    """Whether the inherited worker is the one of the Snakemake that runs this SLURM job,
    on this node, still running. That Snakemake (slurm-jobstep executor) runs each of the
    job's volumes in a Snakemake of its own (srun): they share its worker (one per SLURM
    job, tests/slurm) instead of starting one per volume. An outer run's is never kept: it
    runs in no SLURM job, or in another (sbatch gives each job its own SLURM_JOB_ID)."""
    job, folder = os.environ.get("SLURM_JOB_ID"), inherited["NII_RESAMPLE_WORKER_DIR"]
    if not job or inherited["NII_RESAMPLE_WORKER_JOB"] != job or not folder:
        return False
    try:
        pid, start = inherited["NII_RESAMPLE_WORKER_OWNER"].split()
    except (AttributeError, ValueError):
        return False
    return (
        Path(folder).name == f"{host}-{pid}-{start}"
        and pid.isdigit()
        and not pid_is_gone(int(pid), start)
    )


def start_resident_worker_early(facts: Invocation, resample_script: str) -> None:
    """Start the run's worker now, while Snakemake still reads the Snakefile and plans: its
    ~0.2 s start (numpy, nibabel) then overlaps Snakemake's own, instead of holding up the
    first jobs (docs/benchmarks.md, "Start-up per job"). The starter is the jobs' own
    client (scripts/resample_job.py): whichever of it and the first job comes first starts
    the worker, the other one uses it. Not for a dry run, not in Snakemake's subprocesses,
    not when the jobs run in environments of their own (--use-conda: each python3 has its
    own worker) (Invocation.may_run_jobs_here); a run that turns out to run no job here (a
    cluster executor, --touch, a report) dismisses it (runtime.smk, prepare_run)."""
    global _STARTER
    python3 = shutil.which("python3")  # the jobs' python3 (command.point_jobs_at)
    if python3 is None or not facts.may_run_jobs_here:
        return
    # The worker computes nothing itself: one thread per pool at import; each job sets its
    # own threads in the forked child.
    threads = {
        name: "1"
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    _STARTER = subprocess.Popen(
        [python3, "-S", resample_script, "--start-worker"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **threads},
    )
    # Reaped as soon as it ends (once the worker listens): no zombie for the run's length.
    threading.Thread(target=_STARTER.wait, daemon=True).start()


def dismiss_resident_worker() -> None:
    """A run that runs no job on this host (a cluster executor's, --touch, a report): end
    the worker started early. Its folder gets a `dismissed` mark, which the worker reads
    once it listens, and loses its sockets, which a listening worker watches
    (nii_resample.workflow_worker): either way it ends at once."""
    folder = os.environ.get("NII_RESAMPLE_WORKER_DIR")
    if _STARTER is None or not folder:
        return
    os.makedirs(folder, mode=0o700, exist_ok=True)
    Path(folder, DISMISSED_MARK).touch()
    for socket_path in Path(folder).glob("*.sock"):
        socket_path.unlink(missing_ok=True)


def remove_ended_runs_folders(runs: Path, host: str) -> None:
    """The worker folders of this host's runs that have ended (a worker that stopped while
    its run went on leaves its folder: its run may start another one)."""
    for folder in runs.glob(f"{glob_escape(host)}-*-*"):
        pid, start = folder.name[len(host) + 1 :].split("-", 1)
        if pid.isdigit() and pid_is_gone(int(pid), start):
            shutil.rmtree(folder, ignore_errors=True)


__all__ = [
    "LockedError",
    "release_killed_runs_lock",
    "threads_per_volume",
    "cluster_job_cpus",
    "local_subsample",
    "name_resident_worker",
    "dismiss_resident_worker",
]
