"""Canonical orientation (config key `orientation`): a volume's voxels reordered and flipped,
never interpolated, so that its axes run along one axis code (RAS, LPS, ...), with a header
that describes the same field of view. Done before the target grid is computed.

Imports nibabel and numpy only when a header is reoriented: the workflow checks the
configuration (parse_orientation) while Snakemake starts.
"""

from __future__ import annotations

from .errors import ConfigError

KEEP = "keep"
# Each axis of a code names one end of one of these pairs; nibabel's default labels.
AXIS_PAIRS = (("L", "R"), ("P", "A"), ("I", "S"))


def parse_orientation(value) -> str:
    """'keep' or an upper-case 3-letter axis code; ConfigError (nii_resample.errors) with one sentence otherwise."""
    text = value.strip() if isinstance(value, str) else None
    if text is not None and text.lower() == KEEP:
        return KEEP
    code = text.upper() if text is not None else ""
    pairs = sorted(
        next((i for i, pair in enumerate(AXIS_PAIRS) if letter in pair), -1) for letter in code
    )
    if len(code) != 3 or pairs != [0, 1, 2]:
        raise ConfigError(
            "orientation must be keep or three letters, one of each pair L/R, A/P and S/I "
            f"(e.g. RAS, LPS, LAS), got {value!r}"
        )
    return code


def _axis_codes(ornt) -> str:
    from nibabel.orientations import ornt2axcodes

    return "".join(ornt2axcodes(ornt, labels=AXIS_PAIRS))


def _has_orientation(header) -> bool:
    # Without codes nibabel's fallback affine is always LAS-like: no orientation is known,
    # and a reordered volume without codes would get that same fallback (wrong) again.
    return int(header["sform_code"]) > 0 or int(header["qform_code"]) > 0


def reorient_header(header, code: str):
    """Header-only: (new_header, transform, text). new_header: a copy of `header` (nibabel Nifti1/2 header) whose dim/pixdim, sform and qform describe the same field of view stored in orientation `code` ('keep': the header itself unchanged); transform: nibabel's ornt transform array (None when nothing changes); text for the manifest ('LSA -> RAS').

    A header without orientation codes is left as it is ('no orientation codes (kept)').
    """
    import numpy as np
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    code = parse_orientation(code)
    if not _has_orientation(header):
        return header, None, "no orientation codes (kept)"
    stored = io_orientation(header.get_best_affine())  # oblique: the closest axes
    stored_code = _axis_codes(stored)
    if code == KEEP:
        return header, None, f"{stored_code} (kept)"
    transform = ornt_transform(stored, axcodes2ornt(code, labels=AXIS_PAIRS))
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return header, None, f"{stored_code} (unchanged)"
    shape = tuple(int(n) for n in header.get_data_shape())
    # New voxel indices -> old ones: a signed permutation and whole-voxel shifts.
    index_map = inv_ornt_aff(transform, shape[:3])
    axes = [int(axis) for axis in transform[:, 0]]  # old axis i becomes new axis axes[i]
    new_shape = [0, 0, 0]
    zooms = np.asarray(header["pixdim"][1:4], np.float64)
    new_zooms = np.empty(3)
    for old, new in enumerate(axes):
        new_shape[new], new_zooms[new] = shape[old], zooms[old]
    new_header = header.copy()
    new_header.set_data_shape(tuple(new_shape) + shape[3:])
    # Each transform by its own map, codes kept: a registered sform stays registered.
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    new_header.set_sform(header.get_sform(coded=False) @ index_map, code=sform_code)
    try:
        qform = header.get_qform(coded=False)
    except Exception:  # an unused (code 0) qform nibabel cannot read: pixdim is all it needs
        qform = None
    if qform is not None:
        new_header.set_qform(qform @ index_map, code=qform_code)  # quaternion, qfac anew
    # set_qform recomputes pixdim from the matrix: keep the stored spacings, permuted.
    new_header["pixdim"][1:4] = new_zooms
    new_header.set_dim_info(
        *[None if axis is None else axes[axis] for axis in header.get_dim_info()]
    )
    return new_header, transform, f"{stored_code} -> {code}"


def reorient_volume(volume, code: str):
    """(Volume, text): nifti.Volume with data reordered (apply_orientation, then made F-contiguous), header from reorient_header, affine = new_header.get_best_affine() — bit for bit what reorient_header gives, because another job computes this volume's output grid from its header alone and both must agree exactly."""
    import dataclasses

    import numpy as np
    from nibabel.orientations import apply_orientation

    header, transform, text = reorient_header(volume.header, code)
    if transform is None:
        return volume, text
    # apply_orientation moves axes beyond the third along with the data: a series keeps
    # its 4th axis. One copy: the engines want F-ordered frames.
    data = np.asfortranarray(apply_orientation(volume.data, transform))
    return (
        dataclasses.replace(volume, header=header, data=data, affine=header.get_best_affine()),
        text,
    )
