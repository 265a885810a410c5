"""Python API with the signature users know from `resampling_dataset`.

It checks its arguments exactly as the workflow checks config/config.yaml and runs the same
per-volume function as the workflow's jobs, so both write byte-identical volumes.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from .errors import VolumeError
from .records import RECORD_COLUMNS, tsv_bytes, write_failures_report
from .nifti import atomic_write_bytes
from .settings import (
    check_output_location,
    discover_volumes,
    job_options,
    normalise_config,
    resampled_path,
)
from .volume import resample_volume


class ResamplingFailed(RuntimeError):
    """Some volumes could not be resampled (the others were); `failures` lists why."""

    def __init__(self, failures: list[dict], written: list[str]):
        self.failures, self.written = failures, written
        lines = [f"{len(failures)} volume(s) could not be resampled:"]
        lines += [f"  {failure['reason']}" for failure in failures]
        super().__init__("\n".join(lines))


def _resample_one(job: dict) -> dict:
    try:
        return resample_volume(job["in_path"], job["out_path"], **job["options"])
    except VolumeError as error:
        return {"input_path": str(job["in_path"]), "output_path": str(job["out_path"]),
                "status": "failed", "reason": str(error)}


def _progress_bar(total: int, enabled):
    from tqdm.auto import tqdm

    # disable=None: tqdm stays quiet when stderr is not a terminal (logs, CI, pipes).
    return tqdm(total=total, unit="volume", desc="Resampling", disable=None if enabled is None
                else not enabled, file=sys.stderr)


def resampling_dataset(
    nii_folder,
    output_path,
    desired_volume,
    saving_mode: str = "case",
    debug: bool = False,
    *,
    cores: int | None = None,
    engine: str = "fast",
    interpolation: str = "bspline",
    antialias: bool = True,
    label_maps=(),
    images=(),
    detect_label_maps: bool = True,
    label_interpolation: str = "linear_argmax",
    compression_level: int = 1,
    threads_per_job: int = 1,
    progress: bool | None = None,
) -> list[str]:
    """Resample every `.nii.gz` in `nii_folder` to `desired_volume` = (X, Y, Z) voxels.

    Outputs go to `output_path/<prefix>/<prefix>_resampled.nii.gz` (saving_mode "case") or
    `output_path/<prefix>_resampled.nii.gz` ("folder"), with `manifest.tsv` beside them.
    Returns the written paths, in file-name order. Raises FileNotFoundError for a missing
    folder or one without volumes, ValueError for a bad `desired_volume`, `saving_mode` or
    option, and ResamplingFailed (after all other volumes are done) if some volumes fail.
    `cores` defaults to all CPUs; `progress` None shows a bar only on a terminal.
    """
    config = normalise_config(
        {
            "nii_folder": os.fspath(nii_folder),
            "output_path": os.fspath(output_path),
            "desired_volume": desired_volume,
            "saving_mode": saving_mode,
            "debug": debug,
            "qc": False,  # QC pictures are the workflow's (snakemake --report)
            "engine": engine,
            "interpolation": interpolation,
            "antialias": antialias,
            "label_maps": list(label_maps),
            "images": list(images),
            "detect_label_maps": detect_label_maps,
            "label_interpolation": label_interpolation,
            "compression_level": compression_level,
            "threads_per_job": threads_per_job,
        }
    )
    volumes = discover_volumes(config["nii_folder"])
    check_output_location(config)
    jobs = [
        {
            "in_path": path,
            "out_path": resampled_path(config["output_path"], prefix, config["saving_mode"]),
            "options": {**job_options(config, path.name), "threads": config["threads_per_job"]},
        }
        for prefix, path in volumes.items()
    ]
    workers = max(1, min(int(cores or os.cpu_count() or 1), len(jobs)))
    results = []
    with _progress_bar(len(jobs), progress) as bar:
        if workers == 1:
            for job in jobs:
                results.append(_resample_one(job))
                bar.update()
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for future in as_completed([pool.submit(_resample_one, job) for job in jobs]):
                    results.append(future.result())
                    bar.update()
    results.sort(key=lambda row: row["input_path"])
    done = [row for row in results if row["status"] == "ok"]
    failures = [{**row, "log": ""} for row in results if row["status"] != "ok"]
    out = Path(config["output_path"])
    atomic_write_bytes(out / "manifest.tsv", tsv_bytes(RECORD_COLUMNS, done))
    write_failures_report(out / "failures.tsv", failures)
    written = [row["output_path"] for row in done]
    if config["debug"]:
        from .report import print_summary

        print_summary(config, out / "manifest.tsv", len(jobs))
    if failures:
        raise ResamplingFailed(failures, written)
    return written
