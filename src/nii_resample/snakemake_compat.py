"""Every use of Snakemake's non-public API, in one place (the model: snakebids'
`snakemake_compat`).

Snakemake documents its command line, profiles and the Snakefile language, not the
`workflow` object's settings nor its `.snakemake` folder. This workflow needs a few of
them, for which no public mechanism exists (each says why); each comment names the
versions it was checked on ("source": read in that version's source; "tests": pinned by
tests/test_snakemake_compat.py, run on the installed version), and each use has a test
there that fails if Snakemake changes it. Anything else in the workflow and the package
reaches Snakemake only through this module or its public API (`snakemake.logging.logger`,
`snakemake.utils`, `snakemake.exceptions`).

A Snakemake outside CHECKED_VERSIONS gets one warning line (warn_if_unchecked_version),
never a silent change of behaviour.
"""

from __future__ import annotations

import os
import re
import sys
from base64 import urlsafe_b64decode
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

# Every use below was read in these versions' source; the last one is the one tested.
CHECKED_VERSIONS = ("9.0.0", "9.27.1")


def snakemake_version() -> str:
    from snakemake import __version__

    return __version__


_WARNED: set[str] = set()


def warn_if_unchecked_version(version: str | None = None) -> str | None:
    """One warning line (Snakemake's logger, once per process) when the running Snakemake
    is outside CHECKED_VERSIONS; the line, or None."""
    from packaging.version import InvalidVersion, Version

    version = snakemake_version() if version is None else version
    low, high = CHECKED_VERSIONS
    try:
        inside = Version(low) <= Version(version) <= Version(high)
    except InvalidVersion:
        inside = False
    if inside:
        return None
    line = (
        f"nii-resample: Snakemake {version} is outside the versions this workflow was "
        f"checked on ({low} to {high}; nii_resample/snakemake_compat.py): its stale-lock "
        "release, scheduling and cluster settings may not work as documented."
    )
    if line not in _WARNED:
        _WARNED.add(line)
        from snakemake.logging import logger

        logger.warning(line)
    return line


# --- What this invocation does -----------------------------------------------------------


class Mode(Enum):
    """What a Snakemake invocation does with the jobs it plans."""

    READING = "reading"  # the Snakefile is being read, or nothing runs (--lint, --unlock)
    DRY_RUN = "dry run"  # -n
    REPORT = "report"  # --report
    TOUCH = "touch"  # --touch
    LOCAL = "local"  # runs jobs here, on this host
    SUBMITS = "submits"  # submits jobs to a cluster (a non-local executor)
    CLUSTER_JOB = "cluster job"  # the inner Snakemake of a cluster job
    SUBPROCESS = "subprocess"  # a Snakemake started by Snakemake for a job of its own


@dataclass(frozen=True)
class Invocation:
    """What this Snakemake invocation does, from its settings (see invocation())."""

    executor_known: bool  # the executor is chosen: Snakemake has started to execute
    dry_run: bool
    report: bool
    touch: bool
    local_executor: bool  # the executor runs jobs on this host (not a cluster's)
    main: bool  # the Snakemake the user started (not a cluster job's, not a subprocess)
    cluster_job: bool  # the inner Snakemake of a cluster job
    locks: bool  # takes Snakemake's lock (not --nolock)
    deploys_software: bool  # --use-conda, --use-apptainer, ...
    cores: object  # --cores: an int, or None / "all" before they are resolved

    @property
    def mode(self) -> Mode:
        if self.report:
            return Mode.REPORT
        if self.dry_run:
            return Mode.DRY_RUN
        if self.cluster_job:
            return Mode.CLUSTER_JOB
        if not self.executor_known:
            return Mode.READING
        if self.touch:
            return Mode.TOUCH
        if not self.local_executor:
            return Mode.SUBMITS
        return Mode.LOCAL if self.main else Mode.SUBPROCESS

    @property
    def holds_own_lock(self) -> bool:
        """Runs jobs under a lock of its own: not a dry run, --touch, --nolock, lint, report
        or unlock (they never reach execution, so no executor is set), nor the inner
        Snakemake of a cluster job."""
        return (
            self.main
            and self.executor_known
            and not self.dry_run
            and not self.touch
            and self.locks
        )

    @property
    def runs_jobs_here(self) -> bool:
        """Runs jobs on this host: a local run, or a cluster job's inner Snakemake."""
        return (
            self.executor_known
            and not self.dry_run
            and not self.touch
            and (self.local_executor or self.cluster_job)
        )

    @property
    def on_cluster(self) -> bool:
        """Jobs go to a cluster: this Snakemake submits them, or is the inner one of a
        cluster job."""
        return self.cluster_job or (self.executor_known and not self.local_executor)

    @property
    def may_run_jobs_here(self) -> bool:
        """While the Snakefile is read (executor unknown): whether this invocation may
        run jobs on this host, in this interpreter: not a dry run, no software deployment
        (--use-conda: the jobs run other interpreters), the user's Snakemake or a cluster
        job's."""
        return not self.dry_run and not self.deploys_software and (self.main or self.cluster_job)


# id(workflow) -> (workflow, its Invocation): a Workflow is not hashable.
_INVOCATIONS: dict[int, tuple[object, Invocation]] = {}


def invocation(workflow) -> Invocation:
    """What this invocation does. Computed from the settings each time until Snakemake
    has chosen its executor (or builds a report), then once: known from the first input
    function Snakemake calls (rule all's, or in a cluster job the job's rules'), not
    while the Snakefile is read (then only dry_run, deploys_software, main and
    cluster_job are known: Mode.READING)."""
    known = _INVOCATIONS.get(id(workflow))
    if known is not None and known[0] is workflow:
        return known[1]
    # checked on 9.0.0 (source), 9.27.1 (source, tests): Workflow.executor_plugin (None
    # until execution; the dry-run and touch executors are plugins too), its
    # common_settings.dryrun_exec / local_exec, Workflow.is_main_process, .remote_exec,
    # .touch, .output_settings.dryrun (set from -n before the Snakefile is read),
    # .deployment_settings.deployment_method, .execution_settings.lock,
    # .resource_settings.cores. No public mechanism: Snakemake exposes no "what is this
    # invocation" to a Snakefile (snakemake/snakemake#2948, open).
    plugin = workflow.executor_plugin
    execution = workflow.execution_settings
    facts = Invocation(
        executor_known=plugin is not None,
        dry_run=bool(workflow.output_settings.dryrun)
        or (plugin is not None and bool(plugin.common_settings.dryrun_exec)),
        report=False,
        touch=plugin is not None and bool(workflow.touch),
        local_executor=plugin is None or bool(plugin.common_settings.local_exec),
        main=bool(workflow.is_main_process),
        cluster_job=bool(workflow.remote_exec),
        locks=execution is not None and bool(execution.lock),
        deploys_software=bool(workflow.deployment_settings.deployment_method),
        cores=workflow.resource_settings.cores,
    )
    if plugin is None and not facts.cluster_job and _creates_report():
        facts = Invocation(**{**facts.__dict__, "report": True})
    if plugin is not None or facts.report:
        _INVOCATIONS[id(workflow)] = (workflow, facts)
    return facts


def _creates_report() -> bool:
    """Whether Snakemake is writing a report (--report): it sets no flag for it, but builds
    the DAG (and so calls the input functions) from Workflow.create_report."""
    # checked on 9.0.0 (source), 9.27.1 (source, tests): Workflow.create_report in
    # snakemake/workflow.py builds the DAG. No public mechanism: no setting or attribute
    # says that a report is being made.
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "create_report" and code.co_filename.endswith(
            f"snakemake{os.sep}workflow.py"
        ):
            return True
        frame = frame.f_back
    return False


# --- Settings this workflow changes ------------------------------------------------------


def schedule_linearly(workflow, subsample: int | None) -> None:
    """Set the scheduler's subsample (unless the command line gave one; None: leave it)
    and lift Snakemake's default limit of 100 job starts per second (a value given on the
    command line is kept)."""
    # checked on 9.0.0 (source), 9.27.1 (source, tests): Workflow.scheduling_settings
    # .subsample and .max_jobs_per_timespan (a MaxJobsPerTimespan, .max_jobs and .timespan
    # in seconds), read by the scheduler when it starts, after the DAG is built. The
    # public flags (--scheduler-subsample, --max-jobs-per-timespan) exist, but a profile
    # cannot make them depend on the executor and the cores (cluster runs keep
    # Snakemake's defaults), and the workflow profile applies to every run.
    settings = workflow.scheduling_settings
    if settings is None:
        return
    if subsample is not None and settings.subsample is None:
        settings.subsample = subsample
    limit = settings.max_jobs_per_timespan
    # Snakemake's default, "100/1s":
    if limit is not None and limit.max_jobs == 100 and limit.timespan == 1:
        settings.max_jobs_per_timespan = None


def keep_going(workflow) -> None:
    """Make this Snakemake keep going after a failed job (as --keep-going)."""
    # checked on 9.0.0 (source), 9.27.1 (source, tests): Workflow.execution_settings
    # .keep_going, read by the job scheduler when it starts (after the DAG is built).
    # No public mechanism: the inner Snakemake of a cluster job gets no --keep-going from
    # the outer one (spawn_jobs.py, general_args) and reads no profile (profiles are
    # read only in the user's Snakemake, ExecMode.DEFAULT).
    if workflow.execution_settings is not None:
        workflow.execution_settings.keep_going = True


# --- Snakemake's state folder (.snakemake) -----------------------------------------------

# checked on 9.0.0 (source), 9.27.1 (source, tests): the file persistence keeps its
# locks in .snakemake/locks, one file per kind, `<n>.input.lock` / `<n>.output.lock`,
# holding one path per line (persistence FilePersistence._write_locks; 9.0.0:
# Persistence._lock). No public mechanism: Snakemake's only public handling of a stale
# lock is `--unlock`, which removes every lock, a live run's too.
LOCK_NAME = re.compile(r"^[0-9]+\.(input|output)\.lock$")


def state_folder(workflow=None) -> Path | None:
    """Where Snakemake keeps its locks and "incomplete" marks as files (.snakemake under
    the working folder), or None when it keeps them elsewhere (--persistence-backend db)."""
    # checked on 9.0.0 (source: no such setting, always files), 9.27.1 (source, tests):
    # WorkflowSettings.persistence_backend, a PersistenceBackend, FILE by default.
    backend = getattr(getattr(workflow, "workflow_settings", None), "persistence_backend", None)
    if backend is not None and getattr(backend, "name", str(backend)).upper() != "FILE":
        return None
    return Path(".snakemake")


def lock_kind(name: str) -> str | None:
    """"input" or "output" for a lock file's name; None for anything else."""
    match = LOCK_NAME.match(name)
    return match.group(1) if match else None


def locked_paths(lock: Path) -> list[Path]:
    """The paths a lock file names (one per line); [] if it cannot be read."""
    try:
        return [Path(line) for line in lock.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def incomplete_mark_path(folder: Path, mark: Path) -> Path | None:
    """The output an "incomplete" mark under `folder` (.snakemake/incomplete) stands for,
    or None if its name is not one."""
    # checked on 9.0.0 (source), 9.27.1 (source, tests): the mark's name is the urlsafe
    # base64 of the output path, split into folders of at most NAME_MAX - 1 characters,
    # every one but the last prefixed with "@" (FilePersistence._record_path; 9.0.0:
    # Persistence._record_path). No public mechanism: `--cleanup-metadata` takes paths,
    # and would need the same decoding to find them.
    parts = [part.removeprefix("@") for part in mark.relative_to(folder).parts]
    try:
        return Path(urlsafe_b64decode("".join(parts)).decode())
    except ValueError:
        return None
