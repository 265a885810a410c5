"""Test helpers: real NIfTI files in temporary folders and real Snakemake runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
sys.path.insert(0, str(REPO / "src"))


def rotation(angle_degrees: float, axis: int) -> np.ndarray:
    """A 3x3 rotation about one axis: oblique directions exercise the geometry."""
    angle = np.deg2rad(angle_degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = cos, -sin, sin, cos
    return matrix


def affine_from(spacing, origin=(0.0, 0.0, 0.0), direction=None) -> np.ndarray:
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing, float)
    affine[:3, 3] = origin
    return affine


def smooth_volume(shape, dtype=np.int16, seed=0, low=-1000.0, high=1500.0) -> np.ndarray:
    """Blobs on a background with a sharp edge: realistic enough to show interpolation errors."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    volume = np.where(radius < 0.8, 0.3, 0.0) + 0.4 * np.cos(3 * grids[0]) * np.sin(2 * grids[1])
    volume = volume + 0.05 * rng.standard_normal(shape)
    volume = (volume - volume.min()) / (volume.max() - volume.min())
    volume = low + (high - low) * volume
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        volume = np.clip(np.rint(volume), info.min, info.max)
    return volume.astype(dtype)


def write_nifti(path, data, affine=None, *, sform_code=1, qform_code=1, header=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.eye(4) if affine is None else affine
    image = nib.Nifti1Image(np.asarray(data), affine, header=header)
    image.header.set_sform(affine, code=sform_code)
    image.header.set_qform(affine, code=qform_code)
    image.header.set_data_dtype(np.asarray(data).dtype)
    nib.save(image, path)
    return path


def write_config(folder: Path, **settings) -> Path:
    path = Path(folder) / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def run_snakemake(
    workdir, config: dict | None = None, *extra, cores=2, check=True, timeout=600, env=None
):
    """`python -m snakemake` on this repo's Snakefile, in `workdir`, with `config` as its file
    (`env`: the environment instead of this process's own)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--cores",
        str(cores),
    ]
    if config is not None:
        command += ["--configfile", str(write_config(workdir, **config))]
    command += list(extra)
    result = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**(os.environ if env is None else env), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    result.output = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.output[-6000:]}")
    return result


def fov_corners(affine, shape) -> np.ndarray:
    """Physical (mm) positions of the 8 outer corners of the field of view."""
    corners = []
    for i in (-0.5, shape[0] - 0.5):
        for j in (-0.5, shape[1] - 0.5):
            for k in (-0.5, shape[2] - 0.5):
                corners.append((np.asarray(affine) @ [i, j, k, 1.0])[:3])
    return np.array(corners)
