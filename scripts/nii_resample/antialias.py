"""Anti-aliasing before downsampling: a separable Gaussian on each axis that shrinks.

sigma = sqrt(f^2 - 1) / (2 sqrt(2 ln 2)) input voxels for a size ratio f = old/new > 1: the
input already has a one-voxel footprint (FWHM 1); adding this blur makes it the output
voxel's footprint (FWHM f). Axes that keep or grow their size are left alone.
"""

from __future__ import annotations

import numpy as np

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def antialias_sigmas(old_shape, new_shape) -> tuple[float, ...]:
    """Gaussian sigma (input voxels) per axis; 0 where the axis does not shrink."""
    factors = np.asarray(old_shape, float) / np.asarray(new_shape, float)
    return tuple(float(np.sqrt(f * f - 1.0) / FWHM_PER_SIGMA) if f > 1.0 else 0.0 for f in factors)


def gaussian_blur(data: np.ndarray, sigmas, precision=np.float32) -> np.ndarray:
    """`data` blurred along each axis with its sigma (mirror boundary, as the B-spline prefilter)."""
    from scipy.ndimage import gaussian_filter1d

    blurred = np.asarray(data)
    for axis, sigma in enumerate(sigmas):
        if sigma > 0:
            blurred = gaussian_filter1d(
                blurred, sigma, axis=axis, mode="mirror", truncate=4.0, output=precision
            )
    return blurred.astype(precision, copy=False)
