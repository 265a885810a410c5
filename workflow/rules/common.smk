"""The plan: config checks, volume discovery, paths and input functions (the runtime
plumbing, locks, resident worker and scheduling, is runtime.smk's)."""

import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

# This workflow's own folder: found from this file, not from the Snakefile that Snakemake
# runs, which is another workflow's when this one is used as a module (README).
WORKFLOW_ROOT = Path(workflow.current_basedir).parents[1]
# The per-volume logic lives in an importable package (src/nii_resample).
sys.path.insert(0, str(WORKFLOW_ROOT / "src"))

from nii_resample.errors import ConfigError, InputFolderError
from nii_resample.command import job_arguments
from nii_resample.resources import estimate_job_mem_mb
from nii_resample.plan import (
    dataset_qc_pictures,
    failure_record_file,
    fingerprint_lines,
    log_file,
    output_file,
    output_pattern,
    plan_run,
    qc_picture,
    record_file,
)
from nii_resample.settings import job_options, normalise_config

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

    # Where its files go (nii_resample.plan: the one home of the layout).
    def output_file(self, key):
        return output_file(self.grid, key, self.config["saving_mode"])

    def output_pattern(self):
        recursive = self.config["recursive"]
        return output_pattern(self.root, self.config["saving_mode"], recursive)

    def record(self, key):
        return record_file(self.root, key)

    def failure_record(self, key):
        return failure_record_file(self.root, key)

    def log(self, rule, key):
        return log_file(self.root, rule, key)

    def qc_png(self, key):
        return qc_picture(self.root, key)

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
        them reruns the volume (Snakemake compares params). Evaluated per job, also in a
        cluster job's inner Snakemake: where it learns to keep going (runtime.smk)."""
        keep_going_inside_cluster_groups()
        key = volume_key(wildcards)
        words = job_arguments(self.options(key))
        if self.dataset.decodes:
            words = f"{words} --source {shlex.quote(str(self.dataset.volumes[key]))}"
        return words

    def estimate_mem_mb(self, wildcards, input, attempt):
        """Memory request (MB) from the volume's header (nii_resample.resources: calibrated
        on measured peaks of every path a volume can take); never raises (a raise aborts
        the run). Read from the input itself: a decoded copy does not exist yet; its
        header once (for the voxels written and the input's size)."""
        key = volume_key(wildcards)
        return estimate_job_mem_mb(
            self.dataset.volumes[key], self.options(key), attempt
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
        self.qc_pictures = dataset_qc_pictures(self.out)  # overview and manifest table
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


DATASETS = [Dataset(planned) for planned in PLAN]
TARGETS = [target for dataset in DATASETS for target in dataset.targets]


def get_final_output():
    """The resampled volumes, the manifests and, with `qc: true`, the QC pictures (qc.smk).
    No side effect (runtime.smk's prepare_run has them)."""
    outputs = []
    for dataset in DATASETS:
        outputs += dataset.outputs() + [dataset.manifest]
        if dataset.decodes:
            outputs += dataset.releases()
        if dataset.config["qc"]:
            outputs += [
                t.qc_png(key) for t in dataset.targets for key in dataset.volumes
            ]
            outputs += list(dataset.qc_pictures.values())
    return outputs
