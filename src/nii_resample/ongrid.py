"""Resampling in world coordinates onto a given grid: a case's image grid or a reference volume.

The usual path (nii_resample.volume) keeps each volume's own field of view, a per-axis
scaling of its voxel indices. Here the target grid is someone else's: the output grid of
the case's image (planned from that image's header alone, with the very functions its own
job uses, so both outputs share shape and affine bit for bit), or a reference volume's
grid as stored. Each output voxel centre is mapped through the target's affine and the
input's inverse affine into the input's voxel indices (`index_map`); images are sampled
there by SimpleITK (B-spline by default), label maps by nii_resample.labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import VolumeError
from .nifti import checked_header, fov_corners

# Voxel-index maps closer than this to the identity's shape are float noise (a header
# written by another tool): the antialiasing prefilter then stays off.
NOISE_RATIO = 1e-6


@dataclass
class FixedGrid:
    """A grid an output must land on exactly: shape, affine (voxel -> RAS+ mm, the best
    affine of `geometry`), the header whose transform fields the output copies, and what
    it is, for the manifest ("case reference: imagesTr/case_001_0000.nii.gz")."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    geometry: object  # nibabel header: sform, qform, pixdim of the grid
    source: str
    source_affine: np.ndarray | None = None  # the case image's own input grid (mm offsets)
    source_shape: tuple[int, int, int] | None = None


def reference_grid(path) -> FixedGrid:
    """The grid of a reference volume (an atlas, a template, a scan), as stored."""
    header = checked_header(path)
    shape = tuple(int(n) for n in header.get_data_shape()[:3])
    return FixedGrid(shape, header.get_best_affine(), header, f"reference: {path}")


def case_grid(image_path, grid: dict, orientation: str = "keep") -> FixedGrid:
    """The output grid of the case's image (its job's, computed from its header alone)."""
    from .grids import own_grid
    from .nifti import output_geometry

    header = checked_header(image_path)
    if orientation != "keep":
        from .orientation import reorient_header

        header = reorient_header(header, orientation)[0]
    shape = tuple(int(n) for n in header.get_data_shape()[:3])
    affine = header.get_best_affine()
    own = own_grid(shape, affine, grid)
    geometry = output_geometry(header, own.shape, own.affine)
    return FixedGrid(
        tuple(own.shape), own.affine, geometry, f"case reference: {image_path}", affine, shape
    )


def planned_size(path, options: dict, header=None):
    """The voxels a job with these options (settings.job_options) writes, from headers
    alone (for its memory request); never raises (the job itself will say what is wrong).
    `header`: the input's, already read and reoriented (reoriented_header), or the
    exception reading it raised; None: read it here."""
    from .grids import own_grid

    try:
        if options.get("reference"):
            return reference_grid(options["reference"]).shape
        if options.get("case_reference"):
            return case_grid(
                options["case_reference"], options, options.get("orientation", "keep")
            ).shape
        if header is None:
            header = reoriented_header(path, options.get("orientation", "keep"))
        if isinstance(header, Exception):  # reading it failed (resources.estimate_job_mem_mb)
            raise header
        shape = [int(n) for n in header.get_data_shape()[:3]]
        return own_grid(shape, header.get_best_affine(), options).shape
    except Exception:
        return (1, 1, 1)


def reoriented_header(path, orientation: str = "keep"):
    """The input's header, its axes reordered as the job will (orientation != "keep")."""
    from .nifti import read_header

    header = read_header(path)
    if orientation != "keep":  # the job resamples these axes
        from .orientation import reorient_header

        header = reorient_header(header, orientation)[0]
    return header


def index_map(volume_affine: np.ndarray, grid_affine: np.ndarray) -> np.ndarray:
    """4x4: output voxel index -> input continuous voxel index."""
    return np.linalg.solve(np.asarray(volume_affine, np.float64), np.asarray(grid_affine, np.float64))


def grid_offset_mm(affine, shape, other_affine, other_shape) -> float:
    """How far apart two grids are: the largest distance (mm) between corresponding corners
    of their fields of view (0 for the same grid; float noise shows as ~1e-5)."""
    ours = fov_corners(shape) @ np.asarray(affine, np.float64).T
    theirs = fov_corners(other_shape) @ np.asarray(other_affine, np.float64).T
    return float(np.max(np.linalg.norm((ours - theirs)[:, :3], axis=1)))


def check_overlap(path: Path, shape, mapping: np.ndarray, grid: FixedGrid) -> None:
    """Refuse an input none of whose field of view lies inside the target grid's."""
    # The input's field of view in output voxel indices: its corners' bounding box.
    inverse = np.linalg.inv(mapping)
    corners = fov_corners(shape) @ inverse.T
    low, high = corners[:, :3].min(axis=0), corners[:, :3].max(axis=0)
    if np.any(high <= -0.5) or np.any(low >= np.asarray(grid.shape) - 0.5):
        raise VolumeError(
            f"{path.name}: its field of view does not overlap the grid it must take "
            f"({grid.source}) at all"
        )


def step_ratios(mapping: np.ndarray) -> tuple[float, ...]:
    """Input voxels per output voxel along each input axis (for the antialiasing blur)."""
    ratios = np.abs(mapping[:3, :3]).max(axis=1)
    return tuple(1.0 if abs(r - 1.0) < NOISE_RATIO else float(r) for r in ratios)


def itk_index_image(frame: np.ndarray, interpolation: str, threads: int):
    """(SimpleITK image of `frame` on its voxel-index grid, the interpolator's id), with
    `threads` for SimpleITK: what both SimpleITK paths (here and volume.resample_with_itk)
    start from. SimpleITK's array order is (z, y, x), the transpose of nibabel's F order."""
    import SimpleITK as sitk

    interpolators = {
        "bspline": sitk.sitkBSpline,
        "linear": sitk.sitkLinear,
        "nearest": sitk.sitkNearestNeighbor,
    }
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(threads)))
    return sitk.GetImageFromArray(np.ascontiguousarray(frame.T)), interpolators[interpolation]


def sample_image(frame: np.ndarray, shape, mapping: np.ndarray, interpolation: str,
                 threads: int, outside: float) -> np.ndarray:
    """`frame` (float) sampled at the output grid's voxel centres, mapped by `mapping` into
    the input's voxel indices, with SimpleITK's Resample run on index grids (unit spacing,
    zero origin, identity direction: the whole geometry is in the affine transform).
    Output voxels whose position lies outside the input's field of view get `outside`."""
    import SimpleITK as sitk

    image, interpolator = itk_index_image(frame, interpolation, threads)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(mapping[:3, :3].ravel().tolist())
    transform.SetTranslation(mapping[:3, 3].tolist())
    resampled = sitk.Resample(
        image,
        [int(n) for n in shape],
        transform,
        interpolator,
        [0.0, 0.0, 0.0],
        [1.0, 1.0, 1.0],
        np.eye(3).ravel().tolist(),
        float(outside),
        sitk.sitkFloat64,
    )
    return sitk.GetArrayViewFromImage(resampled).T.copy(order="F")


def resample_image_onto(frame, finite, shape, mapping, options, outside) -> np.ndarray:
    """An image frame on the target grid, unclamped floats: antialiasing blur on the input
    axes that shrink, then `sample_image`; NaN/inf voxels as missing data (the same
    normalised interpolation as the usual path, nii_resample.volume.interpolate_missing)."""
    from .antialias import antialias_sigmas, gaussian_blur

    sigmas = (0.0,) * 3
    if options["antialias"]:
        sigmas = antialias_sigmas(frame.shape[:3], frame.shape[:3], step_ratios(mapping))

    def sample(values, fill):
        if any(sigmas):
            values = gaussian_blur(values, sigmas, np.float64)
        return sample_image(np.asarray(values, np.float64), shape, mapping,
                            options["interpolation"], options["threads"], fill)

    if finite is None:
        return sample(frame, outside)
    resampled = sample(np.where(finite, frame, 0), 0.0)
    weights = sample(finite.astype(np.float64), 0.0)
    known = weights >= 0.5
    np.divide(resampled, weights, out=resampled, where=known)
    resampled[~known] = np.nan
    # Outside the input's field of view is `outside`, as without NaNs, not missing data.
    inside = sample_image(np.ones(frame.shape[:3]), shape, mapping, "nearest", 1, 0.0)
    resampled[inside == 0] = outside
    return resampled
