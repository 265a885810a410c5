"""Read, check and atomically write NIfTI volumes.

nibabel parses and writes the header (so sform/qform codes, units, intent, description and
integer scaling survive); ISA-L (`isal`) does the gzip work, several times faster than zlib.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from .errors import VolumeError
from .processes import pid_is_gone, this_process

GZIP_MAGIC = b"\x1f\x8b"
# Largest NIfTI header (NIfTI-2); enough bytes to parse any header.
MAX_HEADER_BYTES = 540
# Tolerance on D^T D = I for the direction cosines (ITK is as strict for its own images).
ORTHONORMAL_TOLERANCE = 1e-4
# ISA-L only has levels 0-3; above that zlib is used (smaller files, much slower).
ISAL_MAX_LEVEL = 3
# Read once: os.umask can only be read by setting it.
CURRENT_UMASK = os.umask(0o022)
os.umask(CURRENT_UMASK)
# A resampled volume's data type is the input's; these are the kinds that can be interpolated.
SUPPORTED_KINDS = "iuf"


@dataclass
class Volume:
    """A NIfTI volume as stored on disk: header, raw (unscaled) voxels, voxel-to-RAS affine."""

    path: Path
    header: nib.Nifti1Header
    data: np.ndarray  # raw stored values, F-ordered, axes (x, y, z[, t, ...])
    affine: np.ndarray  # 4x4, voxel index -> RAS+ millimetres (nibabel's best affine)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape[:3])

    @property
    def intensity_scaling(self) -> tuple[float, float]:
        """(slope, intercept) that turn stored values into physical ones."""
        slope, inter = self.header.get_slope_inter()
        return (1.0 if slope is None else float(slope), 0.0 if inter is None else float(inter))


def _decompress(path: Path, raw: bytes) -> bytes:
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


def _shape_text(shape) -> str:
    return "x".join(str(int(n)) for n in shape)


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
            f"{path.name}: {len(shape)}-D image ({_shape_text(shape)}); "
            "only 3-D volumes and 4-D series can be resampled"
        )
    if any(n != 1 for n in shape[4:]):
        raise VolumeError(
            f"{path.name}: {len(shape)}-D image ({_shape_text(shape)}); "
            "only 3-D volumes and 4-D series can be resampled"
        )
    if min(shape) < 1:
        raise VolumeError(f"{path.name}: empty image ({_shape_text(shape)})")


def spacing_and_direction(path: Path, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel spacing (mm) and orthonormal direction matrix of an affine, or a VolumeError."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if not np.all(np.isfinite(linear)) or np.any(spacing <= 0):
        raise VolumeError(f"{path.name}: the voxel spacing is zero or not a finite number")
    direction = linear / spacing
    deviation = float(np.max(np.abs(direction.T @ direction - np.eye(3))))
    if deviation > ORTHONORMAL_TOLERANCE:
        raise VolumeError(
            f"{path.name}: the voxel axes are not orthonormal (sheared affine, "
            f"max |D^T D - I| = {deviation:.3g}); only rectilinear grids can be resampled"
        )
    return spacing, direction


def read_volume(path: str | os.PathLike) -> Volume:
    """Read and check a NIfTI volume; any problem raises a VolumeError naming the file."""
    path = Path(path)
    try:
        compressed = path.read_bytes()
    except OSError as error:
        raise VolumeError(f"{path.name}: cannot be read ({error.strerror})") from None
    raw = _decompress(path, compressed)
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
    affine = header.get_best_affine()
    spacing_and_direction(path, affine)
    return Volume(path=path, header=header, data=data, affine=affine)


def resampled_affine(affine: np.ndarray, old_shape, new_shape) -> np.ndarray:
    """Affine of the new grid with the same physical field of view.

    New voxel i covers the same span as old continuous index (i + 0.5) * f - 0.5 with
    f = old/new size per axis: the outer edges of the first and last voxels do not move.
    """
    factors = np.asarray(old_shape[:3], float) / np.asarray(new_shape[:3], float)
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(factors)
    index_map[:3, 3] = (factors - 1.0) / 2.0
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


def _set_geometry(header: nib.Nifti1Header, affine: np.ndarray) -> None:
    """Store the affine in both sform and qform, keeping the codes the input had."""
    sform_code = int(header["sform_code"])
    qform_code = int(header["qform_code"])
    if sform_code == 0 and qform_code == 0:
        # A header without orientation: readers fall back to pixdim alone.
        header.set_zooms(
            tuple(np.linalg.norm(affine[:3, :3], axis=0)) + tuple(header.get_zooms()[3:])
        )
        return
    header.set_qform(affine, code=qform_code, strip_shears=False)
    header.set_sform(affine, code=sform_code)


def encode_header(template: nib.Nifti1Header, data: np.ndarray, affine: np.ndarray):
    """The template's header with a new shape and grid, as bytes up to the voxel offset, and
    the voxel data as a byte view (no copy when the data are already F-ordered and typed).

    The data are written as stored values of the template's type; the template's
    scl_slope/scl_inter are kept, so scaled integers stay scaled integers.
    """
    header = template.copy()
    header.set_data_shape(data.shape)
    _set_geometry(header, affine)
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


def _partial_prefix(path: Path) -> str:
    """Temporary name of `path` for this process: `.<name>.<host>.<pid>-<start>.`, so that
    a later writer can tell whether the process that made a leftover is gone."""
    me = this_process()
    return f".{path.name}.{me['host']}.{me['pid']}-{me['start']}."


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a crash after it must not bring the old file back)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write(path: str | os.PathLike, write, before_replace=None) -> None:
    """Call `write(stream)` on a temporary file in the target folder, flush it to disk, then
    rename it into place: a reader never sees a partial file, a killed writer leaves none
    under the final name, and a crash never leaves an empty file under it.
    `before_replace()`, if given, runs once the file is complete, just before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=_partial_prefix(path), suffix=".partial", dir=path.parent
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~CURRENT_UMASK)
        if before_replace is not None:
            before_replace()
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    atomic_write(path, lambda stream: stream.write(payload))


def _creator_is_gone(path: Path, leftover: Path) -> bool:
    """Whether the temporary file `leftover` of `path` was made by a process of this host
    that has ended (names without a creator, from another host or version, are kept)."""
    middle = leftover.name[len(f".{path.name}.") : -len(".partial")]
    parts = middle.rsplit(".", 2)
    if len(parts) != 3 or parts[0] != this_process()["host"]:
        return False
    pid, _, start = parts[1].partition("-")
    return pid.isdigit() and pid_is_gone(int(pid), start)


def remove_stale_partials(path: str | os.PathLike) -> None:
    """Delete temporary files that earlier writers of `path`, now gone, left behind (killed);
    a live writer's file (a concurrent run) is left alone."""
    path = Path(path)
    if path.parent.is_dir():
        for leftover in path.parent.glob(f".{glob_escape(path.name)}.*.partial"):
            if _creator_is_gone(path, leftover):
                leftover.unlink(missing_ok=True)


def write_volume(
    path: str | os.PathLike,
    template: nib.Nifti1Header,
    data: np.ndarray,
    affine: np.ndarray,
    compression_level: int,
    before_replace=None,
) -> None:
    """Write a gzipped NIfTI atomically, compressing straight from the array (no copies);
    `before_replace` as in atomic_write."""
    header, voxels = encode_header(template, data, affine)

    def write(stream):
        compressor = _compressor(compression_level)
        stream.write(compressor.compress(header))
        stream.write(compressor.compress(voxels))
        stream.write(compressor.flush())

    atomic_write(path, write, before_replace)
