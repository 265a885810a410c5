"""Runtime plumbing, not the plan (common.smk): Snakemake's locks, the resident worker, the
scheduling and the report guard. What this invocation does (a dry run, a report, jobs run
here, submitted to a cluster, a cluster job's inner Snakemake) comes from one place,
nii_resample.snakemake_compat.invocation; the longer functions are in
nii_resample.workflow_runtime."""

from nii_resample.command import point_jobs_at
from nii_resample.qc_figures import outdated_report_inputs
from nii_resample.snakemake_compat import (
    invocation,
    keep_going,
    schedule_linearly,
    warn_if_unchecked_version,
)
from nii_resample.stale_locks import LockedError, claim_new_locks, lock_files
from nii_resample.workflow_runtime import (
    dismiss_resident_worker,
    local_subsample,
    name_resident_worker,
    release_killed_runs_lock,
    threads_per_volume as volume_threads,
)

if invocation(workflow).main:
    warn_if_unchecked_version()  # one line, if this Snakemake was never checked

# The per-volume jobs run `python3 -S scripts/resample_job.py` (resample.smk): make that this
# interpreter, with its packages, even when its venv is not activated (as Snakemake does for
# `script:`). With --use-conda the job activates its environment, whose python3 comes first.
# Every job imports this workflow's src/ first, through PYTHONPATH (scripts/manifest.py is
# kept byte for byte as it was before src/ existed: a changed `script:` file reruns its rule).
point_jobs_at(sys.executable, WORKFLOW_ROOT / "src")
RESAMPLE_SCRIPT = str(WORKFLOW_ROOT / "scripts" / "resample_job.py")

# Every job of this Snakemake uses one resident worker (README, "Start-up per job"), started
# now, while Snakemake plans, if this invocation may run jobs here.
name_resident_worker(invocation(workflow), RESAMPLE_SCRIPT)

# Running again after a kill -9 just resumes: outputs are written atomically (temporary
# name + rename), so a stale lock never guards a corrupt file. Only locks proven stale are
# removed (nii_resample.stale_locks): a live run elsewhere must never be unlocked. The lock
# files before this run locks (its own are those that appear by onstart).
LOCKS_BEFORE = lock_files(Path(".snakemake"))
RUN_PREPARED = False


def final_targets(wildcards):
    """The input of the default target (Snakefile): prepare_run(), then the targets
    (get_final_output, pure)."""
    prepare_run()
    return get_final_output()


def prepare_run():
    """Runs once, when Snakemake first builds the DAG (rule all's input function is the first
    one it calls): the first moment the invocation's mode is known (not while the files are
    read), and before Snakemake checks its locks. Releases a killed run's stale lock, takes
    the lock snapshot onstart compares with, dismisses the worker of a run that runs no job
    here, schedules a local run linearly, and refuses an outdated report. (Not called when
    the targets are others, as in a cluster job's inner Snakemake or with files named on
    the command line.)"""
    global LOCKS_BEFORE, RUN_PREPARED
    if RUN_PREPARED:
        return
    RUN_PREPARED = True
    facts = invocation(workflow)
    if facts.holds_own_lock:
        roots = [d.config[k] for d in DATASETS for k in ("output_path", "nii_folder")]
        try:
            for line in release_killed_runs_lock(workflow, roots):
                logger.warning(line)
        except LockedError as problem:
            raise WorkflowError(f"{problem}.") from None
    LOCKS_BEFORE = lock_files(Path(".snakemake"))
    if not facts.runs_jobs_here or facts.report:
        dismiss_resident_worker()
    if facts.executor_known and not facts.on_cluster:
        # Without a cluster, keep Snakemake's cost per job flat however many volumes wait
        # (docs/benchmarks.md, "Start-up per job"): each scheduling round stats the input of
        # every waiting job it considers, and the default limit of 100 job starts per
        # second adds rounds (and ~1 s at the end). Values given on the command line are
        # kept.
        decodes = any(d.decodes for d in DATASETS)
        schedule_linearly(workflow, local_subsample(facts.cores, decodes))
    if facts.report:
        refuse_outdated_report()


def refuse_outdated_report():
    """With `qc: true`, a report must never show QC pictures older than the volumes they
    describe (Snakemake gathers whatever files exist; qc.smk makes the pictures)."""
    if not any(d.config["qc"] for d in DATASETS):
        return
    problems = []
    for dataset in DATASETS:
        volumes = [
            (str(path), str(target.output_file(key)), target.qc_png(key))
            for target in dataset.targets
            for key, path in dataset.volumes.items()
        ]
        pictures = list(dataset.qc_pictures.values())
        grid = dataset.targets[0].grid
        # The grid check compares sizes: for one desired_volume grid only.
        size = grid.get("desired_volume") if len(dataset.targets) == 1 else None
        problems += outdated_report_inputs(volumes, dataset.manifest, pictures, size)
    if problems:
        raise WorkflowError(
            f"No report: {'; '.join(problems)}; run `snakemake --cores N` with this report's "
            "--config/--configfile options (qc=true included) first, then the report."
        )


onstart:
    # Snakemake has just locked: record that the lock is ours.
    if invocation(workflow).holds_own_lock:
        claim_new_locks(LOCKS_BEFORE)


def keep_going_inside_cluster_groups():
    """A cluster job running a group of volumes (rule groups, profile group-components) is an
    inner Snakemake started without --keep-going: one bad volume would stop the rest of its
    group. Let the group finish every volume; the group still reports the failure. (Called
    per job, from the resample rule's params: the settings do not exist yet while this
    file is read.)"""
    if invocation(workflow).cluster_job:
        keep_going(workflow)


def threads_per_volume(threads_per_job):
    """Threads of a resample job (nii_resample.workflow_runtime.threads_per_volume: on a
    cluster, the job's CPUs). Evaluated per job, when the executor is known (it is not
    while this file is read)."""
    return lambda wildcards: volume_threads(invocation(workflow), threads_per_job)
