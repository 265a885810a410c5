"""Everything that is not a rule: config checks, volume discovery, paths and input functions."""

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

# This workflow's own folder: found from this file, not from the Snakefile that Snakemake
# runs, which is another workflow's when this one is used as a module (README).
WORKFLOW_ROOT = Path(workflow.current_basedir).parents[1]
# The per-volume logic lives in an importable package beside the scripts.
sys.path.insert(0, str(WORKFLOW_ROOT / "scripts"))

from nii_resample.errors import ConfigError, InputFolderError
from nii_resample.command import job_arguments, put_python_first_on_path
from nii_resample.qc import outdated_report_inputs
from nii_resample.resources import estimate_mem_mb_for_file
from nii_resample.resume import (
    LockedError,
    claim_new_locks,
    lock_files,
    release_claims,
    release_stale_locks,
)
from nii_resample.settings import (
    check_output_location,
    discover_volumes,
    job_options,
    normalise_config,
    resampled_path,
)

# Fail before any job runs, with one sentence, on a bad config or input folder.
try:
    config.update(normalise_config(config))
    VOLUMES = discover_volumes(config["nii_folder"])
    check_output_location(config)
except (ConfigError, InputFolderError) as problem:
    raise WorkflowError(f"Invalid configuration: {problem}.") from None
validate(config, schema="../schemas/config.schema.yaml")

# Running again after a kill -9 just resumes: outputs are written atomically (temporary
# name + rename), so a stale lock never guards a corrupt file. Only locks proven stale are
# removed (nii_resample.resume): a live run elsewhere must never be unlocked.
LOCKS_BEFORE = lock_files(Path(".snakemake"))


def executes():
    """Whether this invocation runs jobs under a lock of its own: not a dry run, --touch,
    --nolock, lint, report or unlock (they never reach execution, so no executor is set),
    nor the inner Snakemake of a cluster job."""
    return (
        workflow.is_main_process
        and workflow.executor_plugin is not None
        and not workflow.dryrun
        and not workflow.touch
        and workflow.execution_settings is not None
        and workflow.execution_settings.lock
    )


def final_targets(wildcards):
    """Input of rule all. Snakemake calls it first when it builds the DAG, after it knows
    whether it executes (unknown while this file is read) and before it checks the locks:
    the moment to clear a killed run's stale lock."""
    global LOCKS_BEFORE
    if executes():
        try:
            removed = release_stale_locks([config["output_path"], config["nii_folder"]])
        except LockedError as problem:
            raise WorkflowError(f"{problem}.") from None
        if removed:
            logger.warning(
                "An earlier run was killed: removed its stale lock; resuming."
            )
    LOCKS_BEFORE = lock_files(Path(".snakemake"))
    refuse_outdated_report()
    return get_final_output()


def creates_report():
    """Whether this invocation writes a report (--report): Snakemake sets no flag for it,
    but builds the DAG (and so calls final_targets) from its Workflow.create_report."""
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "create_report" and code.co_filename.endswith(
            f"snakemake{os.sep}workflow.py"
        ):
            return True
        frame = frame.f_back
    return False


def refuse_outdated_report():
    """With `qc: true`, a report must never show QC pictures older than the volumes they
    describe (Snakemake gathers whatever files exist). Called from final_targets, when the
    run mode is known (qc.smk makes the pictures)."""
    if not (config["qc"] and creates_report()):
        return
    qc = f"{OUTPUT_PATH}/qc"
    volumes = [
        (str(path), str(resampled_path(OUTPUT_PATH, prefix, config["saving_mode"])))
        + (f"{qc}/{prefix}.png",)
        for prefix, path in VOLUMES.items()
    ]
    dataset = [f"{qc}/dataset/overview.png", f"{qc}/dataset/manifest.html"]
    manifest = f"{OUTPUT_PATH}/manifest.tsv"
    problems = outdated_report_inputs(volumes, manifest, dataset, DESIRED_VOLUME)
    if problems:
        raise WorkflowError(
            f"No report: {'; '.join(problems)}; run `snakemake --cores N` with this report's "
            "--config/--configfile options (qc=true included) first, then the report."
        )


onstart:
    if executes():  # Snakemake has just locked: record that the lock is ours
        claim_new_locks(LOCKS_BEFORE)


def keep_going_inside_cluster_groups():
    """A cluster job running a group of volumes (profile: groups/group-components) is an
    inner Snakemake started without --keep-going: one bad volume would stop the rest of its
    group. Let the group finish every volume; the group still reports the failure. (Called
    from an input function: execution settings do not exist yet while this file is read.)
    """
    if workflow.remote_exec and workflow.execution_settings is not None:
        workflow.execution_settings.keep_going = True


def threads_per_volume(wildcards):
    """Threads of a resample job: `threads_per_job`, except on a cluster with a `cores`
    setting (the SLURM profile's: a cluster job's CPUs), where every volume uses all of
    them, so that one setting says both (README, "Running on a cluster"). Evaluated per
    job, when the executor is known (it is not while this file is read)."""
    cores = workflow.resource_settings.cores
    plugin = workflow.executor_plugin
    on_cluster = workflow.remote_exec or (
        plugin is not None and not plugin.common_settings.local_exec
    )
    if on_cluster and isinstance(cores, int) and cores > 0:
        return cores
    return config["threads_per_job"]


OUTPUT_PATH = str(Path(config["output_path"]))
DESIRED_VOLUME = config["desired_volume"]


wildcard_constraints:
    prefix="[^/]+",


def resampled_volume_pattern():
    """Output pattern of the resampled volume for the configured saving mode."""
    return str(resampled_path(OUTPUT_PATH, "{prefix}", config["saving_mode"]))


def record_path(prefix):
    return f"{OUTPUT_PATH}/records/{prefix}.tsv"


def failure_record_path(prefix):
    return f"{OUTPUT_PATH}/records/failed/{prefix}.tsv"


def log_path(rule_name, prefix):
    return f"{OUTPUT_PATH}/logs/{rule_name}/{prefix}.log"


def input_volume_pattern():
    """Each volume's input file (settings.discover_volumes: `<prefix>.nii.gz` or `.nii`).

    A pattern when every input has the same suffix (the usual case), a look-up otherwise:
    with 10,000 volumes every function a rule calls per job adds about half a second to
    planning (docs/benchmarks.md).
    """
    suffixes = {path.name[len(prefix) :] for prefix, path in VOLUMES.items()}
    if len(suffixes) == 1:
        return str(Path(config["nii_folder"]) / f"{{prefix}}{suffixes.pop()}")
    return lambda wildcards: str(VOLUMES[wildcards.prefix])


# The per-volume jobs run `python3 scripts/resample.py` (resample.smk): make that this
# interpreter, with its packages, even when its venv is not activated (as Snakemake does for
# `script:`). With --use-conda the job activates its environment, whose python3 comes first.
put_python_first_on_path(sys.executable)
RESAMPLE_SCRIPT = str(WORKFLOW_ROOT / "scripts" / "resample.py")


def get_final_output():
    """The resampled volumes, the manifest and, with `qc: true`, the QC pictures (qc.smk)."""
    volumes = [
        str(resampled_path(OUTPUT_PATH, prefix, config["saving_mode"]))
        for prefix in VOLUMES
    ]
    outputs = volumes + [f"{OUTPUT_PATH}/manifest.tsv"]
    if config["qc"]:
        outputs += [f"{OUTPUT_PATH}/qc/{prefix}.png" for prefix in VOLUMES]
        outputs += [
            f"{OUTPUT_PATH}/qc/dataset/overview.png",
            f"{OUTPUT_PATH}/qc/dataset/manifest.html",
        ]
    return outputs


def get_resample_arguments(wildcards):
    """Options of the per-volume job, as its command-line words; a change in any of them
    reruns the volume (Snakemake compares params)."""
    keep_going_inside_cluster_groups()
    return job_arguments(job_options(config, VOLUMES[wildcards.prefix].name))


def estimate_mem_mb(wildcards, input, attempt):
    """Memory request (MB) from the volume's header (nii_resample.resources: calibrated on
    measured peaks of every path a volume can take); never raises (a raise aborts the run).
    """
    options = job_options(config, VOLUMES[wildcards.prefix].name)
    return estimate_mem_mb_for_file(input.volume, DESIRED_VOLUME, options, attempt)


def expected_jobs():
    """Per volume: where its output, failure record, record and log are, and its options
    (for the failure report, and the manifest: a record deleted by hand is rebuilt)."""
    return [
        {
            "input_path": str(path),
            "output_path": str(
                resampled_path(OUTPUT_PATH, prefix, config["saving_mode"])
            ),
            "failure_path": failure_record_path(prefix),
            "record_path": record_path(prefix),
            "log": log_path("resample_volume", prefix),
            "options": job_options(config, path.name),
        }
        for prefix, path in VOLUMES.items()
    ]
