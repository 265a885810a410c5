"""Resample one NIfTI volume onto a grid of `desired_volume` voxels with the same field of view."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .errors import VolumeError
from .settings import ENGINES
from .nifti import (
    Volume,
    itk_geometry,
    read_volume,
    remove_stale_partials,
    resampled_affine,
    write_volume,
)

INTERPOLATIONS = ("bspline", "linear", "nearest")


def _vector_text(values) -> str:
    return ",".join(repr(float(v)) if not float(v).is_integer() else str(float(v)) for v in values)


def _size_text(values) -> str:
    return "x".join(str(int(v)) for v in values)


def resample_with_itk(
    volume: Volume, desired_volume, interpolation: str, threads: int
) -> np.ndarray:
    """Reference path: SimpleITK's own Resample on the same field-of-view-preserving grid."""
    import SimpleITK as sitk

    interpolators = {
        "bspline": sitk.sitkBSpline,
        "linear": sitk.sitkLinear,
        "nearest": sitk.sitkNearestNeighbor,
    }
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(threads)))
    spatial = np.asarray(volume.data).reshape(volume.spatial_shape, order="F")
    # SimpleITK's array order is (z, y, x): the transpose of nibabel's F-ordered (x, y, z).
    image = sitk.GetImageFromArray(np.ascontiguousarray(spatial.T))
    old = itk_geometry(volume.affine)
    image.SetSpacing(old["spacing"].tolist())
    image.SetOrigin(old["origin"].tolist())
    image.SetDirection(old["direction"].ravel().tolist())
    new = itk_geometry(resampled_affine(volume.affine, volume.spatial_shape, desired_volume))
    resampled = sitk.Resample(
        image,
        [int(n) for n in desired_volume],
        sitk.Transform(),
        interpolators[interpolation],
        new["origin"].tolist(),
        new["spacing"].tolist(),
        new["direction"].ravel().tolist(),
        0.0,
        sitk.sitkFloat64,
    )
    return sitk.GetArrayViewFromImage(resampled).T.copy(order="F")


def resample_with_fast_engine(
    volume: Volume, desired_volume, interpolation: str, threads: int
) -> np.ndarray:
    from .engine import resample_array

    spatial = np.asarray(volume.data).reshape(volume.spatial_shape, order="F")
    precision = np.float64 if spatial.dtype == np.float64 else np.float32
    return resample_array(
        spatial, tuple(desired_volume), interpolation, precision=precision, threads=threads
    )


def to_stored_type(resampled: np.ndarray, low, high, dtype: np.dtype) -> np.ndarray:
    """Clamp to the input's range (B-spline overshoots), round integers to nearest, cast."""
    np.clip(resampled, low, high, out=resampled)
    if dtype.kind in "iu":
        np.rint(resampled, out=resampled)
    return resampled.astype(dtype, copy=False)


def intensity_range(data: np.ndarray) -> tuple[float, float]:
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.any():
            return float("nan"), float("nan")
        if not finite.all():
            data = data[finite]
    return data.min(), data.max()


def resample_volume(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    desired_volume,
    *,
    engine: str = "fast",
    interpolation: str = "bspline",
    compression_level: int = 1,
    threads: int = 1,
) -> dict:
    """Resample `in_path` to `desired_volume` = (X, Y, Z) voxels and write `out_path` atomically.

    New spacing = old spacing x old size / new size; the origin moves by D (new - old
    spacing) / 2 so that the outer corners of the field of view stay put. Returns a record
    of what was done (the manifest row). Raises VolumeError with a one-line reason.
    """
    started = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
        )
    desired_volume = tuple(int(n) for n in desired_volume)
    remove_stale_partials(out_path)
    volume = read_volume(in_path)
    stored_low, stored_high = intensity_range(volume.data)
    if not np.isfinite(stored_low):
        raise VolumeError(f"{in_path.name}: every voxel is NaN or infinite")
    resample = resample_with_fast_engine if engine == "fast" else resample_with_itk
    resampled = resample(volume, desired_volume, interpolation, threads)
    resampled = to_stored_type(resampled, stored_low, stored_high, volume.data.dtype)
    # Keep trailing singleton axes (x, y, z, 1) as the input had them.
    resampled = resampled.reshape(desired_volume + volume.data.shape[3:], order="F")
    new_affine = resampled_affine(volume.affine, volume.spatial_shape, desired_volume)
    write_volume(out_path, volume.header, resampled, new_affine, compression_level)

    slope, inter = volume.intensity_scaling
    new_low, new_high = intensity_range(resampled)
    old_geometry, new_geometry = itk_geometry(volume.affine), itk_geometry(new_affine)
    return {
        "input_path": str(in_path),
        "output_path": str(out_path),
        "status": "ok",
        "reason": "",
        "engine": engine,
        "interpolation": interpolation,
        "pixel_type": str(volume.data.dtype),
        "original_size": _size_text(volume.spatial_shape),
        "original_spacing": _vector_text(old_geometry["spacing"]),
        "original_origin": _vector_text(old_geometry["origin"]),
        "direction": _vector_text(old_geometry["direction"].ravel()),
        "new_size": _size_text(desired_volume),
        "new_spacing": _vector_text(new_geometry["spacing"]),
        "new_origin": _vector_text(new_geometry["origin"]),
        "min_before": float(stored_low) * slope + inter,
        "max_before": float(stored_high) * slope + inter,
        "min_after": float(new_low) * slope + inter,
        "max_after": float(new_high) * slope + inter,
        "seconds": round(time.perf_counter() - started, 3),
    }
