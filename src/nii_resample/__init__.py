"""Resample a folder of NIfTI volumes onto one voxel grid, keeping the physical field of view.

The pieces: `engine` (separable B-spline resampling of arrays), `nifti` (reading, checking
and atomically writing `.nii.gz` files), `volume` (one volume end to end), `settings`
(configuration checks shared by the workflow, the Python API and the command line).
"""

__version__ = "0.1.0"

__all__ = ["resampling_dataset", "restore_dataset", "ResamplingFailed", "__version__"]


def __getattr__(name):
    # Lazy, so that the workflow's jobs, which import submodules, don't pay for the API.
    if name in ("resampling_dataset", "ResamplingFailed"):
        from . import api

        return getattr(api, name)
    if name == "restore_dataset":
        from . import restore

        return restore.restore_dataset
    raise AttributeError(f"module 'nii_resample' has no attribute {name!r}")
