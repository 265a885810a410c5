"""Target grids: a number of voxels (`desired_volume`) or a voxel size (`desired_spacing`).

desired_volume [X, Y, Z] keeps the field of view: new spacing = old spacing x old size / new
size, and the outer corners stay put. desired_spacing [sx, sy, sz] mm (nnU-Net, MONAI
Spacing, TorchIO Resample) gives every axis exactly that spacing and max(1, round(n s / t))
voxels; as n s / t is rarely a whole number the field of view cannot keep both outer
corners, so its centre stays put (it grows or shrinks by less than one new voxel per axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def target_grid(
    old_shape, old_spacing, desired_volume=None, desired_spacing=None
) -> tuple[tuple[int, int, int], list | None]:
    """(new size, steps) for one volume: steps is None for `desired_volume` (the field of
    view kept), else the input voxels per output voxel on each axis (engine `steps`)."""
    if (desired_volume is None) == (desired_spacing is None):
        raise ValueError("give exactly one of desired_volume and desired_spacing")
    if desired_volume is not None:
        return tuple(int(n) for n in desired_volume), None
    sizes, steps = [], []
    for n, spacing, target in zip(old_shape[:3], old_spacing, desired_spacing):
        step = float(target) / float(spacing)
        # round half up (Python's round() would go to even: 2.5 -> 2)
        sizes.append(max(1, int(math.floor(int(n) / step + 0.5))))
        steps.append(step)
    return tuple(sizes), steps


def step_spacings(steps) -> list[float]:
    """Input voxels per output voxel of each step: a number, or (origin, spacing)."""
    return [float(s[1]) if isinstance(s, tuple) else float(s) for s in steps]


def crop_or_pad_grid(old_shape, sizes, steps, shape):
    """A target spacing's grid (`sizes` voxels, `steps`: target_grid) centre-cropped or
    padded to exactly `shape` voxels, on the same lattice (no second interpolation): half
    the difference, rounded down, is cropped or padded before the first voxel, the rest
    after it (as TorchIO's CropOrPad), so the field of view's centre moves by at most half
    a voxel.

    Returns (full, inner, kept, changes), per axis: the whole output grid as engine steps
    (origin, spacing); the part of it inside the uncropped grid, the only voxels to
    resample (memory and work bounded by the output), as (origin, spacing, first, size) of
    the uncropped grid (the engines take those samples of it, bit for bit); its slice of
    the output; and (before, after): voxels cropped (> 0) or padded (< 0) at each end."""
    from .engine import grid_origin

    full, inner, kept, changes = [], [], [], []
    for n_in, size, step, wanted in zip(old_shape[:3], sizes, steps, shape):
        origin, spacing = grid_origin(int(n_in), int(size), step)
        excess = int(size) - int(wanted)  # > 0: to crop; < 0: to pad
        start = excess // 2 if excess >= 0 else -(-excess // 2)
        low, high = max(0, -start), min(int(wanted), int(size) - start)
        full.append((origin + start * spacing, spacing))
        inner.append((origin, spacing, start + low, int(size)))
        kept.append(slice(low, high))
        changes.append((start, int(size) - int(wanted) - start))
    return full, inner, kept, changes


def padded_to_multiple(sizes, multiple: int) -> tuple[int, ...]:
    """Each size raised to the next multiple (U-Nets want sizes divisible by 16 or 32)."""
    return tuple(-(-int(n) // multiple) * multiple for n in sizes)


def size_ratios(old_shape, new_shape, steps=None) -> np.ndarray:
    """Input voxels per output voxel on each axis (what anti-aliasing needs)."""
    if steps is not None:
        return np.asarray(step_spacings(steps), float)
    return np.asarray(old_shape[:3], float) / np.asarray(new_shape[:3], float)


@dataclass
class OwnGrid:
    """A volume's output grid from its own geometry (desired_volume or desired_spacing, then
    crop_or_pad / pad_to_multiple): what its job writes, and what a case's members take.
    `steps`/`inner_shape`: the grid the engines resample (only the voxels inside the
    uncropped grid); `kept`: where those go in the output (None: everywhere); `changes`:
    per axis (before, after) voxels cropped (> 0) or padded (< 0)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    inner_shape: tuple[int, int, int]
    steps: list | None
    kept: tuple | None = None
    changes: list | None = None


def own_grid(shape, affine, spec: dict) -> OwnGrid:
    """The output grid of a volume of `shape` and `affine` for a grid `spec` (the job's
    options: desired_volume or desired_spacing, crop_or_pad, pad_to_multiple), from its
    header alone: the job and its case's members compute it with this one function."""
    from .nifti import itk_geometry, resampled_affine

    spacing = itk_geometry(affine)["spacing"]
    sizes, steps = target_grid(shape, spacing, spec.get("desired_volume"),
                               spec.get("desired_spacing"))
    wanted = spec.get("crop_or_pad") or None
    if (spec.get("pad_to_multiple") or 1) > 1:
        wanted = padded_to_multiple(wanted or sizes, int(spec["pad_to_multiple"]))
    if wanted is None or steps is None:
        return OwnGrid(sizes, resampled_affine(affine, shape, sizes, steps), sizes, steps)
    wanted = tuple(int(n) for n in wanted)
    full, inner, kept, changes = crop_or_pad_grid(shape, sizes, steps, wanted)
    inner_shape = tuple(k.stop - k.start for k in kept)
    return OwnGrid(wanted, resampled_affine(affine, shape, wanted, full), inner_shape, inner,
                   tuple(kept), changes)


def changes_text(changes) -> str:
    """The manifest's crop_or_pad column: `x: cropped 2+3; y: padded 1+1; z: kept`."""
    if changes is None:
        return ""
    parts = []
    for axis, (before, after) in zip("xyz", changes):
        if before == after == 0:
            parts.append(f"{axis}: kept")
        elif before >= 0 and after >= 0:
            parts.append(f"{axis}: cropped {before}+{after}")
        else:  # crop_or_pad_grid splits a difference into two parts of its own sign
            parts.append(f"{axis}: padded {-before}+{-after}")
    return "; ".join(parts)
