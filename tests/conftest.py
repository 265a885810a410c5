"""Fixtures shared by the tests (the helpers themselves are in support.py)."""

from pathlib import Path

import numpy as np
import pytest

from support import affine_from, rotation, smooth_volume, write_nifti


@pytest.fixture
def make_dataset(tmp_path):
    """Writes a small, varied input folder and returns (folder, {prefix: path})."""

    def make(names=("ct", "mri"), folder=None):
        folder = Path(folder or tmp_path / "in")
        made = {}
        for index, name in enumerate(names):
            if index % 2 == 0:
                data = smooth_volume((30, 24, 12), np.int16, seed=index)
                affine = affine_from((0.8, 0.9, 3.0), (-12.5, 30.25, 80.0), rotation(15, 2))
            else:
                data = smooth_volume((20, 22, 18), np.float32, seed=index, low=0.0, high=1.0)
                affine = affine_from((1.2, 1.1, 1.5), (5.0, -7.0, 3.0), rotation(-30, 0))
            made[name] = write_nifti(folder / f"{name}.nii.gz", data, affine)
        return folder, made

    return make
