"""Read, check and atomically write NIfTI volumes.

nibabel parses and writes the header (so sform/qform codes, units, intent, description and
integer scaling survive); ISA-L (`isal`) does the gzip work, several times faster than zlib.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from .errors import VolumeError
from .files import atomic_write
from .formatting import numbers_text, size_text

GZIP_MAGIC = b"\x1f\x8b"
# Largest NIfTI header (NIfTI-2); enough bytes to parse any header.
MAX_HEADER_BYTES = 540
# Tolerance on D^T D = I for the direction cosines (ITK is as strict for its own images).
ORTHONORMAL_TOLERANCE = 1e-4
# Below this, |D^T D - I| is the float32 rounding of a stored rotation, not a shear to report.
SHEAR_NOISE = 1e-6
# qform and sform closer than this (mm, at every field-of-view corner) are reported as equal.
SAME_TRANSFORM_MM = 1e-3
# NIfTI's qform_code/sform_code values (unknown, scanner, aligned, Talairach, MNI, template).
XFORM_CODES = range(6)
# ISA-L only has levels 0-3; above that zlib is used (smaller files, much slower).
ISAL_MAX_LEVEL = 3
# A resampled volume's data type is the input's; these are the kinds that can be interpolated.
SUPPORTED_KINDS = "iuf"


@dataclass
class Volume:
    """A NIfTI volume as stored on disk: header, raw (unscaled) voxels, voxel-to-RAS affine."""

    path: Path
    header: nib.Nifti1Header
    data: np.ndarray  # raw stored values, F-ordered, axes (x, y, z[, t, ...])
    affine: np.ndarray  # 4x4, voxel index -> RAS+ millimetres (nibabel's best affine)
    header_geometry: str = ""  # which transforms the header declares, as accepted (manifest)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape[:3])

    @property
    def intensity_scaling(self) -> tuple[float, float]:
        """(slope, intercept) that turn stored values into physical ones."""
        slope, inter = self.header.get_slope_inter()
        return (1.0 if slope is None else float(slope), 0.0 if inter is None else float(inter))


def decompress(path: Path, raw: bytes) -> bytes:
    """The NIfTI bytes of `raw` (a file's content); VolumeError in one line if its gzip is bad."""
    if raw[:2] != GZIP_MAGIC:
        # An uncompressed NIfTI named .nii.gz is still a NIfTI: let the header check decide.
        return raw
    try:
        return igzip.decompress(raw)
    except EOFError:
        raise VolumeError(
            f"{path.name}: the file is truncated (its gzip stream ends before the end marker)"
        ) from None
    except Exception as error:  # zlib.error, isal's IsalError, BadGzipFile, CRC mismatch...
        raise VolumeError(f"{path.name}: corrupt gzip data ({error})") from None


def _header_class(path: Path, raw: bytes):
    if len(raw) < 4:
        raise VolumeError(f"{path.name}: the file is empty or too short to be NIfTI")
    for byteorder in ("little", "big"):
        sizeof_hdr = int.from_bytes(raw[:4], byteorder)
        if sizeof_hdr == 348:
            return nib.Nifti1Header
        if sizeof_hdr == 540:
            return nib.Nifti2Header
    raise VolumeError(f"{path.name}: not a NIfTI file (no NIfTI-1 or NIfTI-2 header)")


def parse_header(path: Path, raw: bytes) -> nib.Nifti1Header:
    """The header of a decompressed NIfTI file, or a VolumeError naming the file."""
    header_class = _header_class(path, raw)
    try:
        return header_class.from_fileobj(io.BytesIO(raw), check=True)
    except Exception as error:  # nibabel raises several types for a malformed header
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise VolumeError(f"{path.name}: invalid NIfTI header ({message})") from None


def read_header(path: str | os.PathLike) -> nib.Nifti1Header:
    """Read only the header (the first bytes of the gzip stream): cheap, for planning."""
    path = Path(path)
    with open(path, "rb") as handle:
        start = handle.read(2)
        handle.seek(0)
        if start == GZIP_MAGIC:
            with igzip.GzipFile(fileobj=handle) as stream:
                raw = stream.read(MAX_HEADER_BYTES)
        else:
            raw = handle.read(MAX_HEADER_BYTES)
    header_class = _header_class(path, raw)
    return header_class(raw[: header_class.template_dtype.itemsize], check=False)


def check_pixel_type(path: Path, dtype: np.dtype) -> None:
    if dtype.kind not in SUPPORTED_KINDS or dtype.fields is not None:
        raise VolumeError(
            f"{path.name}: pixel type {dtype} is not supported "
            "(only integer and real floating-point scalar volumes can be resampled)"
        )


def check_dimensions(path: Path, shape: tuple[int, ...]) -> None:
    """Accept 3-D volumes and 4-D series (trailing singleton axes allowed); refuse the rest."""
    if len(shape) < 3:
        raise VolumeError(
            f"{path.name}: {len(shape)}-D image ({size_text(shape)}); "
            "only 3-D volumes and 4-D series can be resampled"
        )
    if any(n != 1 for n in shape[4:]):
        raise VolumeError(
            f"{path.name}: {len(shape)}-D image ({size_text(shape)}); "
            "only 3-D volumes and 4-D series can be resampled"
        )
    if min(shape) < 1:
        raise VolumeError(f"{path.name}: empty image ({size_text(shape)})")


def transform_shear(path: Path, affine: np.ndarray, name: str = "affine") -> float:
    """Check one voxel-to-mm transform (finite, no zero spacing, shear within tolerance) and
    return its shear, max |D^T D - I|; any problem is a VolumeError naming the file."""
    matrix = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(matrix[:3])):
        raise VolumeError(f"{path.name}: the {name} holds a non-finite number (NaN or infinity)")
    linear = matrix[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise VolumeError(f"{path.name}: the voxel spacing of the {name} is zero")
    direction = linear / spacing
    deviation = float(np.max(np.abs(direction.T @ direction - np.eye(3))))
    if deviation > ORTHONORMAL_TOLERANCE:
        raise VolumeError(
            f"{path.name}: the voxel axes are not orthonormal in the {name} (sheared, "
            f"max |D^T D - I| = {deviation:.3g} > {ORTHONORMAL_TOLERANCE:g} tolerated); "
            "only rectilinear grids can be resampled"
        )
    return deviation


def spacing_and_direction(path: Path, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel spacing (mm) and direction matrix of an affine, or a VolumeError."""
    transform_shear(path, affine)
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    return spacing, linear / spacing


def _qform(path: Path, header) -> np.ndarray:
    """The qform from its quaternion fields, or a VolumeError (nibabel has already turned
    negative pixdims positive and a qfac other than +-1 into 1 when parsing)."""
    keys = ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")
    if not np.all(np.isfinite(np.asarray([header[key] for key in keys], dtype=np.float64))):
        raise VolumeError(f"{path.name}: the qform holds a non-finite number (NaN or infinity)")
    try:
        return header.get_qform(coded=False)
    except Exception as error:  # nibabel: ValueError (|b,c,d| > 1) or HeaderDataError
        raise VolumeError(f"{path.name}: invalid qform ({error})") from None


def fov_corners(shape) -> np.ndarray:
    """8 x 4: the outer corners of a grid of `shape` voxels (the field of view's: half a
    voxel beyond the first and last voxel centres), as homogeneous voxel indices."""
    return np.array(
        [
            [i, j, k, 1.0]
            for i in (-0.5, shape[0] - 0.5)
            for j in (-0.5, shape[1] - 0.5)
            for k in (-0.5, shape[2] - 0.5)
        ]
    )


def _corner_distance(first: np.ndarray, second: np.ndarray, shape) -> float:
    """Largest distance (mm) between the positions two transforms give the FOV corners."""
    corners = fov_corners(shape)
    return float(np.max(np.linalg.norm((corners @ (first - second).T)[:, :3], axis=1)))


def check_unrepaired_fields(path: Path, raw: bytes, header_class) -> None:
    """Refuse the geometry fields nibabel's parser silently repairs where readers then
    disagree or invent a value: an invalid code (nibabel drops it, ITK uses it), a negative
    pixdim (nibabel takes its absolute value, ITK flips the axis), a zero pixdim (both
    read 1 mm) where pixdim is the spacing in use (a qform, or no codes at all)."""
    unrepaired = header_class(raw[: header_class.template_dtype.itemsize], check=False)
    for name in ("qform_code", "sform_code"):
        if int(unrepaired[name]) not in XFORM_CODES:
            raise VolumeError(
                f"{path.name}: {name} {int(unrepaired[name])} is not a NIfTI transform code "
                "(0-5); readers disagree on such a header"
            )
    zooms = np.asarray(unrepaired["pixdim"][1:4], dtype=np.float64)
    qform_code, sform_code = int(unrepaired["qform_code"]), int(unrepaired["sform_code"])
    if np.any(zooms < 0) and qform_code > 0:
        raise VolumeError(
            f"{path.name}: negative voxel spacing in pixdim[1:4] = {numbers_text(zooms)}; "
            "readers disagree on it (nibabel takes its absolute value, ITK flips the axis)"
        )
    user = "the qform" if qform_code > 0 else "the header (no orientation codes)"
    if np.any(zooms == 0) and (qform_code > 0 or sform_code == 0):
        raise VolumeError(
            f"{path.name}: zero voxel spacing in pixdim[1:4] = {numbers_text(zooms)}, used by "
            f"{user}; readers would invent 1 mm"
        )


def header_geometry(path: Path, header, shape) -> str:
    """Check every transform the header declares (code > 0; pixdim alone when none is), and
    describe what was accepted, for the manifest: each one is carried onto the new grid."""
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code == 0 and qform_code == 0:
        zooms = np.asarray(header["pixdim"][1:4], dtype=np.float64)
        if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
            raise VolumeError(
                f"{path.name}: no orientation codes and pixdim[1:4] = {numbers_text(zooms)} "
                "is not a positive voxel spacing"
            )
        return "no orientation codes: pixdim only"
    shear, parts = 0.0, []
    if sform_code > 0:
        sform = header.get_sform(coded=False)
        shear = max(shear, transform_shear(path, sform, "sform"))
        parts.append(f"sform({sform_code})")
    if qform_code > 0:
        qform = _qform(path, header)
        shear = max(shear, transform_shear(path, qform, "qform"))
        parts.append(f"qform({qform_code})")
    if len(parts) == 1:
        text = f"{parts[0]} only"
    else:
        gap = _corner_distance(sform, qform, shape)
        text = (
            f"{parts[0]} = {parts[1]}"
            if gap <= SAME_TRANSFORM_MM
            else f"{parts[0]} + {parts[1]}, differ by up to {gap:.3g} mm; both carried"
        )
    if shear > SHEAR_NOISE:
        text += f"; shear {shear:.1e} accepted"
    return text


def checked_header(path: str | os.PathLike) -> nib.Nifti1Header:
    """A volume's header alone, parsed and checked as read_volume does (the same repairs,
    the same refusals): its best affine is bit for bit the one the volume's own job uses."""
    path = Path(path)
    try:
        header = read_header(path)
    except OSError as error:
        raise VolumeError(f"{path.name}: cannot be read ({error.strerror})") from None
    raw = header.binaryblock
    header = parse_header(path, raw)
    shape = tuple(int(n) for n in header.get_data_shape())
    check_dimensions(path, shape)
    check_unrepaired_fields(path, raw, type(header))
    header_geometry(path, header, shape)
    spacing_and_direction(path, header.get_best_affine())
    return header


def read_volume(path: str | os.PathLike) -> Volume:
    """Read and check a NIfTI volume; any problem raises a VolumeError naming the file."""
    path = Path(path)
    try:
        compressed = path.read_bytes()
    except OSError as error:
        raise VolumeError(f"{path.name}: cannot be read ({error.strerror})") from None
    raw = decompress(path, compressed)
    del compressed
    header = parse_header(path, raw)
    shape = tuple(int(n) for n in header.get_data_shape())
    check_dimensions(path, shape)
    dtype = header.get_data_dtype()
    check_pixel_type(path, dtype)
    offset = int(header.get_data_offset())
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) < offset + expected:
        raise VolumeError(
            f"{path.name}: the file is truncated (the header announces {expected} bytes "
            f"of voxels, only {max(len(raw) - offset, 0)} are present)"
        )
    data = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=offset)
    data = data.reshape(shape, order="F")
    # Every transform is checked before any work: a bad one must not fail after the resample.
    check_unrepaired_fields(path, raw, type(header))
    geometry = header_geometry(path, header, shape)
    affine = header.get_best_affine()
    spacing_and_direction(path, affine)
    return Volume(path=path, header=header, data=data, affine=affine, header_geometry=geometry)


def resampling_index_map(old_shape, new_shape, steps=None) -> np.ndarray:
    """4x4 map from new voxel indices to old continuous ones.

    Default (`steps` None), the field of view is kept: new voxel i covers the same span as
    old continuous index (i + 0.5) * f - 0.5 with f = old/new size per axis, so the outer
    edges of the first and last voxels do not move. With `steps` (old voxels per new voxel
    on each axis, for a target spacing: nii_resample.grids) the centre of the field of view
    stays put instead. The engines sample exactly these positions (engine.grid_origin).
    """
    from .engine import grid_origin

    if steps is None:
        steps = [None] * 3
    index_map = np.eye(4)
    for axis, step in enumerate(steps):
        origin, spacing = grid_origin(int(old_shape[axis]), int(new_shape[axis]), step)
        index_map[axis, axis], index_map[axis, 3] = spacing, origin
    return index_map


def resampled_affine(affine: np.ndarray, old_shape, new_shape, steps=None) -> np.ndarray:
    """Affine of the new grid (resampling_index_map: the field of view or its centre kept)."""
    index_map = resampling_index_map(old_shape, new_shape, steps)
    return np.asarray(affine, dtype=np.float64) @ index_map


def itk_geometry(affine: np.ndarray) -> dict[str, np.ndarray]:
    """Spacing, origin and direction as ITK/SimpleITK report them (LPS millimetres)."""
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    return {
        "spacing": spacing,
        "origin": ras_to_lps @ np.asarray(affine, dtype=np.float64)[:3, 3],
        "direction": ras_to_lps @ (linear / spacing),
    }


def _index_map(template: nib.Nifti1Header, affine: np.ndarray) -> np.ndarray:
    """The new-to-old voxel index map that turns the template's best affine into `affine`;
    it must be a per-axis scaling and shift (what resampling onto a new grid is)."""
    old = template.get_best_affine()
    index_map = np.linalg.solve(old, np.asarray(affine, dtype=np.float64))
    scale = np.abs(index_map[:3, :3]).max()
    off_diagonal = index_map[:3, :3] - np.diag(np.diag(index_map[:3, :3]))
    if np.abs(off_diagonal).max() > 1e-6 * scale or np.any(np.diag(index_map)[:3] <= 0):
        raise ValueError("the new grid is not a per-axis scaling of the template's grid")
    exact = np.eye(4)
    exact[:3, :3] = np.diag(np.diag(index_map)[:3])
    exact[:3, 3] = index_map[:3, 3]
    return exact


def _set_geometry(
    header: nib.Nifti1Header, template: nib.Nifti1Header, affine: np.ndarray
) -> None:
    """Carry the template's sform and qform onto the grid of `affine` (the new best affine),
    each by its own transform, codes kept: a registered sform and a scanner qform that
    differ both stay what they were, and the output's best affine is `affine`."""
    index_map = _index_map(template, affine)
    # The sform is stored as is: it may hold a shear accepted as numerical noise.
    sform_code = int(template["sform_code"])
    header.set_sform(template.get_sform(coded=False) @ index_map, code=sform_code)
    # The qform keeps its quaternion and qfac (pixdim[0]): a per-axis scaling only scales
    # pixdim and moves qoffset, so no shear can reach set_qform.
    factors = np.diag(index_map)[:3]
    header["pixdim"][1:4] = np.asarray(template["pixdim"][1:4], np.float64) * factors
    try:
        qform = template.get_qform(coded=False) @ index_map
    except Exception:  # an unused (code 0) qform nibabel cannot read: pixdim is all it needs
        return
    header["qoffset_x"], header["qoffset_y"], header["qoffset_z"] = qform[:3, 3]


def output_geometry(template: nib.Nifti1Header, shape, affine: np.ndarray) -> nib.Nifti1Header:
    """The header the template's volume gets on the grid of `affine` (a per-axis scaling of
    its own): what a case's other members copy to land on exactly the same grid."""
    header = template.copy()
    header.set_data_shape(tuple(int(n) for n in shape))
    _set_geometry(header, template, affine)
    return header


def copy_geometry(header: nib.Nifti1Header, geometry: nib.Nifti1Header) -> None:
    """Give `header` the grid of `geometry` field for field (sform, qform, qfac, spacing),
    its own codes kept: both then decode to the same affines, bit for bit."""
    for name in ("srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c", "quatern_d",
                 "qoffset_x", "qoffset_y", "qoffset_z"):
        header[name] = geometry[name]
    header["pixdim"][0:4] = geometry["pixdim"][0:4]
    # Units of the grid's millimetres (xyzt_units' spatial bits) go with the numbers.
    spatial = int(geometry["xyzt_units"]) & 0x07
    header["xyzt_units"] = (int(header["xyzt_units"]) & ~0x07) | spatial


def encode_header(
    template: nib.Nifti1Header, data: np.ndarray, affine: np.ndarray, geometry=None
):
    """The template's header with a new shape and grid, as bytes up to the voxel offset, and
    the voxel data as a byte view (no copy when the data are already F-ordered and typed).

    The data are written as stored values of the template's type; the template's
    scl_slope/scl_inter are kept, so scaled integers stay scaled integers.
    """
    header = template.copy()
    header.set_data_shape(data.shape)
    if geometry is None:
        _set_geometry(header, template, affine)
    else:  # a grid given whole (nii_resample.ongrid): its fields, not a scaling of ours
        copy_geometry(header, geometry)
    # Time step (TR) and the other non-spatial pixdims survive a 3-D reshape.
    header["pixdim"][4:] = template["pixdim"][4:]
    extensions_size = header.extensions.get_sizeondisk() if hasattr(header, "extensions") else 0
    offset = int(header.single_vox_offset) + int(extensions_size)
    header["vox_offset"] = offset
    stream = io.BytesIO()
    header.write_to(stream)
    stream.write(b"\x00" * (offset - stream.tell()))
    stored = np.asarray(data, dtype=header.get_data_dtype())
    # NIfTI voxels are in F order, which is the C order of the transposed array.
    voxels = memoryview(np.ascontiguousarray(stored.T)).cast("B")
    return stream.getvalue(), voxels


def _compressor(compression_level: int):
    """A gzip-format (wbits 31) stream compressor; ISA-L for levels 1-3, zlib above."""
    if compression_level <= ISAL_MAX_LEVEL:
        from isal import isal_zlib

        return isal_zlib.compressobj(compression_level, isal_zlib.DEFLATED, 31)
    import zlib

    return zlib.compressobj(compression_level, zlib.DEFLATED, 31)


def write_volume(
    path: str | os.PathLike,
    template: nib.Nifti1Header,
    data: np.ndarray,
    affine: np.ndarray,
    compression_level: int,
    before_replace=None,
    geometry=None,
) -> None:
    """Write a gzipped NIfTI atomically, compressing straight from the array (no copies);
    `before_replace` as in atomic_write; `geometry`: a header whose grid fields are copied
    (encode_header)."""
    header, voxels = encode_header(template, data, affine, geometry)

    def write(stream):
        compressor = _compressor(compression_level)
        stream.write(compressor.compress(header))
        stream.write(compressor.compress(voxels))
        stream.write(compressor.flush())

    atomic_write(path, write, before_replace)
