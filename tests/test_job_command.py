"""The per-volume job is a shell command (`python3 -S scripts/resample_job.py ...`): it runs the
options the workflow computed, with the interpreter that runs Snakemake, and its record
(the manifest row) exists exactly when its volume does."""

import itertools
import os
import shlex
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest

from support import REPO, run_snakemake
from nii_resample.command import build_parser, job_arguments
from nii_resample.settings import DEFAULTS, job_options, normalise_config



@pytest.mark.parametrize(
    "engine, interpolation, antialias, label_interpolation, compression_level, name",
    list(itertools.product(
        ("fast", "itk"), ("bspline", "nearest"), (True, False), ("linear_argmax", "nearest"),
        (1, 9), ("ct.nii.gz", "ct_seg.nii.gz", "it's a scan.nii.gz"),
    )),
)
def test_command_line_carries_every_option(
    engine, interpolation, antialias, label_interpolation, compression_level, name
):
    config = normalise_config({
        "nii_folder": "in", "output_path": "out", "desired_volume": [7, 300, 1],
        "engine": engine, "interpolation": interpolation, "antialias": antialias,
        "label_interpolation": label_interpolation, "compression_level": compression_level,
        "label_maps": ["*_seg.nii.gz"],
    })
    options = job_options(config, name)
    words = ["in dir/" + name, "out.nii.gz", *shlex.split(job_arguments(options))]
    parsed = vars(build_parser().parse_args(words))
    assert parsed["in_path"] == "in dir/" + name
    assert {key: parsed[key] for key in options} == options
    assert parsed["threads"] == DEFAULTS["threads_per_job"]


def test_job_files_go_together(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nii_resample", "volume", "in.nii.gz", "out.nii.gz", "4", "4", "4",
         "--log", str(tmp_path / "job.log")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert result.returncode == 2
    assert "--log, --record and --failure-record go together" in result.stderr


def test_jobs_use_the_interpreter_running_snakemake(tmp_path, make_dataset):
    """Snakemake started by its full path, its venv not on PATH (not activated) and another
    python3 first on PATH: the jobs must still run this interpreter, with its packages."""
    folder, _ = make_dataset(names=("ct",))
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "python3").write_text("#!/bin/sh\necho 'wrong python3' >&2\nexit 3\n")
    (decoy / "python3").chmod(0o755)
    run_snakemake(
        tmp_path / "work",
        {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
         "desired_volume": [8, 8, 8]},
        env={"PATH": f"{decoy}:/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert nib.load(tmp_path / "out" / "ct" / "ct_resampled.nii.gz").shape == (8, 8, 8)


def test_record_is_written_just_before_the_volume_appears(tmp_path, make_dataset):
    """A volume never exists without its record (a kill between the two leaves neither)."""
    from nii_resample.volume import resample_volume

    _, inputs = make_dataset(names=("ct",))
    target = tmp_path / "out" / "ct_resampled.nii.gz"
    seen = {}

    def before_commit(row):
        seen["volume_existed"] = target.exists()
        seen["partials"] = list(target.parent.glob(".ct_resampled.nii.gz.*.partial"))
        seen["row"] = dict(row)

    row = resample_volume(inputs["ct"], target, (8, 8, 8), before_commit=before_commit)
    assert seen["volume_existed"] is False and len(seen["partials"]) == 1
    assert seen["row"] == row and row["seconds"] > 0
    assert target.exists() and not list(target.parent.glob("*.partial"))


def test_a_failed_job_removes_only_what_it_made(tmp_path):
    """A record it did not write (an earlier run's, or a newer run's while this job is an
    orphan of a killed run) is not its to remove: the manifest reads records only of volumes
    that exist, and a failed job leaves no volume."""
    from nii_resample.jobs import run_resample_job

    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a NIfTI file")
    record, failure = tmp_path / "records" / "broken.tsv", tmp_path / "failed" / "broken.tsv"
    record.parent.mkdir()
    record.write_text("input_path\tstatus\nold\tok\n")  # left by an earlier, good run
    status = run_resample_job(broken, tmp_path / "out.nii.gz", record, failure,
                              tmp_path / "job.log", [4, 4, 4])
    assert status == 1
    assert record.read_text() == "input_path\tstatus\nold\tok\n" and failure.exists()
    assert not (tmp_path / "out.nii.gz").exists()


def test_kind_defaults_to_detection_and_label_map_stays_an_alias():
    def kind(*words):
        return build_parser().parse_args(["in.nii.gz", "out.nii.gz", "4", "4", "4", *words]).kind

    assert kind() == "auto"
    assert kind("--label-map") == "label_map"
    assert kind("--kind", "image") == "image"
    config = normalise_config({"nii_folder": "in", "output_path": "out",
                               "desired_volume": [4, 4, 4], "images": ["*_T1w.nii.gz"]})
    assert job_options(config, "case_001.nii.gz")["kind"] == "auto"
    assert job_options(config, "sub-01_T1w.nii.gz")["kind"] == "image"
