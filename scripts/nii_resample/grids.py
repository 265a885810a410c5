"""Target grids: a number of voxels (`desired_volume`) or a voxel size (`desired_spacing`).

desired_volume [X, Y, Z] keeps the field of view: new spacing = old spacing x old size / new
size, and the outer corners stay put. desired_spacing [sx, sy, sz] mm (nnU-Net, MONAI
Spacing, TorchIO Resample) gives every axis exactly that spacing and max(1, round(n s / t))
voxels; as n s / t is rarely a whole number the field of view cannot keep both outer
corners, so its centre stays put (it grows or shrinks by less than one new voxel per axis).
"""

from __future__ import annotations

import math

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


def size_ratios(old_shape, new_shape, steps=None) -> np.ndarray:
    """Input voxels per output voxel on each axis (what anti-aliasing needs)."""
    if steps is not None:
        return np.asarray(steps, float)
    return np.asarray(old_shape[:3], float) / np.asarray(new_shape[:3], float)
