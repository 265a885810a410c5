"""Everything that is not a rule: config checks, volume discovery, paths and input functions."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from glob import escape as glob_escape
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

# This workflow's own folder: found from this file, not from the Snakefile that Snakemake
# runs, which is another workflow's when this one is used as a module (README).
WORKFLOW_ROOT = Path(workflow.current_basedir).parents[1]
# The per-volume logic lives in an importable package (src/nii_resample).
sys.path.insert(0, str(WORKFLOW_ROOT / "src"))

from nii_resample.errors import ConfigError, InputFolderError
from nii_resample.command import job_arguments, put_python_first_on_path
from nii_resample.qc_figures import outdated_report_inputs
from nii_resample.resources import estimate_mem_mb_for_file
from nii_resample.stale_locks import (
    LockedError,
    claim_new_locks,
    lock_files,
    release_claims,
    release_stale_locks,
)
from nii_resample.plan import fingerprint_lines, output_file, plan_run
from nii_resample.processes import pid_is_gone, this_process
from nii_resample.workflow_worker import DISMISSED_MARK
from nii_resample.settings import (
    job_options,
    normalise_config,
    resampled_path,
)

# Fail before any job runs, with one sentence, on a bad config or input folder. The config
# is validated once, by normalise_config: the package's schema (src/nii_resample/
# config.schema.json) gives the defaults and the types `--config` strings are coerced to,
# then one jsonschema validation (not snakemake.utils.validate as well: that would validate
# a second time, and answer with jsonschema's own multi-line report).
try:
    config.update(normalise_config(config))
    PLAN = plan_run(config)
except (ConfigError, InputFolderError) as problem:
    raise WorkflowError(f"Invalid configuration: {problem}.") from None
# A spacing chosen from the dataset (desired_spacing: median|nnunet) is said once.
for planned in PLAN:
    for line in fingerprint_lines(planned):
        logger.warning(line)

# Running again after a kill -9 just resumes: outputs are written atomically (temporary
# name + rename), so a stale lock never guards a corrupt file. Only locks proven stale are
# removed (nii_resample.stale_locks): a live run elsewhere must never be unlocked.
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
            removed = release_stale_locks(
                [d["config"][k] for d in PLAN for k in ("output_path", "nii_folder")]
            )
        except LockedError as problem:
            raise WorkflowError(f"{problem}.") from None
        if removed:
            logger.warning(
                "An earlier run was killed: removed its stale lock; resuming."
            )
    LOCKS_BEFORE = lock_files(Path(".snakemake"))
    if not runs_jobs_on_this_host() or creates_report():
        dismiss_resident_worker()
    schedule_linearly_locally()
    refuse_outdated_report()
    return get_final_output()


def schedule_linearly_locally():
    """Without a cluster, keep Snakemake's cost per job flat however many volumes wait
    (docs/benchmarks.md, "Start-up per job"). Each scheduling round stats the input of every
    waiting job: consider 4 per core (at least 16) per round: a round starts at most one
    job per free core, and the volumes are independent (not with several grids, whose
    decode-then-resample order needs every priority seen). And lift
    the default limit of 100 job starts per second: it protects a cluster's scheduler, and
    locally adds a round per second per round before it (and ~1 s at the end). A value
    given on the command line is kept. Called once the settings exist (final_targets).
    """
    settings = workflow.scheduling_settings
    if settings is None or workflow.executor_plugin is None or on_cluster():
        return
    if settings.subsample is None and not any(d.decodes for d in DATASETS):
        cores = workflow.resource_settings.cores
        settings.subsample = max(16, 4 * cores) if isinstance(cores, int) else 100
    limit = settings.max_jobs_per_timespan
    # Snakemake's default, "100/1s":
    if limit is not None and limit.max_jobs == 100 and limit.timespan == 1:
        settings.max_jobs_per_timespan = None


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
    if not (any(d.config["qc"] for d in DATASETS) and creates_report()):
        return
    problems = []
    for dataset in DATASETS:
        volumes = [
            (str(path), str(target.output_file(key)), target.qc_png(key))
            for target in dataset.targets
            for key, path in dataset.volumes.items()
        ]
        pictures = [f"{dataset.out}/qc/dataset/overview.png"]
        pictures.append(f"{dataset.out}/qc/dataset/manifest.html")
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
    if executes():  # Snakemake has just locked: record that the lock is ours
        claim_new_locks(LOCKS_BEFORE)


def keep_going_inside_cluster_groups():
    """A cluster job running a group of volumes (rule groups, profile group-components) is an
    inner Snakemake started without --keep-going: one bad volume would stop the rest of its
    group. Let the group finish every volume; the group still reports the failure. (Called
    from an input function: execution settings do not exist yet while this file is read.)
    """
    if workflow.remote_exec and workflow.execution_settings is not None:
        workflow.execution_settings.keep_going = True


def threads_per_volume(threads_per_job):
    """Threads of a resample job: `threads_per_job`, except on a cluster with a `cores`
    setting (the SLURM profile's: a cluster job's CPUs), where every volume uses all of
    them, so that one setting says both (README, "Running on a cluster"). Evaluated per
    job, when the executor is known (it is not while this file is read)."""

    def threads(wildcards):
        cores = workflow.resource_settings.cores
        if workflow.remote_exec:
            cores = cluster_job_cpus(cores)
        if on_cluster() and isinstance(cores, int) and cores > 0:
            return cores
        return threads_per_job

    return threads


def on_cluster():
    """Whether jobs go to a cluster: this Snakemake submits them (a non-local executor), or
    is itself the inner one of a cluster job. Known once the executor is (input functions,
    per-job callables), not while this file is read."""
    plugin = workflow.executor_plugin
    return workflow.remote_exec or (
        plugin is not None and not plugin.common_settings.local_exec
    )


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


wildcard_constraints:
    prefix="[^/]+",
    rel="(?:[^/]+/)*",


def rule_name(base, *names):
    """`base`, or base_<dataset>_<grid> for named datasets and grids (letters, digits, _)."""
    return "_".join([base, *(re.sub(r"\W", "_", name) for name in names if name)])


class Target:
    """One dataset on one grid: the patterns and functions of its resample and QC rules."""

    def __init__(self, dataset, grid):
        self.dataset, self.grid, self.config = dataset, grid, dataset.config
        self.root = str(Path(grid["root"]))
        # {rel}: the volume's folder below nii_folder (recursive), empty or ending in "/".
        self.key = "{rel}{prefix}" if self.config["recursive"] else "{prefix}"

    def rule(self, base):
        return rule_name(base, self.dataset.name, self.grid["name"])

    def output_file(self, key):
        return output_file(self.grid, key, self.config["saving_mode"])

    def output_pattern(self):
        if self.config["saving_mode"] == "case":
            return f"{self.root}/{self.key}/{{prefix}}_resampled.nii.gz"
        return f"{self.root}/{self.key}_resampled.nii.gz"

    def record(self, key):
        return f"{self.root}/records/{key}.tsv"

    def failure_record(self, key):
        return f"{self.root}/records/failed/{key}.tsv"

    def log(self, rule, key):
        return f"{self.root}/logs/{rule}/{key}.log"

    def qc_png(self, key):
        return f"{self.root}/qc/{key}.png"

    def input_volume(self):
        """The file the job reads: the input, or with several grids its decoded copy."""
        if self.dataset.decodes:
            return self.dataset.decoded_input
        return self.dataset.input_volume_pattern()

    def source_volume(self):
        """The input itself, also an input when the job reads a decoded copy: a changed
        input reruns every grid (the decoded copy is ancient(): see Dataset.decoded_input).
        """
        return self.dataset.input_volume_pattern() if self.dataset.decodes else []

    def options(self, key):
        name, case = self.dataset.volumes[key].name, self.dataset.cases.get(key)
        return job_options(self.config, name, self.grid, case)

    def grid_inputs(self):
        """Files the grid comes from: a reference volume, or a member's case image (its
        header gives the grid: a changed image reruns its members). Static when no volume
        is a member: a function per job costs planning time (docs/benchmarks.md)."""
        if self.grid.get("reference"):
            return self.grid["reference"]
        if not self.dataset.cases:
            return []
        return lambda wildcards: [
            str(case[0])
            for case in [self.dataset.cases.get(volume_key(wildcards))]
            if case is not None
        ]

    def arguments(self, wildcards):
        """Options of the per-volume job, as its command-line words; a change in any of
        them reruns the volume (Snakemake compares params)."""
        keep_going_inside_cluster_groups()
        key = volume_key(wildcards)
        words = job_arguments(self.options(key))
        if self.dataset.decodes:
            words = f"{words} --source {shlex.quote(str(self.dataset.volumes[key]))}"
        return words

    def estimate_mem_mb(self, wildcards, input, attempt):
        """Memory request (MB) from the volume's header (nii_resample.resources: calibrated
        on measured peaks of every path a volume can take); never raises (a raise aborts
        the run). Read from the input itself: a decoded copy does not exist yet."""
        key = volume_key(wildcards)
        options = self.options(key)
        path = self.dataset.volumes[key]
        return estimate_mem_mb_for_file(
            path, target_size(path, options), options, attempt
        )

    def expected_jobs(self):
        """Per volume: where its output, failure record, record and log are, its grid and
        options (for the failure report, and the manifest: a deleted record is rebuilt).
        """
        return [
            {
                "input_path": str(path),
                "output_path": str(self.output_file(key)),
                "failure_path": self.failure_record(key),
                "record_path": self.record(key),
                "log": self.log("resample_volume", key),
                "grid": self.grid["label"],
                "options": self.options(key),
                # A volume that cannot be decoded fails in decode_volume: its log says why.
                **(
                    {"decode_log": self.dataset.decode_log(key)}
                    if self.dataset.decodes
                    else {}
                ),
            }
            for key, path in self.dataset.volumes.items()
        ]


class Dataset:
    """One dataset (a nii_folder and its output_path) and its targets, one per grid."""

    def __init__(self, planned):
        self.name, self.config = planned["name"], planned["config"]
        self.volumes, self.cases = planned["volumes"], planned["cases"]
        self.fingerprints = planned["fingerprints"]
        self.out = str(Path(self.config["output_path"]))
        self.fingerprint_file = f"{self.out}/dataset.json"
        self.manifest = f"{self.out}/manifest.tsv"
        self.targets = [Target(self, grid) for grid in planned["grids"]]
        # Several grids: each .nii.gz is decoded once (rule decode_volume) for all of them.
        self.decodes = len(self.targets) > 1 and any(map(self.is_gzip, self.volumes))

    def rule(self, base):
        return rule_name(base, self.name)

    def is_gzip(self, key):
        return self.volumes[key].name.endswith(".gz")

    def decoded(self, key):
        return f"{self.out}/.decoded/{key}.nii"

    def released(self, key):
        return f"{self.out}/.decoded/{key}.released"

    def decoded_input(self, wildcards):
        """The decoded copy, ancient(): once every grid of the volume is done it is emptied
        (rule release_decoded) but kept, so that a grid changed later reruns alone (its
        job then reads the input itself) instead of recreating the copy, which would make
        Snakemake rerun every grid that reads it."""
        key = volume_key(wildcards)
        return (
            ancient(self.decoded(key)) if self.is_gzip(key) else str(self.volumes[key])
        )

    def grid_outputs(self, wildcards):
        key = volume_key(wildcards)
        return [str(target.output_file(key)) for target in self.targets]

    def releases(self):
        return [self.released(key) for key in self.volumes if self.is_gzip(key)]

    def input_volume_pattern(self):
        """Each volume's input file (settings.discover_volumes: `<prefix>.nii.gz` or `.nii`).

        A pattern when every input has the same suffix (the usual case), a look-up
        otherwise: with 10,000 volumes every function a rule calls per job adds about half
        a second to planning (docs/benchmarks.md).
        """
        suffixes = {
            path.name[len(key.rpartition("/")[2]) :]
            for key, path in self.volumes.items()
        }
        if len(suffixes) == 1:
            key = self.targets[0].key
            return str(Path(self.config["nii_folder"]) / f"{key}{suffixes.pop()}")
        return lambda wildcards: str(self.volumes[volume_key(wildcards)])

    def decode_input(self):
        """The input of decode_volume, ancient(): a changed input must not rerun the decode
        (Snakemake would then skip the grids' own check of the input, as they read the
        ancient() copy); each grid's job sees the changed input itself (its `source`)
        and reads it directly, since the copy is then older (nii_resample.jobs)."""
        pattern = self.input_volume_pattern()
        if isinstance(pattern, str):
            return ancient(pattern)
        return lambda wildcards: ancient(pattern(wildcards))

    def decode_log(self, key):
        return f"{self.out}/logs/decode_volume/{key}.log"

    def decode_failures(self, wildcards):
        """Each grid's failure record and output, for a gzip that cannot be decoded."""
        key = volume_key(wildcards)
        pairs = [(t.failure_record(key), str(t.output_file(key))) for t in self.targets]
        return " ".join(
            f"--failure-record {shlex.quote(rec)} {shlex.quote(out)}"
            for rec, out in pairs
        )

    def outputs(self):
        return [str(t.output_file(key)) for t in self.targets for key in self.volumes]

    def expected_jobs(self):
        return [job for target in self.targets for job in target.expected_jobs()]


def volume_key(wildcards):
    """The volume's key in its dataset: its relative path without suffix."""
    return wildcards.get("rel", "") + wildcards.prefix


def target_size(path, options):
    """The voxels a job writes (nii_resample.ongrid.planned_size), from headers."""
    from nii_resample.ongrid import planned_size

    return planned_size(path, options)


DATASETS = [Dataset(planned) for planned in PLAN]
TARGETS = [target for dataset in DATASETS for target in dataset.targets]


# The per-volume jobs run `python3 -S scripts/resample_job.py` (resample.smk): make that this
# interpreter, with its packages, even when its venv is not activated (as Snakemake does for
# `script:`). With --use-conda the job activates its environment, whose python3 comes first.
put_python_first_on_path(sys.executable)
# Every job imports this workflow's own package (src/), never another version installed in
# the environment: through PYTHONPATH, which Snakemake's jobs inherit (scripts/manifest.py is
# kept byte for byte as it was before src/ existed: a changed `script:` file reruns its rule).
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(WORKFLOW_ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
)
RESAMPLE_SCRIPT = str(WORKFLOW_ROOT / "scripts" / "resample_job.py")


WORKER_VARIABLES = (
    "NII_RESAMPLE_WORKER_DIR",
    "NII_RESAMPLE_WORKER_OWNER",
    "NII_RESAMPLE_WORKER_JOB",
)


def name_resident_worker():
    """Let the resample jobs of this Snakemake (the run's, or the inner one of a cluster
    job: never shared across nodes) use one resident worker (nii_resample.workflow_worker): its
    folder, owner and SLURM job go to the jobs through the environment, not the command
    line, which must not change between runs (Snakemake would rerun every job).
    NII_RESAMPLE_WORKER=0 turns it off: each job then runs in-process, as
    `python -m nii_resample volume`."""
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
    start_resident_worker_early()


def is_this_slurm_jobs_worker(inherited, host):
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


RESIDENT_WORKER_STARTER = None


def start_resident_worker_early():
    """Start the run's worker now, while Snakemake still reads this file and plans: its
    ~0.2 s start (numpy, nibabel) then overlaps Snakemake's own, instead of holding up the
    first jobs (docs/benchmarks.md, "Start-up per job"). The starter is the jobs' own
    client (scripts/resample_job.py): whichever of it and the first job comes first starts
    the worker, the other one uses it. Not for a dry run, not in Snakemake's subprocesses,
    not when the jobs run in environments of their own (--use-conda: each python3 has its
    own worker); a run that turns out to run no job here (a cluster executor, --touch)
    dismisses it (final_targets)."""
    global RESIDENT_WORKER_STARTER
    python3 = shutil.which("python3")  # the jobs' python3 (put_python_first_on_path)
    if (
        python3 is None
        or workflow.output_settings.dryrun
        or workflow.deployment_settings.deployment_method
        or not (workflow.is_main_process or workflow.remote_exec)
    ):
        return
    # The worker computes nothing itself: one thread per pool at import; each job sets its
    # own threads in the forked child.
    threads = {
        name: "1"
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    RESIDENT_WORKER_STARTER = subprocess.Popen(
        [python3, "-S", RESAMPLE_SCRIPT, "--start-worker"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **threads},
    )
    # Reaped as soon as it ends (once the worker listens): no zombie for the run's length.
    threading.Thread(target=RESIDENT_WORKER_STARTER.wait, daemon=True).start()


def dismiss_resident_worker():
    """A run that runs no job on this host (a cluster executor's, --touch, a report): end
    the worker started early. Its folder gets a `dismissed` mark, which the worker reads once
    it listens, and loses its sockets, which a listening worker watches
    (nii_resample.workflow_worker): either way it ends at once."""
    folder = os.environ.get("NII_RESAMPLE_WORKER_DIR")
    if RESIDENT_WORKER_STARTER is None or not folder:
        return
    os.makedirs(folder, mode=0o700, exist_ok=True)
    Path(folder, DISMISSED_MARK).touch()
    for socket_path in Path(folder).glob("*.sock"):
        socket_path.unlink(missing_ok=True)


def runs_jobs_on_this_host():
    """Whether this invocation runs jobs here: a local run, or a cluster job's inner
    Snakemake (known once the executor is, i.e. from an input function)."""
    plugin = workflow.executor_plugin
    return (
        plugin is not None
        and not workflow.dryrun
        and not workflow.touch
        and (plugin.common_settings.local_exec or workflow.remote_exec)
    )


def remove_ended_runs_folders(runs, host):
    """The worker folders of this host's runs that have ended (a worker that stopped while
    its run went on leaves its folder: its run may start another one)."""
    for folder in runs.glob(f"{glob_escape(host)}-*-*"):
        pid, start = folder.name[len(host) + 1 :].split("-", 1)
        if pid.isdigit() and pid_is_gone(int(pid), start):
            shutil.rmtree(folder, ignore_errors=True)


name_resident_worker()


def get_final_output():
    """The resampled volumes, the manifests and, with `qc: true`, the QC pictures (qc.smk)."""
    outputs = []
    for dataset in DATASETS:
        outputs += dataset.outputs() + [dataset.manifest]
        if dataset.decodes:
            outputs += dataset.releases()
        if dataset.config["qc"]:
            outputs += [
                t.qc_png(key) for t in dataset.targets for key in dataset.volumes
            ]
            outputs += [
                f"{dataset.out}/qc/dataset/overview.png",
                f"{dataset.out}/qc/dataset/manifest.html",
            ]
    return outputs
