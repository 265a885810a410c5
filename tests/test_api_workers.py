"""The Python API's worker processes: it works from a plain script without a main guard, from
stdin, `python -c` and a notebook; a volume that raises or whose worker dies is reported
for that volume only; stopping the caller leaves no worker and no partial file behind."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import nibabel as nib
import numpy as np
import pytest

from support import REPO
from nii_resample.api import ResamplingFailed, resampling_dataset

SHAPE = (8, 9, 10)
# Written exactly as the examples of the function the API replaces: no main guard.
PLAIN_CODE = """\
from nii_resample import resampling_dataset

written = resampling_dataset("in", "out", (8, 9, 10), saving_mode="folder", cores=2)
print(f"{len(written)} volumes written")
"""


def _environment(*first):
    paths = [str(p) for p in first] + [str(REPO / "src")]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _check_outputs(folder, names):
    for name in names:
        image = nib.load(folder / f"{name}_resampled.nii.gz")
        assert image.shape == SHAPE and np.isfinite(image.get_fdata()).all()
    assert not list(folder.glob(".*.partial"))


def _hook(tmp_path, code: str):
    """A sitecustomize.py that the workers (which inherit PYTHONPATH) import: `code` runs
    inside write_volume, once the output's temporary file is complete, before its rename."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent("""\
        import os, signal, time
        from pathlib import Path
        import nii_resample.volume as volume

        original = volume.write_volume

        def write_volume(path, *args, **keywords):
            def before_replace(*inner):
        {code}
                if args[-1] is not None:
                    args[-1](*inner)
            return original(path, *args[:-1], before_replace, **keywords)

        volume.write_volume = write_volume
        """).format(code=textwrap.indent(textwrap.dedent(code), " " * 8)))
    return hook


@pytest.mark.parametrize("how", ["script", "stdin", "-c"])
def test_api_from_code_without_main_guard(tmp_path, make_dataset, how):
    _, inputs = make_dataset(names=("a", "b", "c", "d"))
    command = {"script": [sys.executable, "run.py"], "stdin": [sys.executable, "-"],
               "-c": [sys.executable, "-c", PLAIN_CODE]}[how]
    (tmp_path / "run.py").write_text(PLAIN_CODE)
    result = subprocess.run(command, input=PLAIN_CODE if how == "stdin" else None,
                            cwd=tmp_path, env=_environment(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    # Once: nothing re-ran the caller's code.
    assert result.stdout.splitlines() == ["4 volumes written"], result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    _check_outputs(tmp_path / "out", inputs)


def test_api_from_a_notebook(tmp_path, make_dataset, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    _, inputs = make_dataset(names=("a", "b", "c"))
    # A kernel of this very interpreter, declared in a private Jupyter path (offline).
    kernel = tmp_path / "jupyter" / "kernels" / "nii-resample-test"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nii-resample test", "language": "python",
        "env": {"PYTHONPATH": _environment()["PYTHONPATH"]},
    }))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PLAIN_CODE)])
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    NotebookClient(notebook, kernel_name="nii-resample-test", timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    printed = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert printed == "3 volumes written\n", outputs
    assert not [o for o in outputs if o.output_type == "error"]
    _check_outputs(tmp_path / "out", inputs)


def test_an_unexpected_exception_fails_only_its_volume(tmp_path, make_dataset):
    """A file where a case folder must go: mkdir raises FileExistsError (not a VolumeError)."""
    folder, _ = make_dataset(names=("a", "b", "c"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "b").write_text("not a folder")
    with pytest.raises(ResamplingFailed) as raised:
        resampling_dataset(folder, out, SHAPE, cores=2)
    [failure] = raised.value.failures
    assert failure["reason"].startswith("b.nii.gz: FileExistsError: ")
    assert "\n" not in failure["reason"]
    assert raised.value.written == [str(out / p / f"{p}_resampled.nii.gz") for p in ("a", "c")]
    for prefix in ("a", "c"):
        _check_outputs(out / prefix, [prefix])
    assert (out / "b").read_text() == "not a folder"
    assert "b.nii.gz: FileExistsError" in (out / "failures.tsv").read_text()


def test_a_worker_killed_mid_volume_fails_only_that_volume(tmp_path, make_dataset, monkeypatch):
    folder, _ = make_dataset(names=("a", "b", "doomed", "d", "e"))
    hook = _hook(tmp_path, """\
        if Path(path).name == "doomed_resampled.nii.gz":
            os.kill(os.getpid(), signal.SIGKILL)
        """)
    monkeypatch.setenv("PYTHONPATH", _environment(hook)["PYTHONPATH"])
    out = tmp_path / "out"
    with pytest.raises(ResamplingFailed) as raised:
        resampling_dataset(folder, out, SHAPE, saving_mode="folder", cores=2)
    assert [f["reason"] for f in raised.value.failures] == [
        "doomed.nii.gz: the worker process died (signal 9: killed, e.g. out of memory)"]
    # A new worker took over: every other volume is written, complete.
    _check_outputs(out, ["a", "b", "d", "e"])
    assert not (out / "doomed_resampled.nii.gz").exists()
    # The manifest lists it as failed, with the same reason (as the workflow's does).
    manifest = {row.split("\t")[0]: row.split("\t")[2:4]
                for row in (out / "manifest.tsv").read_text().splitlines()[1:]}
    assert manifest.pop(str(folder / "doomed.nii.gz")) == ["failed", raised.value.failures[0]["reason"]]
    assert [status for status, _ in manifest.values()] == ["ok"] * 4


def test_ctrl_c_in_the_caller_leaves_no_worker_behind(tmp_path, make_dataset):
    """The caller is interrupted while a worker is busy writing a (slow) volume."""
    make_dataset(names=("a", "slow", "c"))
    started = tmp_path / "worker.pid"
    hook = _hook(tmp_path, f"""\
        if Path(path).name == "slow_resampled.nii.gz":
            Path({str(started)!r}).write_text(str(os.getpid()))
            time.sleep(300)
        """)
    (tmp_path / "run.py").write_text(PLAIN_CODE)
    caller = subprocess.Popen([sys.executable, "run.py"], cwd=tmp_path, env=_environment(hook),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not started.exists() and caller.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists(), caller.communicate(timeout=60)
    worker = int(started.read_text())
    assert worker != caller.pid
    caller.send_signal(signal.SIGINT)
    try:
        _, stderr = caller.communicate(timeout=60)
    finally:
        caller.kill()
    assert caller.returncode != 0 and "KeyboardInterrupt" in stderr
    assert not os.path.exists(f"/proc/{worker}"), "the busy worker outlived its caller"
    assert not list((tmp_path / "out").glob(".*.partial"))
    assert not (tmp_path / "out" / "slow_resampled.nii.gz").exists()
