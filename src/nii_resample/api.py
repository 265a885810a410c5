"""Python API with the signature users know from `resampling_dataset`.

It checks its arguments exactly as the workflow checks config/config.yaml and runs the same
per-volume function as the workflow's jobs, so both write byte-identical volumes. The
volumes are resampled in `python -m nii_resample.api_worker` subprocesses, never through
multiprocessing: nothing re-imports the caller's script, so the API works from a script
without a main guard, an interactive session or a notebook, and a worker that crashes costs
only its current volume.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .errors import one_line
from .files import atomic_write_bytes, remove_stale_partials
from .fingerprint import RESULT_FILE, dataset_json
from .records import failed_row, write_failures_report, write_manifest
from .plan import fingerprint_lines, output_file, plan_run
from .options import DEFAULTS, options_doc
from .settings import job_options, normalise_config

# Config keys that are not options of the API, and why. Every other key is a parameter of
# resampling_dataset with the schema's default (tests/test_options.py checks it).
NOT_IN_API = {
    "qc": "QC pictures and the report are the workflow's (snakemake --report)",
    "datasets": "one call resamples one folder: call resampling_dataset once per dataset",
}
# The plain options (those with a default), passed on to the config as they are.
API_OPTIONS = tuple(key for key in DEFAULTS if key not in NOT_IN_API)


class ResamplingFailed(RuntimeError):
    """Some volumes could not be resampled (the others were); `failures` lists why."""

    def __init__(self, failures: list[dict], written: list[str]):
        self.failures, self.written = failures, written
        lines = [f"{len(failures)} volume(s) could not be resampled:"]
        lines += [f"  {failure['reason']}" for failure in failures]
        super().__init__("\n".join(lines))


def _worker_environment() -> dict:
    """The caller's environment with this package's parent folder first on PYTHONPATH, so
    that the workers import the very package the caller imported."""
    parent = str(Path(__file__).resolve().parents[1])
    paths = [parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _death_reason(returncode: int) -> str:
    if returncode < 0:
        number = -returncode
        meaning = ("killed, e.g. out of memory" if number == getattr(signal, "SIGKILL", 9)
                   else (signal.strsignal(number) or "unknown signal").lower())
        return f"the worker process died (signal {number}: {meaning})"
    return f"the worker process died (exit status {returncode})"


class ApiWorkerProcess:
    """One worker process of the Python API (`python -m nii_resample.api_worker`), doing one
    job at a time; a thread puts each of its answers, and None when it ends, on the pool's
    queue. (The workflow's worker is another kind: workflow_worker.ResidentWorker.)"""

    def __init__(self, answers: queue.Queue):
        self.job = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nii_resample.api_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, encoding="utf-8", env=_worker_environment())
        self.reader = threading.Thread(target=self._read, args=(answers,), daemon=True)
        self.reader.start()

    def _read(self, answers: queue.Queue) -> None:
        for line in self.process.stdout:
            answers.put((self, line))
        answers.put((self, None))

    def send(self, job: dict) -> None:
        self.job = job
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it has died: its end of output follows on the queue and names the job

    def stop(self) -> None:
        """Idle: let it finish reading; busy (the caller stopped early): kill it, and remove
        the temporary file its volume may have left."""
        if self.job is not None:
            self.process.kill()
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=5)
        if self.job is not None:
            for output in self.job["outputs"]:
                remove_stale_partials(output["out_path"])


def run_in_workers(jobs: list[dict], workers: int, done) -> list[dict]:
    """Every job's row, from `workers` worker processes; `done()` after each volume. A worker
    that dies costs only its current volume (reported failed); a new one takes the rest."""
    waiting, answers, pool, rows = list(reversed(jobs)), queue.Queue(), [], []
    try:
        for _ in range(workers):
            pool.append(ApiWorkerProcess(answers))
            pool[-1].send(waiting.pop())
        while any(worker.job is not None for worker in pool):
            worker, line = answers.get()
            job, worker.job = worker.job, None
            if line is None:  # it died (a crash, the kernel's out-of-memory killer)
                pool.remove(worker)
                reason = _death_reason(worker.process.wait())
                if job is not None:
                    for output in job["outputs"]:
                        remove_stale_partials(output["out_path"])
                        reason_line = one_line(f"{Path(job['in_path']).name}: {reason}")
                        rows.append(failed_row(job["in_path"], output["out_path"], reason_line,
                                               output.get("grid", "")))
                    done()
                if waiting:
                    pool.append(worker := ApiWorkerProcess(answers))
            else:
                rows += json.loads(line)
                done()
            if waiting:
                worker.send(waiting.pop())
    finally:
        for worker in pool:
            worker.stop()
    return rows


def worker_count(cores) -> int:
    """`cores` checked (None: all CPUs); 0 or -1 must not quietly mean something else."""
    if cores is None:
        return os.cpu_count() or 1
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores must be a positive integer or None (all CPUs), got {cores!r}")
    return cores


def progress_bar(total: int, enabled):
    from tqdm.auto import tqdm

    # disable=None: tqdm stays quiet when stderr is not a terminal (logs, CI, pipes).
    return tqdm(total=total, unit="volume", desc="Resampling", disable=None if enabled is None
                else not enabled, file=sys.stderr)


def _grid_keys(desired_volume, desired_spacing, grids, reference=None) -> dict:
    """The config keys of the one grid option given; two of them is a ValueError (the
    precedence of the config files is for merged layers, not for one call)."""
    given = {
        key: value
        for key, value in (
            ("desired_volume", desired_volume),
            ("desired_spacing", desired_spacing),
            ("grids", grids),
            ("reference", None if reference is None else os.fspath(reference)),
        )
        if value is not None
    }
    if len(given) != 1:
        raise ValueError(
            "give exactly one of desired_volume, desired_spacing, grids and reference, got "
            + (", ".join(given) or "none")
        )
    if "desired_spacing" in given and not isinstance(given["desired_spacing"], str):
        given["desired_spacing"] = list(given["desired_spacing"])  # a rule stays a word
    return given


def resampling_dataset(
    nii_folder,
    output_path,
    desired_volume=None,
    saving_mode: str = "case",
    debug: bool = False,
    *,
    desired_spacing=None,
    grids: dict | None = None,
    reference=None,
    crop_or_pad=(),
    pad_to_multiple: int = 1,
    pad_value: float | None = None,
    recursive: bool = False,
    cases="auto",
    cores: int | None = None,
    engine: str = "fast",
    interpolation: str = "bspline",
    antialias: bool = True,
    label_maps=(),
    images=(),
    detect_label_maps: bool = True,
    label_interpolation: str = "volume_preserving",
    compression_level: int = 1,
    threads_per_job: int = 1,
    orientation: str = "keep",
    progress: bool | None = None,
) -> list[str]:
    """Resample every `.nii.gz` in `nii_folder` to `desired_volume` = (X, Y, Z) voxels, or to
    `desired_spacing` = (sx, sy, sz) mm, or onto several `grids` = {name: {"desired_volume":
    (X, Y, Z)} or {"desired_spacing": (sx, sy, sz)}} (give one of the three; each grid is
    written under output_path/<name>/, each volume read and decoded once for all of them;
    a grid may also be {"reference": path}), or onto the exact grid of the volume `reference`.
    A case's label maps and channels take its image's grid (`cases`; README, "Cases").

    Outputs go to `output_path/<prefix>/<prefix>_resampled.nii.gz` (saving_mode "case") or
    `output_path/<prefix>_resampled.nii.gz` ("folder"), with `manifest.tsv` beside them;
    `recursive` also takes the volumes of sub-folders, keeping their relative folder.
    Returns the written paths, in file-name order. Raises FileNotFoundError for a missing
    folder or one without volumes, ValueError for a bad `desired_volume`, `saving_mode` or
    option, and ResamplingFailed (after all other volumes are done) if some volumes fail.
    `cores` defaults to all CPUs; `progress` None shows a bar only on a terminal.

    The options that are config keys (config/README.md; from the config schema):
    """
    given = locals()
    config = normalise_config(
        {
            "nii_folder": os.fspath(nii_folder),
            "output_path": os.fspath(output_path),
            **_grid_keys(desired_volume, desired_spacing, grids, reference),
            **{key: given[key] for key in API_OPTIONS},
        }
    )
    [dataset] = plan_run(config)
    for line in fingerprint_lines(dataset):
        print(f"nii-resample: {line}", file=sys.stderr)
    jobs = [
        {
            "in_path": str(path),
            "outputs": [
                {
                    "out_path": str(output_file(grid, key, config["saving_mode"])),
                    "grid": grid["label"],
                    "options": {
                        **job_options(config, path.name, grid, dataset["cases"].get(key)),
                        "threads": config["threads_per_job"],
                    },
                }
                for grid in dataset["grids"]
            ],
        }
        for key, path in dataset["volumes"].items()
    ]
    workers = min(worker_count(cores), len(jobs))
    with progress_bar(len(jobs), progress) as bar:
        results = run_in_workers(jobs, workers, bar.update)
    results.sort(key=lambda row: (row["input_path"], row["output_path"]))
    done = [row for row in results if row["status"] == "ok"]
    failures = [{**row, "log": ""} for row in results if row["status"] != "ok"]
    out = Path(config["output_path"])
    # As the workflow's manifest: every volume, the failed ones with status failed.
    write_manifest(out / "manifest.tsv", results)
    if dataset["fingerprints"]:
        atomic_write_bytes(out / RESULT_FILE, dataset_json(dataset["fingerprints"]))
    write_failures_report(out / "failures.tsv", failures)
    written = [row["output_path"] for row in done]
    if config["debug"]:
        from .summary import print_summary

        print_summary(config, out / "manifest.tsv", len(jobs), dataset["grids"])
    if failures:
        raise ResamplingFailed(failures, written)
    return written


if resampling_dataset.__doc__:  # None under python -OO
    resampling_dataset.__doc__ = resampling_dataset.__doc__.rstrip(" ") + options_doc(API_OPTIONS)
