"""Resample a folder of NIfTI volumes onto one voxel grid, keeping the physical field of view.

The pieces: `engine` (separable B-spline resampling of arrays), `nifti` (reading, checking
and atomically writing `.nii.gz` files), `volume` (one volume end to end), `settings`
(configuration checks shared by the workflow, the Python API and the command line).
"""

__version__ = "0.1.0"
