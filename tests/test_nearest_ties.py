"""`interpolation: nearest` picks the same voxels with both engines, exact .5 ties included.

A downsampling by 16/7 (512 -> 224 voxels, a common CT target) puts every 7th output plane
on an exact tie between two input planes; which one wins is ITK's rounding rule (half up)
applied to the position as ITK computes it along its scanline axis (x). Both engines work
on the voxel-index grid, so the outcome does not depend on spacing, origin or direction.
"""

import nibabel as nib
import numpy as np
import pytest

from support import affine_from, rotation, write_nifti
from nii_resample.volume import resample_volume


@pytest.mark.parametrize(
    "shape, target, spacing, origin, direction",
    [
        ((64, 30, 20), (28, 13, 9), (0.7, 0.7, 1.0), (-100.3, 20.1, -3.3), rotation(-30, 0)),
        ((20, 64, 20), (10, 28, 9), (0.8, 0.9, 3.0), (-12.5, 30.25, 80.0), rotation(15, 2)),
        ((40, 30, 12), (20, 15, 6), (1.3, 0.77, 2.1), (5.5, -7.25, 3.1), np.eye(3)),
    ],
)
def test_nearest_neighbour_engines_agree_on_ties(tmp_path, shape, target, spacing, origin, direction):
    rng = np.random.default_rng(sum(shape))
    data = rng.integers(-1000, 1000, shape).astype(np.int16)  # every voxel different: ties show
    source = write_nifti(tmp_path / "in.nii.gz", data, affine_from(spacing, origin, direction))
    results = {}
    for engine in ("fast", "itk"):
        out = tmp_path / f"{engine}.nii.gz"
        resample_volume(source, out, target, engine=engine, interpolation="nearest")
        results[engine] = np.asanyarray(nib.load(out).dataobj)
    np.testing.assert_array_equal(results["fast"], results["itk"])
    assert set(np.unique(results["fast"])) <= set(np.unique(data))
