"""nii_resample.snakemake_compat: each use of Snakemake's non-public API has a test here that
fails if Snakemake changes it (a settings field gone, the report's frame renamed, the lock
or "incomplete" file format changed), and a Snakemake outside the checked versions gets one
warning line."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest

from support import REPO
from nii_resample import snakemake_compat as compat
from nii_resample.snakemake_compat import Invocation, Mode

PROBE = """
import json, sys
sys.path.insert(0, {src!r})
from nii_resample.snakemake_compat import invocation, keep_going, schedule_linearly


def record(stage, **extra):
    facts = invocation(workflow)
    with open({out!r}, "a") as handle:
        handle.write(json.dumps({{
            "stage": stage, **{{k: v for k, v in facts.__dict__.items() if k != "cores"}},
            "mode": facts.mode.value, "holds_own_lock": facts.holds_own_lock,
            "runs_jobs_here": facts.runs_jobs_here, "on_cluster": facts.on_cluster,
            "may_run_jobs_here": facts.may_run_jobs_here, **extra,
        }}) + "\\n")


record("reading")


def targets(wildcards):
    settings = workflow.scheduling_settings
    if settings is not None:
        schedule_linearly(workflow, 7)
        record("dag", subsample=settings.subsample,
               limit=settings.max_jobs_per_timespan is None)
    else:
        record("dag")
    return ["a.txt"]


def options(wildcards):
    if invocation(workflow).cluster_job:
        keep_going(workflow)
        record("job", keep_going=workflow.execution_settings.keep_going)
    return "x"


rule all:
    input:
        targets,


rule a:
    output:
        "a.txt",
    params:
        options=options,
    shell:
        "touch {{output}}"
"""


def probe(tmp_path, *arguments) -> list[dict]:
    """Run Snakemake on a Snakefile that records what snakemake_compat sees."""
    out = tmp_path / "facts.jsonl"
    out.unlink(missing_ok=True)
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(PROBE.format(src=str(REPO / "src"), out=str(out)))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(tmp_path),
         "--cores", "1", *arguments],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def stage(records, name) -> dict:
    """What was seen at a stage (its last record: a params function runs more than once)."""
    found = [r for r in records if r["stage"] == name]
    assert found, f"no record of stage {name}: {records}"
    return found[-1]


def test_a_run_runs_jobs_here_under_its_own_lock_and_is_scheduled_linearly(tmp_path):
    records = probe(tmp_path)
    reading, dag = stage(records, "reading"), stage(records, "dag")
    # While the Snakefile is read the executor is unknown; -n, deployment, main are known.
    assert reading["mode"] == Mode.READING.value and reading["may_run_jobs_here"]
    assert dag["mode"] == Mode.LOCAL.value
    assert dag["holds_own_lock"] and dag["runs_jobs_here"] and not dag["on_cluster"]
    # The scheduling settings exist when rule all's input function runs, and are changed.
    assert dag["subsample"] == 7 and dag["limit"]


def test_the_job_scheduler_reads_the_settings_changed_while_the_dag_is_built():
    # checked on 9.27.1: the scheduler copies them when it starts, after the DAG is built.
    from snakemake.scheduling.job_scheduler import JobScheduler

    source = inspect.getsource(JobScheduler.__init__)
    for field in ("scheduling_settings.subsample", "scheduling_settings.max_jobs_per_timespan",
                  "execution_settings.keep_going"):
        assert f"self.workflow.{field}" in source, field


def test_snakemakes_default_job_rate_is_the_one_lifted():
    from snakemake.cli import get_argument_parser

    limit = get_argument_parser().parse_args([]).max_jobs_per_timespan
    assert (limit.max_jobs, limit.timespan) == (100, 1)
    settings = SimpleNamespace(subsample=3, max_jobs_per_timespan=limit)
    compat.schedule_linearly(SimpleNamespace(scheduling_settings=settings), 7)
    assert settings.subsample == 3 and settings.max_jobs_per_timespan is None  # 3: given


def test_a_dry_run_is_known_while_the_snakefile_is_read(tmp_path):
    records = probe(tmp_path, "-n")
    reading, dag = stage(records, "reading"), stage(records, "dag")
    assert reading["mode"] == Mode.DRY_RUN.value and not reading["may_run_jobs_here"]
    assert dag["mode"] == Mode.DRY_RUN.value
    assert not dag["holds_own_lock"] and not dag["runs_jobs_here"]


def test_touch_and_nolock(tmp_path):
    dag = stage(probe(tmp_path, "--touch"), "dag")
    assert dag["mode"] == Mode.TOUCH.value and not dag["runs_jobs_here"]
    assert not dag["holds_own_lock"]
    dag = stage(probe(tmp_path, "--nolock", "--forceall"), "dag")
    assert dag["mode"] == Mode.LOCAL.value and not dag["locks"] and not dag["holds_own_lock"]


def test_a_report_is_seen_from_snakemakes_create_report_frame(tmp_path):
    probe(tmp_path)
    dag = stage(probe(tmp_path, "--report", str(tmp_path / "report.html")), "dag")
    assert dag["mode"] == Mode.REPORT.value and dag["report"]
    assert not dag["runs_jobs_here"] and not dag["holds_own_lock"]


def test_a_cluster_jobs_inner_snakemake_keeps_going(tmp_path):
    # What a cluster job runs: Snakemake in remote mode, with the job's outputs as targets.
    records = probe(tmp_path, "--mode", "remote", "a.txt")
    job = stage(records, "job")
    assert job["mode"] == Mode.CLUSTER_JOB.value and job["cluster_job"]
    assert job["on_cluster"] and job["runs_jobs_here"] and not job["holds_own_lock"]
    assert job["keep_going"] is True


def test_the_inner_snakemake_gets_no_keep_going_from_the_outer_one():
    # The reason keep_going is set from the workflow: were --keep-going passed to a cluster
    # job, the workflow's own setting could go (then this fails: revisit snakemake_compat).
    from snakemake.spawn_jobs import SpawnedJobArgsFactory

    assert "keep_going" not in inspect.getsource(SpawnedJobArgsFactory.general_args)


def test_an_executor_says_whether_it_runs_jobs_here_or_is_a_dry_run():
    from snakemake_interface_executor_plugins.settings import CommonSettings

    assert "dryrun_exec" in {field.name for field in fields(CommonSettings)}
    assert isinstance(CommonSettings.local_exec, property)


def test_a_submitting_executor_is_on_a_cluster_and_runs_nothing_here():
    facts = Invocation(executor_known=True, dry_run=False, report=False, touch=False,
                       local_executor=False, main=True, cluster_job=False, locks=True,
                       deploys_software=False, cores=1)
    assert facts.mode == Mode.SUBMITS and facts.on_cluster and not facts.runs_jobs_here
    assert facts.holds_own_lock


def test_the_settings_read_exist():
    from snakemake.settings.types import (DeploymentSettings, ExecutionSettings,
                                          OutputSettings, ResourceSettings, SchedulingSettings)
    from snakemake.workflow import Workflow

    for cls, name in ((OutputSettings, "dryrun"), (DeploymentSettings, "deployment_method"),
                      (ExecutionSettings, "lock"), (ExecutionSettings, "keep_going"),
                      (ResourceSettings, "cores"), (SchedulingSettings, "subsample"),
                      (SchedulingSettings, "max_jobs_per_timespan")):
        assert name in {field.name for field in fields(cls)}, (cls.__name__, name)
    for name in ("executor_plugin", "is_main_process", "remote_exec", "touch",
                 "scheduling_settings", "execution_settings", "output_settings",
                 "deployment_settings", "resource_settings", "workflow_settings"):
        assert hasattr(Workflow, name) or name in {f.name for f in fields(Workflow)}, name
    assert "create_report" in vars(Workflow)
    assert inspect.getsourcefile(Workflow).endswith(f"snakemake{os.sep}workflow.py")


def test_the_lock_files_snakemake_writes_are_read(tmp_path):
    from snakemake.persistence.file import FilePersistence

    writer = SimpleNamespace(_lockdir=str(tmp_path), _lockfile={})
    keys = [str(tmp_path / "out" / "a.nii.gz"), "relative/b.nii.gz"]
    FilePersistence._write_locks(writer, "input", keys)
    FilePersistence._write_locks(writer, "output", keys[:1])
    FilePersistence._write_locks(writer, "output", keys[1:])  # a second run's
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["0.input.lock", "0.output.lock", "1.output.lock"]
    assert [compat.lock_kind(name) for name in names] == ["input", "output", "output"]
    assert compat.lock_kind("0.input.lock.json") is None
    assert compat.locked_paths(tmp_path / "0.input.lock") == [Path(key) for key in keys]
    assert compat.locked_paths(tmp_path / "missing.lock") == []


@pytest.mark.parametrize("max_len", [255, 8])  # 8: a long name, split into "@" folders
def test_incomplete_marks_decode_snakemakes_own_encoding(tmp_path, max_len):
    from snakemake.persistence.file import FilePersistence

    encoder = SimpleNamespace(_fetch_max_len=lambda subject: max_len)
    folder = tmp_path / "incomplete"
    output = "results/sub-01/anat/sub-01_T1w_resampled.nii.gz"
    mark = Path(FilePersistence._record_path(encoder, str(folder), output))
    if max_len == 8:
        assert any(part.startswith("@") for part in mark.relative_to(folder).parts)
    assert compat.incomplete_mark_path(folder, mark) == Path(output)
    assert compat.incomplete_mark_path(folder, folder / "not base64!") is None


def test_state_kept_elsewhere_than_in_files_is_said_in_one_line(tmp_path, monkeypatch):
    from snakemake.settings.types import WorkflowSettings

    from nii_resample.workflow_runtime import release_killed_runs_lock

    settings = WorkflowSettings()
    assert compat.state_folder(SimpleNamespace(workflow_settings=settings)) == Path(".snakemake")
    # checked on 9.27.1: --persistence-backend db keeps locks in a database.
    from snakemake.settings.enums import PersistenceBackend

    settings.persistence_backend = PersistenceBackend.DB
    workflow = SimpleNamespace(workflow_settings=settings)
    assert compat.state_folder(workflow) is None
    monkeypatch.chdir(tmp_path)
    lines = release_killed_runs_lock(workflow, [str(tmp_path)])
    assert len(lines) == 1 and "--unlock" in lines[0]


def test_an_unchecked_snakemake_version_gets_one_warning_line(monkeypatch):
    from snakemake.logging import logger

    assert compat.warn_if_unchecked_version() is None  # the installed one was checked
    said = []
    monkeypatch.setattr(logger, "warning", lambda line, *a, **k: said.append(line))
    monkeypatch.setattr(compat, "snakemake_version", lambda: "10.1.0")
    monkeypatch.setattr(compat, "_WARNED", set())
    line = compat.warn_if_unchecked_version()
    assert line and "10.1.0" in line and "\n" not in line
    compat.warn_if_unchecked_version()
    assert said == [line]  # once per run
    assert compat.warn_if_unchecked_version("8.30.0") and len(said) == 2
    assert compat.warn_if_unchecked_version("9.5.0") is None


def test_no_snakemake_internal_is_reached_outside_snakemake_compat():
    """The names of Snakemake's internals used by snakemake_compat appear nowhere else in
    the workflow or the package."""
    internals = ("scheduling_settings", "execution_settings", "output_settings",
                 "deployment_settings", "resource_settings", "executor_plugin",
                 "is_main_process", "remote_exec", "_getframe", "create_report",
                 "workflow.dryrun", "workflow.touch", "urlsafe_b64decode")
    files = [*REPO.glob("workflow/rules/*.smk"), REPO / "Snakefile", *REPO.glob("scripts/*.py"),
             *(p for p in REPO.glob("src/nii_resample/*.py") if p.name != "snakemake_compat.py")]
    for path in files:
        text = path.read_text()
        for name in internals:
            assert name not in text, f"{path.relative_to(REPO)} uses {name}"
