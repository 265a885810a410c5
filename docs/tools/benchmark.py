#!/usr/bin/env python
"""Benchmark this workflow against the reference, nidataset's `resampling_dataset`, in one run.

Both sides work on the same dataset in the same run, each in its own subprocess (so CPU time
and peak RSS are its own), and the result is printed as a table of ratios with PASS/FAIL
against the goals of the performance issue (docs/benchmarks.md explains every figure):

1. wall time of `snakemake --cores N` over the dataset <= 0.2x nidataset's sequential run
   (a downsample run and an upsample run, each judged on its own);
2. CPU time of the resample step for one CT-like volume downsampled <= 0.35x nidataset's;
3. peak RSS of one job for that volume <= 0.5x nidataset's;
4. per-job overhead for tiny (32^3) volumes <= 0.3 s, and a dry run over 10,000 inputs
   planned in <= 20 s (Snakemake's DAG time included).

It also measures the read+write floor (read each input and write an output-sized volume
without resampling, with the workflow's NIfTI I/O at its default gzip level and with
SimpleITK at its own level) and the output sizes on disk.

    python docs/tools/benchmark.py --quick                  # smoke run, small volumes, < 1 min
    python docs/tools/benchmark.py --out results.json       # full run (several minutes)
    python docs/tools/benchmark.py --data /data/ct          # your own folder of .nii.gz
    python docs/tools/benchmark.py --nidataset-python /tmp/venv-nid/bin/python

nidataset (requirements-bench.txt) is run with `--nidataset-python` (default: this
interpreter); `--skip-nidataset` measures the workflow alone. Only the standard library,
numpy and nibabel are imported here; the measured code runs in child processes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]  # docs/tools/ -> repository
SNAKEFILE = REPO / "Snakefile"
PACKAGE_ROOT = REPO / "src"  # holds the nii_resample package

GOALS = {
    "wall_ratio": 0.2,  # workflow wall / nidataset sequential wall
    "cpu_ratio": 0.35,  # per-volume CPU of the resample step, CT downsample
    "rss_ratio": 0.5,  # peak RSS of one job, same volume
    "tiny_job_s": 0.3,  # marginal wall per tiny job
    "dry_run_s": 20.0,  # planning a dry run over 10,000 inputs
}

# --------------------------------------------------------------------------------------------
# Code run in the measured child processes: standard library only at the top, so the same
# text runs in this interpreter and in nidataset's. Prints one JSON line on stdout.
# --------------------------------------------------------------------------------------------
DRIVER = r'''
import json, os, sys, time
args = json.loads(sys.argv[1])

def status(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # MiB
    return float("nan")

def clocks():
    return time.perf_counter(), time.process_time()

result = {"task": args["task"]}
w0, c0 = clocks()
task = args["task"]
if task.startswith("nidataset"):
    from nidataset.preprocessing import resampling, resampling_dataset
elif task.startswith("workflow") or task == "floor_workflow":
    sys.path.insert(0, args["package_root"])
    import numpy as np
    from nii_resample.volume import resample_volume
    from nii_resample.nifti import read_volume, write_volume
elif task == "floor_sitk":
    import numpy as np
    import SimpleITK as sitk
w1, c1 = clocks()
result.update(import_wall=w1 - w0, import_cpu=c1 - c0, rss_after_import_mb=status("VmRSS"))

def pick(shape, new_shape):
    """Nearest-neighbour index per axis: an output-sized array at negligible cost."""
    return [np.minimum((np.arange(m) * n) // m, n - 1) for n, m in zip(shape, new_shape)]

shape = tuple(args.get("shape", ()))
per_file = []
if task == "nidataset_dataset":
    resampling_dataset(args["folder"], args["out"], shape, saving_mode="case", debug=False)
elif task == "nidataset_one":
    resampling(args["file"], args["out"], shape, debug=False)
elif task == "workflow_one":
    resample_volume(args["file"], args["out_file"], shape, **args.get("options", {}))  # defaults
elif task == "floor_workflow":
    from nii_resample.settings import DEFAULTS  # the workflow's default gzip level
    level = result["compression_level"] = int(DEFAULTS.get("compression_level", 1))
    for index, path in enumerate(args["files"]):
        a, b = clocks()
        volume = read_volume(path)
        data = volume.data.reshape(volume.spatial_shape, order="F")
        ix, iy, iz = pick(volume.spatial_shape, shape)
        small = data[np.ix_(ix, iy, iz)]
        write_volume(os.path.join(args["out"], f"{index}.nii.gz"), volume.header, small,
                     volume.affine, level)
        c, d = clocks()
        per_file.append({"file": path, "wall": c - a, "cpu": d - b})
elif task == "floor_sitk":
    for index, path in enumerate(args["files"]):
        a, b = clocks()
        image = sitk.ReadImage(path)
        array = sitk.GetArrayViewFromImage(image)  # (z, y, x)
        iz, iy, ix = pick(array.shape, shape[::-1])
        small = sitk.GetImageFromArray(np.ascontiguousarray(array[np.ix_(iz, iy, ix)]))
        small.SetOrigin(image.GetOrigin())
        small.SetDirection(image.GetDirection())
        small.SetSpacing([s * n / m for s, n, m in zip(image.GetSpacing(), image.GetSize(), shape)])
        sitk.WriteImage(small, os.path.join(args["out"], f"{index}.nii.gz"))
        del image, array, small
        c, d = clocks()
        per_file.append({"file": path, "wall": c - a, "cpu": d - b})
else:
    raise SystemExit(f"unknown task {task}")
w2, c2 = clocks()
result.update(step_wall=w2 - w1, step_cpu=c2 - c1, peak_rss_mb=status("VmHWM"), files=per_file)
print("BENCH-RESULT " + json.dumps(result), flush=True)
'''


# --------------------------------------------------------------------------------------------
# Measuring a child process
# --------------------------------------------------------------------------------------------
def workflow_env() -> dict:
    """Environment of the workflow's processes: the measured checkout's package first (an
    editable install of nii_resample elsewhere must not be what gets measured)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


# Linux counts in a child's peak RSS (ru_maxrss) the memory of the process it was forked
# from: children of this (large, after generating the dataset) process would all report at
# least its size. So each measured command is started by this small launcher, and its
# figures are the launcher's wait4() of the command.
# The launcher is a child subreaper: the workflow's resident worker (nii_resample.workflow_worker)
# detaches from the job that started it, and would otherwise escape the CPU count; it is
# waited for (it ends within a second of its run) and counted with everything else.
LAUNCHER = """
import ctypes, json, os, resource, subprocess, sys
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
child = subprocess.Popen(sys.argv[2:])
_, status, _ = os.wait4(child.pid, 0)
report = {"status": status, "wall_end": __import__("time").perf_counter()}
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
report.update(cpu_s=usage.ru_utime + usage.ru_stime, maxrss_kb=usage.ru_maxrss)
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd, log_path, *, cwd=None, env=None, timeout=7200.0) -> dict:
    """Run `cmd`; wall time, CPU time (user+sys of it and every descendant it waited for)
    and peak RSS (the largest single process of that tree), from wait4() in a launcher."""
    if env is None and str(cmd[0]) == sys.executable:
        env = workflow_env()
    load_before = os.getloadavg()[0]
    usage_path = Path(f"{log_path}.usage.json")
    usage_path.unlink(missing_ok=True)
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(usage_path), *map(str, cmd)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                   start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        wall = time.perf_counter() - started
    usage = json.loads(usage_path.read_text()) if usage_path.exists() else {}
    # Until the command itself ended, not the worker it leaves for a moment (perf_counter is
    # CLOCK_MONOTONIC: one clock for every process of the machine).
    wall = min(wall, usage.get("wall_end", started + wall) - started)
    text = Path(log_path).read_text(errors="replace")
    driver = None
    for line in text.splitlines():
        if line.startswith("BENCH-RESULT "):
            driver = json.loads(line[len("BENCH-RESULT "):])
    return {
        "cmd": [str(c) for c in cmd],
        "returncode": process.returncode,
        "wall_s": wall,
        "cpu_s": usage.get("cpu_s", float("nan")),
        "peak_rss_mb": usage.get("maxrss_kb", float("nan")) / 1024.0,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "log": str(log_path),
        "driver": driver,
    }


def check_ok(measure: dict, what: str) -> dict:
    if measure["returncode"] != 0:
        tail = "\n".join(Path(measure["log"]).read_text(errors="replace").splitlines()[-25:])
        raise SystemExit(f"{what} failed (exit {measure['returncode']}), log {measure['log']}:\n{tail}")
    return measure


def run_driver(python, task_args: dict, log_path, **kwargs) -> dict:
    return check_ok(
        run_measured([python, "-c", DRIVER, json.dumps(task_args)], log_path, **kwargs),
        task_args["task"],
    )


# --------------------------------------------------------------------------------------------
# Synthetic, seeded, realistic data: smooth anatomy + noise (gzip ratio like real scans)
# --------------------------------------------------------------------------------------------
def _gzip(raw: bytes) -> tuple[bytes, str]:
    try:  # ISA-L if present (fast); the stream is standard gzip either way
        from isal import igzip

        return igzip.compress(raw, compresslevel=3, mtime=0), "isal-3"
    except ImportError:
        return gzip.compress(raw, compresslevel=6, mtime=0), "zlib-6"


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> str:
    image = nib.Nifti1Image(data, affine)
    image.header.set_data_dtype(data.dtype)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    payload, codec = _gzip(image.to_bytes())
    temporary = path.with_name("." + path.name + ".tmp")
    temporary.write_bytes(payload)
    os.replace(temporary, path)
    return codec


def make_ct(shape, spacing, seed) -> np.ndarray:
    """int16 HU: scan circle at -1024, noisy air, body with fat rim, lungs, spine, ribs, table."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    sx, sy, sz = spacing
    x = ((np.arange(nx) - nx / 2) * sx).astype(np.float32)[:, None]
    y = ((np.arange(ny) - ny / 2) * sy).astype(np.float32)[None, :]
    fov = x**2 + y**2 > (min(nx * sx, ny * sy) / 2) ** 2
    out = np.empty(shape, dtype=np.int16, order="F")
    block = 4  # anatomy changes slowly along z: one template per 4 slices, fresh noise each
    phase = rng.uniform(0, 2 * np.pi, 4)
    z_length = nz * sz
    tissue = (35.0 + 15 * np.sin(x / 25 + phase[2]) * np.cos(y / 30)).astype(np.float32)
    lung_texture = np.broadcast_to(-850.0 + 40 * np.cos(y / 12), (nx, ny)).astype(np.float32)
    for z0 in range(0, nz, block):
        zmm = (z0 + block / 2) * sz
        t = zmm / z_length
        a = 160 * (1 + 0.08 * np.sin(2 * np.pi * t + phase[0]))
        b = 115 * (1 + 0.06 * np.sin(2 * np.pi * t + phase[1]))
        r_body = (x / a) ** 2 + ((y + 10) / b) ** 2
        base = np.full((nx, ny), -1000.0, np.float32)
        base[r_body < 1.0] = -90.0  # fat
        base = np.where(r_body < 0.82, tissue, base)  # soft tissue
        lung = 0.25 < t < 0.8
        if lung:
            lung_scale = np.sin(np.pi * (t - 0.25) / 0.55)
            for side in (-1, 1):
                r_lung = ((x - side * 70) / (55 * lung_scale + 5)) ** 2 + ((y + 5) / (75 * lung_scale + 5)) ** 2
                base = np.where(r_lung < 1.0, lung_texture, base)
            ribs = (r_body < 0.9) & (r_body > 0.78) & (np.cos(np.arctan2(y, x) * 12 + 2 * t) > 0.6)
            base[ribs] = 650.0
        spine = x**2 + (y - 75) ** 2 < 17**2
        base[spine] = 900.0
        base[(x**2 + (y - 75) ** 2 < 10**2)] = 250.0  # marrow
        base[(np.abs(y - (b + 25)) < 4) & (np.abs(x) < 200)] = -300.0  # table
        for k in range(z0, min(z0 + block, nz)):
            noise = rng.standard_normal((nx, ny), dtype=np.float32) * 12.0
            slice_ = base + noise
            slice_[fov] = -1024.0
            out[:, :, k] = np.rint(slice_).astype(np.int16)
    return out


def make_mri(shape, spacing, seed) -> np.ndarray:
    """float32 T1-like head: scalp, dark skull, CSF, GM/WM folds, bias field, noise; 0 outside."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    axes = [((np.arange(n) - n / 2) * s).astype(np.float32) for n, s in zip(shape, spacing)]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    r = np.sqrt((x / 75) ** 2 + (y / 95) ** 2 + ((z + 5) / 85) ** 2)
    folds = 0.04 * np.sin(x / 4.0) * np.sin(y / 5.0) * np.cos(z / 4.5)
    out = np.zeros(shape, dtype=np.float32)
    out[r < 1.0] = 550.0  # scalp
    out[r < 0.93] = 60.0  # skull
    out[r < 0.86] = 250.0  # CSF
    brain = r + folds
    out[brain < 0.82] = 480.0  # grey matter
    out[brain < 0.68] = 720.0  # white matter
    out[(np.abs(x) < 4) & (r < 0.5)] = 250.0  # ventricle-ish slab
    bias = 1.0 + 0.15 * np.sin(x / 60 + 0.5) * np.cos(y / 80) + 0.1 * z / 90
    out *= bias
    head = r < 1.08
    noise = rng.standard_normal(shape, dtype=np.float32) * 12.0
    out = np.where(head, np.abs(out + noise), 0.0).astype(np.float32)
    return np.asfortranarray(out)


def ct_affine(spacing, shape, seed):
    rng = np.random.default_rng(seed)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])  # LPS storage, like dcm2niix
    affine[:3, 3] = [spacing[0] * shape[0] / 2 + rng.uniform(-5, 5),
                     spacing[1] * shape[1] / 2 + rng.uniform(-5, 5) - 20,
                     -spacing[2] * shape[2] + rng.uniform(-50, 50)]
    return affine


def mri_affine(spacing, shape):
    affine = np.diag([spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [-(shape[i] * spacing[i]) / 2 for i in range(3)]
    return affine


def dataset_spec(quick: bool, seed: int) -> list[dict]:
    """The volumes of the synthetic dataset (name, kind, shape, spacing, seed)."""
    rng = np.random.default_rng(seed)
    specs = []
    if quick:
        ct = [(256, 256, 60), (256, 256, 80)]
        mri = [(128, 128, 90)]
        mri_spacing = (2.0, 2.0, 2.0)
    else:
        ct = [(512, 512, nz) for nz in (300, 100, 130, 160, 190, 220, 250, 280)]
        mri = [(256, 256, 180)] * 4
        mri_spacing = (1.0, 1.0, 1.0)
    for index, shape in enumerate(ct):
        xy = round(float(rng.uniform(0.6, 0.8)), 4)
        if quick:
            xy *= 2
        z = float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5, 3.0])) if index else 1.0
        specs.append({"name": f"ct_{index:02d}", "kind": "ct", "shape": list(shape),
                      "spacing": [xy, xy, z], "seed": seed * 1000 + index})
    for index, shape in enumerate(mri):
        specs.append({"name": f"mri_{index:02d}", "kind": "mri", "shape": list(shape),
                      "spacing": list(mri_spacing), "seed": seed * 1000 + 100 + index})
    return specs


def upsample_extra_spec(count: int, seed: int) -> list[dict]:
    """More MRI-like volumes for the upsample run, so that it too has >= 12 volumes."""
    shapes = [(256, 256, 180), (240, 240, 176), (256, 232, 192), (224, 256, 160)]
    return [{"name": f"mri_up_{index:02d}", "kind": "mri", "shape": list(shapes[index % len(shapes)]),
             "spacing": [1.0, 1.0, 1.0], "seed": seed * 1000 + 200 + index} for index in range(count)]


def generate_dataset(folder: Path, specs: list[dict]) -> None:
    """Write the volumes, unless the folder already holds exactly this spec (cached)."""
    stamp = folder / "dataset.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("specs") == specs:
        if all((folder / f"{s['name']}.nii.gz").exists() for s in specs):
            print(f"  dataset cached in {folder}", flush=True)
            return
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    codecs = set()
    for spec in specs:
        started = time.perf_counter()
        shape, spacing = tuple(spec["shape"]), tuple(spec["spacing"])
        if spec["kind"] == "ct":
            data = make_ct(shape, spacing, spec["seed"])
            affine = ct_affine(spacing, shape, spec["seed"])
        else:
            data = make_mri(shape, spacing, spec["seed"])
            affine = mri_affine(spacing, shape)
        codecs.add(write_nifti(folder / f"{spec['name']}.nii.gz", data, affine))
        size = (folder / f"{spec['name']}.nii.gz").stat().st_size
        print(f"  {spec['name']}: {'x'.join(map(str, shape))} {data.dtype} "
              f"{size / 2**20:.1f} MiB (gzip ratio {data.nbytes / size:.2f}) "
              f"in {time.perf_counter() - started:.1f} s", flush=True)
    stamp.write_text(json.dumps({"specs": specs, "codec": sorted(codecs)}, indent=1))


def tiny_nifti_bytes(shape=(32, 32, 32), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).sum(axis=0).astype(np.float32)
    data = (100 * np.sin(grid / 5) + rng.normal(0, 5, shape)).astype(np.int16)
    image = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0]))
    image.header.set_qform(image.affine, code=1)
    image.header.set_sform(image.affine, code=1)
    return _gzip(image.to_bytes())[0]


def make_tiny_folder(folder: Path, count: int, shape=(32, 32, 32)) -> None:
    if folder.exists() and len(list(folder.glob("*.nii.gz"))) == count:
        return
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    payload = tiny_nifti_bytes(shape)
    for index in range(count):
        (folder / f"tiny_{index:05d}.nii.gz").write_bytes(payload)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def header_info(path: Path) -> dict:
    header = nib.load(str(path)).header
    return {"shape": [int(n) for n in header.get_data_shape()[:3]],
            "dtype": str(header.get_data_dtype())}


def du_bytes(folder: Path, pattern="**/*_resampled.nii.gz") -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def warm_cache(paths) -> None:
    """Read the inputs once so neither side pays for the first read from disk."""
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


def write_config(path: Path, nii_folder: Path, output_path: Path, shape, extra=None) -> Path:
    # JSON is YAML: Snakemake reads it as a config file. Every other key keeps its default.
    path.write_text(json.dumps({"nii_folder": str(nii_folder), "output_path": str(output_path),
                                "desired_volume": list(shape), **(extra or {})}, indent=1) + "\n")
    return path


# Workflow configurations measured: (key, label, extra config). The defaults always; with
# `qc: false` too when the workflow has that key (set in main()).
VARIANTS = [("workflow", "workflow (defaults)", {})]


def workflow_has_key(key: str) -> bool:
    config = SNAKEFILE.parent / "config" / "config.yaml"
    return config.exists() and any(line.startswith(f"{key}:") for line in config.read_text().splitlines())


def steps_done(log_path) -> int | None:
    """Jobs Snakemake ran, from its last 'N of M steps' line."""
    import re

    found = re.findall(r"(\d+) of (\d+) steps", Path(log_path).read_text(errors="replace"))
    return int(found[-1][1]) if found else None


def snakemake_cmd(python, workdir: Path, config: Path, cores: int, *extra) -> list:
    return [python, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
            "--configfile", str(config), "--cores", str(cores), *extra]


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def read_job_benchmarks(output_path: Path) -> dict:
    """Snakemake's per-job benchmark files: s, max_rss (MB), cpu_time."""
    rows = []
    for tsv in sorted((output_path / "benchmarks" / "resample_volume").glob("*.tsv")):
        lines = tsv.read_text().splitlines()
        if len(lines) < 2:
            continue
        row = dict(zip(lines[0].split("\t"), lines[1].split("\t")))

        def number(key):
            try:
                return float(row.get(key, "nan"))
            except ValueError:
                return float("nan")

        rows.append({"prefix": tsv.stem, "s": number("s"), "max_rss": number("max_rss"),
                     "cpu_time": number("cpu_time")})
    finite = lambda key: [r[key] for r in rows if np.isfinite(r[key])]  # noqa: E731
    return {
        "jobs": len(rows),
        "sum_s": float(sum(finite("s"))),
        "mean_s": float(np.mean(finite("s"))) if finite("s") else float("nan"),
        "max_rss_mb": float(max(finite("max_rss"))) if finite("max_rss") else float("nan"),
        "sum_cpu_s": float(sum(finite("cpu_time"))),
        "rows": rows,
    }


def python_versions(python: str, modules) -> dict:
    code = ("import json, importlib.metadata as m\nout = {}\n"
            f"for name in {list(modules)!r}:\n"
            "    try: out[name] = m.version(name)\n"
            "    except Exception: out[name] = None\n"
            "import sys; out['python'] = sys.version.split()[0]\nprint(json.dumps(out))")
    try:
        text = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120).stdout
        return json.loads(text.strip().splitlines()[-1])
    except Exception as error:  # noqa: BLE001
        return {"error": str(error)}


def machine_info() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                           capture_output=True, text=True).stdout.strip()
    engine = REPO / "src" / "nii_resample" / "engine.py"
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "nproc": os.cpu_count(), "cpu_model": model, "mem_total": mem,
        "kernel": platform.release(), "git_head": git, "git_dirty": bool(dirty),
        "engine_sha256": hashlib.sha256(engine.read_bytes()).hexdigest()[:12] if engine.exists() else None,
    }


def snapshot_checkout(repo: Path, target: Path) -> Path:
    """Copy what a run needs (top-level files, workflow/, scripts/, src/, config/); check that every
    Python file compiles: a half-saved file would otherwise fail jobs mid-benchmark."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake", "*.pyc")
    for source in repo.iterdir():  # top-level files (Snakefile, environment.yml, ...) + code
        if source.is_file() and not source.name.startswith("."):
            shutil.copy2(source, target / source.name)
        elif source.name in ("workflow", "scripts", "src", "config"):
            shutil.copytree(source, target / source.name, ignore=ignore)
    for source in [*(target / "scripts").rglob("*.py"), *(target / "src").rglob("*.py")]:
        try:
            compile(source.read_text(), str(source), "exec")
        except SyntaxError as error:
            raise SystemExit(f"{source.relative_to(target)} does not compile ({error}); "
                             "is someone saving it right now? Try again.") from None
    return target


def shape_text(shape) -> str:
    return "x".join(str(int(n)) for n in shape)


def parse_shape(text: str) -> list[int]:
    items = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    if len(items) != 3 or min(items) < 1:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z positive integers, got {text!r}")
    return items


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------
def compare_run(name, folder: Path, shape, args, work: Path, variants) -> dict:
    """nidataset sequential vs snakemake --cores N on one folder and one target shape."""
    inputs = sorted(folder.glob("*.nii.gz"))
    warm_cache(inputs)
    row = {"name": name, "folder": str(folder), "target": list(shape), "volumes": len(inputs),
           "input_bytes": sum(p.stat().st_size for p in inputs)}
    logs = work / "logs"
    if not args.skip_nidataset:
        out = fresh(work / f"nid_{name}")
        print(f"[{name}] nidataset resampling_dataset over {len(inputs)} volumes ...", flush=True)
        m = run_driver(args.nidataset_python, {"task": "nidataset_dataset", "folder": str(folder),
                                               "out": str(out), "shape": list(shape)},
                       logs / f"nid_{name}.log")
        m["output_bytes"] = du_bytes(out)
        row["nidataset"] = m
        print(f"    wall {m['wall_s']:.1f} s, CPU {m['cpu_s']:.1f} s, peak RSS {m['peak_rss_mb']:.0f} MiB", flush=True)
        if not args.keep:
            shutil.rmtree(out)
    for key, label, extra in variants:
        out = fresh(work / f"{key}_{name}")
        wdir = fresh(work / f"{key}dir_{name}")
        config = write_config(wdir / "config.yaml", folder, out, shape, extra)
        print(f"[{name}] {label}: snakemake --cores {args.cores} over {len(inputs)} volumes ...", flush=True)
        m = check_ok(run_measured(snakemake_cmd(sys.executable, wdir, config, args.cores),
                                  logs / f"{key}_{name}.log"), f"workflow run {name} ({label})")
        m["config_extra"] = extra
        m["steps"] = steps_done(m["log"])
        m["output_bytes"] = du_bytes(out)
        m["jobs"] = read_job_benchmarks(out)
        if "nidataset" in row:
            m["wall_ratio"] = m["wall_s"] / row["nidataset"]["wall_s"]
            m["cpu_ratio"] = m["cpu_s"] / row["nidataset"]["cpu_s"]
            m["size_ratio"] = m["output_bytes"] / max(row["nidataset"]["output_bytes"], 1)
        row[key] = m
        print(f"    wall {m['wall_s']:.1f} s, CPU {m['cpu_s']:.1f} s, peak RSS {m['peak_rss_mb']:.0f} MiB, "
              f"{m['steps']} jobs", flush=True)
        if not args.keep:
            shutil.rmtree(out)
    return row


def floor_run(files, shape, args, work: Path) -> dict:
    """Read each input and write an output-sized volume, no resampling."""
    floor = {"target": list(shape), "files": [str(f) for f in files]}
    out = fresh(work / "floor_wf")
    print("[floor] read + write with the workflow's NIfTI I/O (nibabel + isal, default level) ...", flush=True)
    floor["workflow_io"] = run_driver(sys.executable, {"task": "floor_workflow", "files": [str(f) for f in files],
                                                       "out": str(out), "shape": list(shape),
                                                       "package_root": str(PACKAGE_ROOT)},
                                      work / "logs" / "floor_wf.log")
    floor["workflow_io"]["output_bytes"] = du_bytes(out, "*.nii.gz")
    shutil.rmtree(out)
    out = fresh(work / "floor_sitk")
    print("[floor] read + write with SimpleITK (its default gzip level) ...", flush=True)
    floor["sitk_io"] = run_driver(sys.executable, {"task": "floor_sitk", "files": [str(f) for f in files],
                                                   "out": str(out), "shape": list(shape)},
                                  work / "logs" / "floor_sitk.log")
    floor["sitk_io"]["output_bytes"] = du_bytes(out, "*.nii.gz")
    shutil.rmtree(out)
    return floor


def single_volume(path: Path, shape, args, work: Path) -> dict:
    """One CT volume: nidataset on a 1-file folder vs `python -m nii_resample volume` (CLI and in-process)."""
    single = {"file": str(path), "target": list(shape), **header_info(path)}
    warm_cache([path])
    logs = work / "logs"
    if not args.skip_nidataset:
        folder = fresh(work / "single_in")
        os.symlink(path, folder / path.name)
        out = fresh(work / "single_nid")
        print(f"[single] nidataset on {path.name} ...", flush=True)
        single["nidataset"] = run_driver(args.nidataset_python, {"task": "nidataset_dataset", "folder": str(folder),
                                                                 "out": str(out), "shape": list(shape)},
                                         logs / "single_nid.log")
    out = fresh(work / "single_wf")
    print(f"[single] python -m nii_resample volume {path.name} (command line) ...", flush=True)
    single["workflow_cli"] = check_ok(run_measured(
        [sys.executable, "-m", "nii_resample", "volume", str(path), str(out / "cli.nii.gz"), *map(str, shape)],
        logs / "single_cli.log"), "nii_resample volume")
    print("[single] resample_volume in-process (step only) ...", flush=True)
    single["workflow_step"] = run_driver(sys.executable, {"task": "workflow_one", "file": str(path),
                                                          "out_file": str(out / "step.nii.gz"),
                                                          "shape": list(shape), "package_root": str(PACKAGE_ROOT)},
                                         logs / "single_step.log")
    if "nidataset" in single:
        nid, cli, step = single["nidataset"], single["workflow_cli"], single["workflow_step"]
        single["cpu_ratio_step"] = step["driver"]["step_cpu"] / nid["driver"]["step_cpu"]
        single["cpu_ratio_process"] = cli["cpu_s"] / nid["cpu_s"]
        single["rss_ratio_process"] = cli["peak_rss_mb"] / nid["peak_rss_mb"]
        base_nid = nid["driver"]["peak_rss_mb"] - nid["driver"]["rss_after_import_mb"]
        base_wf = step["driver"]["peak_rss_mb"] - step["driver"]["rss_after_import_mb"]
        single["rss_ratio_above_imports"] = base_wf / base_nid
    return single


def tiny_overhead(args, work: Path, variants) -> dict:
    count = args.tiny_count
    folder_many, folder_one = work / f"tiny_{count}", work / "tiny_1"
    make_tiny_folder(folder_many, count)
    make_tiny_folder(folder_one, 1)
    shape = [24, 24, 24]
    result = {"count": count, "shape_in": [32, 32, 32], "target": shape}
    for key, name, extra in variants:
        variant = result[key] = {"config_extra": extra}
        for label, folder in (("one", folder_one), ("many", folder_many)):
            out = fresh(work / f"tiny_out_{key}_{label}")
            wdir = fresh(work / f"tiny_wd_{key}_{label}")
            config = write_config(wdir / "config.yaml", folder, out, shape, extra)
            print(f"[tiny] {name}: snakemake over {1 if label == 'one' else count} tiny volume(s) ...", flush=True)
            m = check_ok(run_measured(snakemake_cmd(sys.executable, wdir, config, args.cores),
                                      work / "logs" / f"tiny_{key}_{label}.log"), f"tiny run {label}")
            m["steps"] = steps_done(m["log"])
            m["jobs"] = read_job_benchmarks(out)
            variant[label] = m
        many, one = variant["many"], variant["one"]
        per_volume = (many["steps"] - one["steps"]) / (count - 1) if many["steps"] and one["steps"] else 1.0
        variant["jobs_per_volume"] = per_volume
        variant["marginal_wall_per_volume_s"] = (many["wall_s"] - one["wall_s"]) / (count - 1)
        variant["marginal_cpu_per_volume_s"] = (many["cpu_s"] - one["cpu_s"]) / (count - 1)
        variant["marginal_wall_per_job_s"] = variant["marginal_wall_per_volume_s"] / per_volume
        variant["marginal_cpu_per_job_s"] = variant["marginal_cpu_per_volume_s"] / per_volume
    return result


def dry_run(args, work: Path) -> dict:
    """Planning (`-n --quiet`: the DAG, then stop) and a plain `-n` (the DAG, then Snakemake
    simulates the schedule and prints ~10 lines per job), over `count` tiny inputs."""
    count = args.dry_run_count
    folder = work / f"dry_{count}"
    print(f"[dry-run] writing {count} tiny inputs ...", flush=True)
    make_tiny_folder(folder, count, shape=(4, 4, 4))
    out = work / "dry_out"
    wdir = fresh(work / "dry_wd")
    config = write_config(wdir / "config.yaml", folder, out, [2, 2, 2])  # the defaults
    print(f"[dry-run] snakemake -n --quiet over {count} inputs ...", flush=True)
    m = check_ok(run_measured(snakemake_cmd(sys.executable, wdir, config, args.cores, "-n", "--quiet"),
                              work / "logs" / "dry_run.log"), "dry run")
    print(f"[dry-run] snakemake -n over {count} inputs (every job printed) ...", flush=True)
    m["printed"] = check_ok(run_measured(snakemake_cmd(sys.executable, wdir, config, args.cores, "-n"),
                                         work / "logs" / "dry_run_printed.log"), "dry run")
    m["count"] = count
    return m


# --------------------------------------------------------------------------------------------
# Start-up per job (--speed): the workflow against a trivial Snakemake workflow over the same
# inputs with the same flags, and against nidataset, runs alternated (docs/benchmarks.md,
# "Start-up per job")
# --------------------------------------------------------------------------------------------
SPEED_GOALS = {
    "small_vs_trivial": 2.0,  # 100 small volumes: workflow wall / trivial workflow wall
    "medium_vs_nidataset": 0.5,  # 40 medium volumes: workflow wall / nidataset wall
    "growth_400": 1.1,  # (400 volumes - 1) / 4 x (100 volumes - 1), wall
    "one_minus_trivial_s": 0.5,  # one tiny volume: workflow wall - trivial wall
}
SPEED_SETS = {  # name: (volumes, input shape, target)
    "one": (1, (45, 120, 21), [32, 32, 16]),
    "small": (100, (45, 120, 21), [32, 32, 16]),
    "small400": (400, (45, 120, 21), [32, 32, 16]),
    "medium": (40, (256, 256, 40), [128, 128, 32]),
}
# One `touch` job per input and rule all: what Snakemake itself costs per job.
TRIVIAL_SNAKEFILE = """
import glob, os
NAMES = [os.path.basename(p)[: -len(".nii.gz")] for p in glob.glob(config["nii_folder"] + "/*.nii.gz")]
rule all:
    input: expand(config["output_path"] + "/{n}.done", n=NAMES)
rule touch:
    input: config["nii_folder"] + "/{n}.nii.gz"
    output: config["output_path"] + "/{n}.done"
    shell: "touch {output}"
"""


def make_speed_folder(folder: Path, count: int, shape) -> None:
    """`count` int16 volumes of `shape` (ten different ones, repeated)."""
    if folder.exists() and len(list(folder.glob("*.nii.gz"))) == count:
        return
    fresh(folder)
    payloads = [tiny_nifti_bytes(shape, seed) for seed in range(min(count, 10))]
    for index in range(count):
        (folder / f"v_{index:05d}.nii.gz").write_bytes(payloads[index % len(payloads)])


def speed_side(side, name, folder: Path, target, args, work: Path) -> dict:
    """One measured run of one side: workflow (plain `snakemake --cores N`), workflow with
    the jobs in-process (NII_RESAMPLE_WORKER=0), trivial workflow, or nidataset."""
    out, wdir = fresh(work / f"speed_out_{side}_{name}"), fresh(work / f"speed_wd_{side}_{name}")
    log = work / "logs" / f"speed_{side}_{name}.log"
    if side == "nidataset":
        return run_driver(args.nidataset_python, {"task": "nidataset_dataset", "folder": str(folder),
                                                  "out": str(out), "shape": list(target)}, log)
    config = write_config(wdir / "config.yaml", folder, out, target)
    command = snakemake_cmd(sys.executable, wdir, config, args.cores)
    env = workflow_env()
    if side == "trivial":
        (wdir / "Snakefile").write_text(TRIVIAL_SNAKEFILE)
        command[command.index("-s") + 1] = str(wdir / "Snakefile")
    if side == "in_process":
        env["NII_RESAMPLE_WORKER"] = "0"
    m = check_ok(run_measured(command, log, env=env), f"speed run {side} {name}")
    m["steps"] = steps_done(log)
    return m


def speed_runs(args, work: Path) -> dict:
    """Every side of every set, `--speed-rounds` times, alternated within each round."""
    sides = ["trivial", "workflow", "in_process"] + ([] if args.skip_nidataset else ["nidataset"])
    plan = {"one": ["trivial", "workflow"], "small": sides, "small400": ["trivial", "workflow"],
            "medium": [s for s in sides if s != "trivial"]}
    result = {"sets": {}, "rounds": args.speed_rounds}
    for name, (count, shape, target) in SPEED_SETS.items():
        folder = work / f"speed_{name}_{count}"
        make_speed_folder(folder, count, shape)
        result["sets"][name] = {"count": count, "shape": list(shape), "target": target,
                                **{side: [] for side in plan[name]}}
    for round_ in range(args.speed_rounds):
        for name, (count, shape, target) in SPEED_SETS.items():
            folder = work / f"speed_{name}_{count}"
            warm_cache(sorted(folder.glob("*.nii.gz")))
            for side in plan[name]:
                m = speed_side(side, name, folder, target, args, work)
                result["sets"][name][side].append(m)
                print(f"[speed {round_ + 1}/{args.speed_rounds}] {name} ({count} x {shape_text(shape)} -> "
                      f"{shape_text(target)}) {side}: wall {m['wall_s']:.2f} s, CPU {m['cpu_s']:.2f} s", flush=True)
    result["ratios"] = speed_ratios(result["sets"], args.speed_rounds)
    return result


def speed_ratios(sets: dict, rounds: int) -> dict:
    """The goals' figures, per round (each from runs of the same round: same machine load)."""
    wall = lambda name, side, r: sets[name][side][r]["wall_s"]  # noqa: E731
    ratios = {key: [] for key in ("small_vs_trivial", "small_vs_nidataset", "small_in_process_vs_trivial",
                                  "medium_vs_nidataset", "medium_in_process_vs_nidataset", "growth_400",
                                  "trivial_growth_400", "one_minus_trivial_s")}
    for r in range(rounds):
        ratios["small_vs_trivial"].append(wall("small", "workflow", r) / wall("small", "trivial", r))
        ratios["small_in_process_vs_trivial"].append(wall("small", "in_process", r) / wall("small", "trivial", r))
        if "nidataset" in sets["small"]:
            ratios["small_vs_nidataset"].append(wall("small", "workflow", r) / wall("small", "nidataset", r))
            ratios["medium_vs_nidataset"].append(wall("medium", "workflow", r) / wall("medium", "nidataset", r))
            ratios["medium_in_process_vs_nidataset"].append(
                wall("medium", "in_process", r) / wall("medium", "nidataset", r))
        for side, key in (("workflow", "growth_400"), ("trivial", "trivial_growth_400")):
            one = wall("one", side, r)
            ratios[key].append((wall("small400", side, r) - one) / (4 * (wall("small", side, r) - one)))
        ratios["one_minus_trivial_s"].append(wall("one", "workflow", r) - wall("one", "trivial", r))
    return ratios


def render_speed(speed: dict) -> list[str]:
    lines = ["", f"Start-up per job ({speed['rounds']} rounds, sides alternated; wall in s, each round's own ratio):", "",
             "| set | " + " | ".join(("trivial", "workflow", "in_process", "nidataset")) + " |",
             "| --- | --- | --- | --- | --- |"]
    for name, row in speed["sets"].items():
        cells = [", ".join(f"{m['wall_s']:.2f}" for m in row.get(side, [])) or "-"
                 for side in ("trivial", "workflow", "in_process", "nidataset")]
        lines.append(f"| {name}: {row['count']} x {shape_text(row['shape'])} -> {shape_text(row['target'])} | "
                     + " | ".join(cells) + " |")
    lines += ["", "| figure | per round | goal | verdict |", "| --- | --- | --- | --- |"]
    for key, values in speed["ratios"].items():
        goal = SPEED_GOALS.get(key)
        judged = verdict(max(values), goal) if goal is not None and values else ""
        lines.append(f"| {key} | {', '.join(f'{v:.2f}' for v in values) or 'n/a'} | "
                     f"{'<= ' + str(goal) if goal is not None else ''} | {judged} |")
    return lines


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def verdict(value, limit) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return "PASS" if value <= limit else "FAIL"


def fmt(value, spec=".1f", unit="") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:{spec}}{unit}"


def mib(nbytes) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f} MiB"


def render(results: dict) -> str:
    lines = []
    m = results["machine"]
    lines.append(f"# nii-resample benchmark ({'quick' if results['quick'] else 'full'}), {m['date']}")
    lines.append(f"# {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total']}, git {m['git_head']}"
                 f"{' (dirty)' if m['git_dirty'] else ''}, engine.py {m['engine_sha256']}, "
                 f"snakemake --cores {results['cores']}")
    lines.append("")
    lines.append("| measurement | nidataset | workflow | ratio | goal | verdict |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    goals = []
    variants = results["variants"]
    for row in results["runs"]:
        nid = row.get("nidataset")
        head = f"{row['name']}: {row['volumes']} vol -> {shape_text(row['target'])}"
        for key, label, _ in variants:
            if key not in row:
                continue
            wf = row[key]
            ratio = wf.get("wall_ratio")
            v = verdict(ratio, GOALS["wall_ratio"]) if nid else "n/a"
            goals.append((f"(1) wall {row['name']}, {label}", v, ratio))
            lines.append(f"| {head}, {label}, {wf['steps']} jobs: wall | {fmt(nid and nid['wall_s'], '.1f', ' s')} "
                         f"| {fmt(wf['wall_s'], '.1f', ' s')} | {fmt(ratio, '.3f')} | <= {GOALS['wall_ratio']} | {v} |")
            lines.append(f"| {head}, {label}: CPU (all processes) | {fmt(nid and nid['cpu_s'], '.1f', ' s')} "
                         f"| {fmt(wf['cpu_s'], '.1f', ' s')} | {fmt(wf.get('cpu_ratio'), '.3f')} | | |")
            lines.append(f"| {head}, {label}: peak RSS (largest process) | {fmt(nid and nid['peak_rss_mb'], '.0f', ' MiB')} "
                         f"| {fmt(wf['peak_rss_mb'], '.0f', ' MiB')} | {fmt(nid and wf['peak_rss_mb'] / nid['peak_rss_mb'], '.3f')} | | |")
        wf = row[variants[0][0]]
        lines.append(f"| {head}: resample jobs (Snakemake benchmark files, sampled every 0.5 s) | | "
                     f"{wf['jobs']['jobs']} jobs, sum {fmt(wf['jobs']['sum_s'], '.1f', ' s')} wall, "
                     f"{fmt(wf['jobs']['sum_cpu_s'], '.1f', ' s')} CPU, max RSS {fmt(wf['jobs']['max_rss_mb'], '.0f', ' MB')} | | | |")
        lines.append(f"| {head}: output size | {mib(nid and nid['output_bytes'])} | {mib(wf['output_bytes'])} "
                     f"| {fmt(wf.get('size_ratio'), '.2f')} | | |")
    s = results.get("single")
    if s:
        nid = s.get("nidataset")
        cli, step = s["workflow_cli"], s["workflow_step"]
        label = f"1 CT {shape_text(s['shape'])} {s['dtype']} -> {shape_text(s['target'])}"
        r = s.get("cpu_ratio_step")
        v = verdict(r, GOALS["cpu_ratio"]) if nid else "n/a"
        goals.append(("(2) CPU, resample step", v, r))
        lines.append(f"| {label}: CPU of the step (read+resample+write) | {fmt(nid and nid['driver']['step_cpu'], '.2f', ' s')} "
                     f"| {fmt(step['driver']['step_cpu'], '.2f', ' s')} | {fmt(r, '.3f')} | <= {GOALS['cpu_ratio']} | {v} |")
        lines.append(f"| {label}: wall of the step | {fmt(nid and nid['driver']['step_wall'], '.2f', ' s')} "
                     f"| {fmt(step['driver']['step_wall'], '.2f', ' s')} | "
                     f"{fmt(nid and step['driver']['step_wall'] / nid['driver']['step_wall'], '.3f')} | | |")
        lines.append(f"| {label}: CPU of the whole process (incl. imports) | {fmt(nid and nid['cpu_s'], '.2f', ' s')} "
                     f"| {fmt(cli['cpu_s'], '.2f', ' s')} (volume CLI) | {fmt(s.get('cpu_ratio_process'), '.3f')} | | |")
        r = s.get("rss_ratio_process")
        v = verdict(r, GOALS["rss_ratio"]) if nid else "n/a"
        goals.append(("(3) peak RSS, one job", v, r))
        lines.append(f"| {label}: peak RSS of the process | {fmt(nid and nid['peak_rss_mb'], '.0f', ' MiB')} "
                     f"| {fmt(cli['peak_rss_mb'], '.0f', ' MiB')} (volume CLI) | {fmt(r, '.3f')} | <= {GOALS['rss_ratio']} | {v} |")
        lines.append(f"| {label}: peak RSS above the imports | "
                     f"{fmt(nid and nid['driver']['peak_rss_mb'] - nid['driver']['rss_after_import_mb'], '.0f', ' MiB')} "
                     f"| {fmt(step['driver']['peak_rss_mb'] - step['driver']['rss_after_import_mb'], '.0f', ' MiB')} "
                     f"| {fmt(s.get('rss_ratio_above_imports'), '.3f')} | | |")
        lines.append(f"| {label}: imports (CPU, RSS after) | {fmt(nid and nid['driver']['import_cpu'], '.2f', ' s')}, "
                     f"{fmt(nid and nid['driver']['rss_after_import_mb'], '.0f', ' MiB')} | "
                     f"{fmt(step['driver']['import_cpu'], '.2f', ' s')}, {fmt(step['driver']['rss_after_import_mb'], '.0f', ' MiB')} | | | |")
    f = results.get("floor")
    if f:
        wio, sio = f["workflow_io"]["driver"], f["sitk_io"]["driver"]
        down = results["runs"][0]
        nid = down.get("nidataset")
        jobs_s = down[variants[0][0]]["jobs"]["sum_s"]
        lines.append(f"| floor, {len(f['files'])} vol read + write {shape_text(f['target'])}, no resampling: wall | "
                     f"{fmt(sio['step_wall'], '.1f', ' s')} SimpleITK = "
                     f"{fmt(nid and sio['step_wall'] / nid['driver']['step_wall'], '.2f')} of nidataset's time | "
                     f"{fmt(wio['step_wall'], '.1f', ' s')} nibabel+isal level {wio.get('compression_level')} = "
                     f"{fmt(jobs_s and wio['step_wall'] / jobs_s, '.2f')} of the resample jobs' time | "
                     f"{fmt(wio['step_wall'] / sio['step_wall'], '.3f')} | | |")
        lines.append(f"| floor: CPU, output size | {fmt(sio['step_cpu'], '.1f', ' s')}, {mib(f['sitk_io']['output_bytes'])} "
                     f"| {fmt(wio['step_cpu'], '.1f', ' s')}, {mib(f['workflow_io']['output_bytes'])} | | | |")
    t = results.get("tiny")
    if t:
        for key, label, _ in variants:
            if key not in t:
                continue
            tv = t[key]
            v = verdict(tv["marginal_wall_per_job_s"], GOALS["tiny_job_s"])
            goals.append((f"(4a) tiny per-job overhead, {label}", v, tv["marginal_wall_per_job_s"]))
            lines.append(f"| tiny 32^3, {label}: {t['count']} vol vs 1 vol, wall ({tv['jobs_per_volume']:.0f} jobs per volume) "
                         f"| | {fmt(tv['many']['wall_s'], '.1f', ' s')} vs {fmt(tv['one']['wall_s'], '.1f', ' s')} | | | |")
            lines.append(f"| tiny 32^3, {label}: marginal wall per job (CPU per job) | | "
                         f"{fmt(tv['marginal_wall_per_job_s'], '.2f', ' s')} ({fmt(tv['marginal_cpu_per_job_s'], '.2f', ' s')} CPU; "
                         f"resample job {fmt(tv['many']['jobs']['mean_s'], '.2f', ' s')}) | | <= {GOALS['tiny_job_s']} s | {v} |")
    d = results.get("dry_run")
    if d:
        v = verdict(d["wall_s"], GOALS["dry_run_s"]) if d["count"] >= 10000 else "n/a (< 10,000 inputs)"
        goals.append((f"(4b) dry run, {d['count']} inputs", v, d["wall_s"]))
        lines.append(f"| dry run (`-n --quiet`) over {d['count']} inputs: wall (CPU) | | "
                     f"{fmt(d['wall_s'], '.1f', ' s')} ({fmt(d['cpu_s'], '.1f', ' s')}) | | <= {GOALS['dry_run_s']} s "
                     f"(10,000) | {v} |")
        if d.get("printed"):
            lines.append(f"| plain `-n` (also simulates the schedule, prints every job): wall (CPU) | | "
                         f"{fmt(d['printed']['wall_s'], '.1f', ' s')} ({fmt(d['printed']['cpu_s'], '.1f', ' s')}) "
                         f"| | (not a goal) | |")
    lines.append("")
    lines.append("Goals: " + "; ".join(f"{name} {v}" + (f" ({fmt(val, '.3f')})" if val is not None else "")
                                       for name, v, val in goals))
    loads = [f"{x['load_before']:.2f}->{x['load_after']:.2f}" for r in results["runs"]
             for x in [r.get("nidataset")] + [r.get(k) for k, _, _ in variants] if x]
    lines.append(f"Load average (1 min) before->after the nidataset/workflow runs: {', '.join(loads)} "
                 f"(other users' processes share the {m['nproc']} CPUs)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--quick", action="store_true", help="smoke run: a few small volumes, < 1 min")
    parser.add_argument("--data", type=Path, help="folder of .nii.gz volumes to use (default: a generated synthetic dataset)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nii-resample-bench"),
                        help="work folder (dataset cache, outputs, logs); default %(default)s")
    parser.add_argument("--nidataset-python", default=sys.executable,
                        help="interpreter with nidataset==0.9.1 installed (default: this one)")
    parser.add_argument("--skip-nidataset", action="store_true", help="measure the workflow only")
    parser.add_argument("--out", type=Path, help="write all figures as JSON here")
    parser.add_argument("--seed", type=int, default=20250101, help="seed of the synthetic dataset")
    parser.add_argument("--down", type=parse_shape, help="downsample target X,Y,Z (default 224,224,128; quick 112,112,64)")
    parser.add_argument("--up", type=parse_shape, help="upsample target X,Y,Z (default 320,320,224; quick 160,160,112)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default %(default)s)")
    parser.add_argument("--tiny-count", type=int, help="tiny 32^3 volumes for the per-job overhead (default 20; quick 4)")
    parser.add_argument("--dry-run-count", type=int, help="inputs of the dry-run planning test (default 10000; quick 500)")
    parser.add_argument("--skip-dry-run", action="store_true", help="skip the dry-run planning test")
    parser.add_argument("--keep", action="store_true", help="keep the resampled outputs in the work folder")
    parser.add_argument("--repo", type=Path,
                        help="checkout of the workflow to measure (default: the one this script is in)")
    parser.add_argument("--no-snapshot", action="store_true",
                        help="measure the checkout in place (default: a frozen copy taken at the start, "
                             "so edits made while the benchmark runs cannot change what is measured)")
    parser.add_argument("--speed", action="store_true",
                        help="only the start-up per job sets: 1, 100 and 400 small volumes and 40 medium "
                             "ones, against a trivial workflow and nidataset (docs/benchmarks.md)")
    parser.add_argument("--speed-rounds", type=int, default=2, help="rounds of --speed (default %(default)s)")
    args = parser.parse_args(argv)
    global REPO, SNAKEFILE, PACKAGE_ROOT
    REPO = (args.repo or REPO).resolve()
    SNAKEFILE, PACKAGE_ROOT = REPO / "Snakefile", REPO / "src"
    args.down = args.down or ([112, 112, 64] if args.quick else [224, 224, 128])
    args.up = args.up or ([160, 160, 112] if args.quick else [320, 320, 224])
    args.tiny_count = args.tiny_count or (4 if args.quick else 20)
    args.dry_run_count = args.dry_run_count or (500 if args.quick else 10000)
    if args.tiny_count < 2:
        parser.error("--tiny-count must be at least 2")

    work = args.work.resolve() / ("quick" if args.quick else "full")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    machine = machine_info()  # git state and engine hash of the checkout itself
    if not args.no_snapshot:
        snapshot = snapshot_checkout(REPO, work / "checkout")
        SNAKEFILE, PACKAGE_ROOT = snapshot / "Snakefile", snapshot / "src"
        engine = PACKAGE_ROOT / "nii_resample" / "engine.py"
        if engine.exists():
            machine["engine_sha256"] = hashlib.sha256(engine.read_bytes()).hexdigest()[:12]
        print(f"[checkout] measuring a frozen copy of {REPO} in {snapshot}", flush=True)
    results = {"quick": args.quick, "cores": args.cores, "goals": GOALS, "machine": machine,
               "measured_checkout": str(SNAKEFILE.parent),
               "versions": {"workflow": python_versions(sys.executable, ["snakemake", "SimpleITK", "numpy",
                                                                          "nibabel", "isal"])}}
    if not args.skip_nidataset:
        results["versions"]["nidataset_side"] = python_versions(args.nidataset_python,
                                                                ["nidataset", "SimpleITK", "numpy"])
        if not results["versions"]["nidataset_side"].get("nidataset"):
            parser.error(f"nidataset is not installed for {args.nidataset_python} "
                         "(pip install -r requirements-bench.txt, or pass --nidataset-python)")

    if args.speed:
        results["speed"] = speed_runs(args, work)
        table = "\n".join(render_speed(results["speed"]))
        print(table)
        if args.out:
            args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        return 0

    # The dataset: a downsample folder and an upsample folder (volumes no larger than --up).
    if args.data:
        down_folder = args.data.resolve()
        inputs = sorted(down_folder.glob("*.nii.gz"))
        if not inputs:
            parser.error(f"--data {args.data}: no .nii.gz volumes")
        infos = {p: header_info(p) for p in inputs}
    else:
        down_folder = work / "data"
        print(f"[data] synthetic dataset (seed {args.seed}) in {down_folder}", flush=True)
        generate_dataset(down_folder, dataset_spec(args.quick, args.seed))
        inputs = sorted(down_folder.glob("*.nii.gz"))
        infos = {p: header_info(p) for p in inputs}
    results["dataset"] = {"folder": str(down_folder),
                          "volumes": [{"file": p.name, **infos[p], "bytes": p.stat().st_size} for p in inputs]}
    up_inputs = [p for p in inputs if all(n <= m for n, m in zip(infos[p]["shape"], args.up))]
    if not args.data and not args.quick and len(up_inputs) < 12:
        # The goal is judged on >= 12 volumes: top the upsample set up with more MRI-like ones.
        extra_folder = work / "data_up_extra"
        generate_dataset(extra_folder, upsample_extra_spec(12 - len(up_inputs), args.seed))
        up_inputs += sorted(extra_folder.glob("*.nii.gz"))
    up_folder = fresh(work / "data_up")
    for p in up_inputs:
        os.symlink(p, up_folder / p.name)

    if workflow_has_key("qc"):
        VARIANTS.append(("workflow_noqc", "workflow (qc: false)", {"qc": False}))
    results["variants"] = VARIANTS
    # --quick measures the extra variants on the downsample run only (to stay under a minute).
    secondary = VARIANTS[:1] if args.quick else VARIANTS
    results["runs"] = [compare_run("downsample", down_folder, args.down, args, work, VARIANTS)]
    if up_inputs:
        results["runs"].append(compare_run("upsample", up_folder, args.up, args, work, secondary))
    else:
        print(f"[upsample] no input is smaller than {shape_text(args.up)} on every axis: skipped", flush=True)

    # The CT downsample case: the largest integer volume (else the largest one).
    by_size = sorted(inputs, key=lambda p: np.prod(infos[p]["shape"]))
    integer = [p for p in by_size if np.dtype(infos[p]["dtype"]).kind in "iu"]
    results["single"] = single_volume((integer or by_size)[-1], args.down, args, work)
    results["floor"] = floor_run(inputs, args.down, args, work)
    results["tiny"] = tiny_overhead(args, work, secondary)
    if not args.skip_dry_run:
        results["dry_run"] = dry_run(args, work)
    results["total_benchmark_s"] = time.perf_counter() - started
    results["table"] = render(results)
    print()
    print(results["table"])
    print(f"\n(benchmark took {results['total_benchmark_s']:.0f} s; logs in {work / 'logs'})")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
