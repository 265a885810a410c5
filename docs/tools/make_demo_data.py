#!/usr/bin/env python
"""Generate the small demo dataset in ``workflow/resources/demo``.

Four NIfTI-1 volumes with deliberately different shapes, spacings, dtypes and
orientations, so that a resampler to a uniform voxel grid gets exercised:

``ct_chest.nii.gz``
    Synthetic chest CT phantom, int16 Hounsfield units (no scaling), 5 mm
    slices, stored LPS (DICOM/ITK order) with a 3 degree in-plane rotation,
    scanner-like origin, ``qform_code = sform_code = 1``.
``ct_chest_seg.nii.gz``
    uint8 label map on exactly the CT grid: 0 background, 1 body, 2 right lung,
    3 left lung, 4 bone.
``mri_head.nii.gz``
    float32 T1-weighted MRI derived from the real MNI ICBM152 2009a template
    that ships inside the ``nilearn`` wheel (skull-stripped brain), resampled
    to an anisotropic grid stored in sagittal slices (axis codes ASL), with a
    synthetic smooth bias field and Rician noise.
``pet_brain.nii.gz``
    PET-like SUV volume simulated from the MNI ICBM152 2009a grey/white matter
    probability maps of the same wheel, stored radiologically (LAS) as int16
    with ``scl_slope``/``scl_inter`` (non-zero intercept: stored 0 is *not*
    SUV 0).

Everything random is drawn from ``numpy.random.default_rng`` with fixed seeds,
and the gzip streams are written with ``mtime=0``, so the output bytes are
reproducible for a given numpy/scipy/nibabel stack.  See
``workflow/resources/demo/SOURCE.md`` for licences and the property table.

Usage::

    python docs/tools/make_demo_data.py workflow/resources/demo
    python docs/tools/make_demo_data.py OUT --nilearn-data-dir /path/to/nilearn/datasets/data
    python docs/tools/make_demo_data.py OUT --synthetic-only   # CT + seg only, no real data

The real template files are taken from an installed ``nilearn`` if its copies
have the pinned checksums, otherwise from ``nilearn==0.14.1`` fetched with
``pip download`` (the ordinary PyPI client) into a temporary folder.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

# --------------------------------------------------------------------------
# Real data: MNI ICBM152 2009a (symmetric) templates bundled in nilearn
# --------------------------------------------------------------------------
NILEARN_VERSION = "0.14.1"
NILEARN_DATA_SUBDIR = "nilearn/datasets/data"
MNI_FILES = {
    "t1": (
        "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
    ),
    "gm": (
        "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
        "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed",
    ),
    "wm": (
        "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
        "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db",
    ),
}

SEED_CT = 20240611
SEED_MRI = 20240612
SEED_PET = 20240613

LABELS = {"background": 0, "body": 1, "lung_right": 2, "lung_left": 3, "bone": 4}

# ITK/DICOM (LPS) <-> NIfTI (RAS) world flip
LPS2RAS = np.diag([-1.0, -1.0, 1.0])


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _affine(direction_ras: np.ndarray, spacing, origin_ras) -> np.ndarray:
    """4x4 NIfTI affine from RAS direction cosines (columns), spacing, origin."""
    aff = np.eye(4)
    aff[:3, :3] = np.asarray(direction_ras, float) @ np.diag(np.asarray(spacing, float))
    aff[:3, 3] = origin_ras
    return aff


def _centred_origin(direction_ras, spacing, shape, centre_ras) -> np.ndarray:
    """Origin (centre of voxel 0,0,0) that puts the volume centre at centre_ras."""
    half = (np.asarray(shape, float) - 1.0) / 2.0 * np.asarray(spacing, float)
    return np.asarray(centre_ras, float) - np.asarray(direction_ras, float) @ half


def _rot_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _smooth_noise(rng, shape, sigma, dtype=np.float32) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    f /= f.std() + 1e-12
    return f.astype(dtype)


def _finish_header(img, *, descrip: str, qform_code: int, sform_code: int, slice_dim=2):
    hdr = img.header
    img.set_qform(img.affine, code=int(qform_code))
    img.set_sform(img.affine, code=int(sform_code))
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_dim_info(slice=slice_dim)
    hdr["descrip"] = descrip.encode("ascii")[:79]
    hdr["aux_file"] = b"make_demo_data.py"
    return img


def _write_nifti_gz(img, path: Path) -> None:
    """Write a .nii.gz with gzip level 9 and a zero timestamp (reproducible bytes)."""
    raw = img.to_bytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw, compresslevel=9, mtime=0))


# --------------------------------------------------------------------------
# Synthetic chest CT + label map
# --------------------------------------------------------------------------
CT_SHAPE = (160, 128, 48)
CT_SPACING = (2.1875, 2.1875, 5.0)  # 350 mm / 160 in-plane, 5 mm slices
CT_ROT_DEG = 3.0  # in-plane rotation of the image axes w.r.t. the patient (LPS)
CT_CENTRE_LPS = np.array([-4.3, 21.6, -187.5])  # volume centre, scanner mm (LPS)
CT_ANATOMY_CENTRE_LPS = CT_CENTRE_LPS + np.array([3.0, -6.0, -12.0])
CT_SUPERSAMPLE = (2, 2, 3)

# tissue classes used while building the phantom: (HU, label, texture amplitude)
_T_AIR, _T_FAT, _T_MUSCLE, _T_SOFT, _T_LIVER, _T_LUNG_R, _T_LUNG_L = range(7)
_T_HEART, _T_VESSEL, _T_AIRWAY, _T_DISC, _T_CSF, _T_CORTEX, _T_MARROW = range(7, 14)
_T_STOMACH, _T_SPLEEN, _T_LUNG_VESSEL_R, _T_LUNG_VESSEL_L = range(14, 18)
_TISSUES = {
    _T_AIR: (-1000.0, 0, 0.0),
    _T_FAT: (-95.0, 1, 6.0),
    _T_MUSCLE: (52.0, 1, 5.0),
    _T_SOFT: (36.0, 1, 5.0),
    _T_LIVER: (58.0, 1, 4.0),
    _T_LUNG_R: (-855.0, 2, 14.0),
    _T_LUNG_L: (-855.0, 3, 14.0),
    _T_HEART: (42.0, 1, 3.0),
    _T_VESSEL: (44.0, 1, 2.0),
    _T_AIRWAY: (-985.0, 1, 0.0),
    _T_DISC: (85.0, 1, 4.0),
    _T_CSF: (12.0, 1, 2.0),
    _T_CORTEX: (1150.0, 4, 40.0),
    _T_MARROW: (260.0, 4, 25.0),
    _T_STOMACH: (18.0, 1, 3.0),
    _T_SPLEEN: (48.0, 1, 3.0),
    _T_LUNG_VESSEL_R: (40.0, 2, 2.0),
    _T_LUNG_VESSEL_L: (40.0, 3, 2.0),
}
_HU_LUT = np.array([_TISSUES[i][0] for i in range(len(_TISSUES))], np.float32)
_LAB_LUT = np.array([_TISSUES[i][1] for i in range(len(_TISSUES))], np.uint8)
_TEX_LUT = np.array([_TISSUES[i][2] for i in range(len(_TISSUES))], np.float32)


def _superellipse(u, v, a, b_ant, b_post, p=2.2):
    """Normalised superellipse 'radius' (<1 inside); v>0 is posterior."""
    b = np.where(v < 0, b_ant, b_post)
    return (np.abs(u) / a) ** p + (np.abs(v) / b) ** p


def _body_dims(w):
    """Half-width, anterior and posterior half-depth (mm) of the trunk at height w."""
    taper = 1.0 - 0.10 * np.clip((w - 50.0) / 70.0, 0.0, None) ** 2
    return 158.0 * taper, 104.0 * taper, 98.0 * taper


def _vessel_tree(rng):
    """Pulmonary vessel segments: list of (p0, p1, radius) in anatomy mm."""
    segs = []
    hila = {-1.0: np.array([-40.0, 8.0, 2.0]), 1.0: np.array([42.0, 10.0, 6.0])}
    for sx, hilum in hila.items():
        trunks = [
            np.array([0.35 * sx, -0.35, 0.85]),  # upper lobe, anterior
            np.array([0.45 * sx, 0.45, 0.75]),  # upper lobe, posterior
            np.array([0.95 * sx, -0.10, 0.35]),  # upper lobe, lateral
            np.array([0.90 * sx, -0.45, -0.10]),  # middle lobe / lingula
            np.array([0.85 * sx, 0.30, -0.45]),  # lower lobe, lateral
            np.array([0.35 * sx, 0.60, -0.70]),  # lower lobe, posterior
        ]
        stack = [(hilum, d / np.linalg.norm(d), 32.0, 4.2, 0) for d in trunks]
        while stack:
            p0, d, length, radius, depth = stack.pop()
            p1 = p0 + d * length
            segs.append((p0, p1, radius))
            if depth >= 6:
                continue
            for _ in range(2):
                nd = d + rng.normal(0.0, 0.5, 3)
                nd /= np.linalg.norm(nd)
                stack.append((p1, nd, length * 0.84, radius * 0.72, depth + 1))
    return segs


_VESSEL_GRID_ORIGIN = np.array([-170.0, -120.0, -150.0])  # anatomy mm of voxel 0
_VESSEL_GRID_SHAPE = (341, 241, 301)  # 1 mm raster


def _vessel_raster(segs) -> np.ndarray:
    """Rasterise the vessel segments onto a 1 mm boolean grid (anatomy frame)."""
    grid = np.zeros(_VESSEL_GRID_SHAPE, bool)
    shape = np.array(_VESSEL_GRID_SHAPE)
    for p0, p1, r in segs:
        lo = np.maximum(np.floor(np.minimum(p0, p1) - r - _VESSEL_GRID_ORIGIN).astype(int), 0)
        hi = np.minimum(
            np.ceil(np.maximum(p0, p1) + r - _VESSEL_GRID_ORIGIN).astype(int) + 1, shape
        )
        if np.any(hi <= lo):
            continue
        ax = [np.arange(lo[i], hi[i]) + _VESSEL_GRID_ORIGIN[i] for i in range(3)]
        P = np.stack(np.meshgrid(*ax, indexing="ij"), axis=-1).reshape(-1, 3)
        hit = (_seg_distance(P, p0, p1) <= r).reshape(tuple(hi - lo))
        grid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] |= hit
    return grid


def _vessel_lookup(raster, u, v, w):
    idx = [np.rint(c - o).astype(np.int64) for c, o in zip((u, v, w), _VESSEL_GRID_ORIGIN)]
    ok = np.ones(u.shape, bool)
    for i, n in zip(idx, _VESSEL_GRID_SHAPE):
        ok &= (i >= 0) & (i < n)
    out = np.zeros(u.shape, bool)
    out[ok] = raster[idx[0][ok], idx[1][ok], idx[2][ok]]
    return out


def _seg_distance(pts, p0, p1):
    d = p1 - p0
    t = np.clip(((pts - p0) @ d) / (d @ d), 0.0, 1.0)
    return np.linalg.norm(pts - (p0 + t[:, None] * d), axis=1)


def _ct_classes(u, v, w, vessels):
    """Tissue class for points in anatomy coordinates (mm; u->L, v->P, w->S)."""
    cls = np.full(u.shape, _T_AIR, np.uint8)
    a, b_ant, b_post = _body_dims(w)

    e_body = _superellipse(u, v, a, b_ant, b_post)
    body = e_body <= 1.0
    cls[body] = _T_FAT
    muscle = _superellipse(u, v, a - 14, b_ant - 12, b_post - 16) <= 1.0
    cls[muscle] = _T_MUSCLE
    cavity = _superellipse(u, v, a - 40, b_ant - 33, b_post - 38, p=2.0) <= 1.0
    cls[cavity] = _T_SOFT

    # diaphragm domes (right higher because of the liver)
    dome_r = -72.0 + 46.0 * np.exp(-(((u + 70) / 60) ** 2 + ((v + 5) / 75) ** 2))
    dome_l = -80.0 + 44.0 * np.exp(-(((u - 70) / 60) ** 2 + ((v + 5) / 75) ** 2))
    dome = np.where(u < 0, dome_r, dome_l)

    # abdomen below the diaphragm
    below = cavity & (w < dome)
    cls[below & (u < 35)] = _T_LIVER
    spleen = below & (((u - 95) / 30) ** 2 + ((v - 40) / 40) ** 2 + ((w + 95) / 45) ** 2 <= 1)
    cls[spleen] = _T_SPLEEN
    stomach = below & (((u - 55) / 42) ** 2 + ((v + 25) / 36) ** 2 + ((w + 105) / 40) ** 2 <= 1)
    cls[stomach] = _T_STOMACH
    cls[stomach & (w > -95) & (v < -20)] = _T_AIRWAY  # gastric air bubble (body label)

    # lungs
    scale = np.sqrt(np.clip(1.0 - (np.clip(w - 35.0, 0, None) / 75.0) ** 2, 0.0, None))
    for side, cu, cls_lung in ((-1, -80.0, _T_LUNG_R), (1, 82.0, _T_LUNG_L)):
        sa, sb = 60.0 * scale + 1e-6, 84.0 * scale + 1e-6
        inside = ((u - cu) / sa) ** 2 + ((v - 6.0) / sb) ** 2 <= 1.0
        lung = inside & cavity & (w > dome) & (side * u > 22.0)
        cls[lung] = cls_lung

    # heart (rotated ellipsoid, sits on the diaphragm) and great vessels
    cu_, cv_ = u - 24.0, v + 28.0
    ca, sa_ = np.cos(np.deg2rad(35)), np.sin(np.deg2rad(35))
    hu_, hv_ = ca * cu_ + sa_ * cv_, -sa_ * cu_ + ca * cv_
    above_dia = w > dome - 3.0
    heart_fat = (hu_ / 70) ** 2 + (hv_ / 52) ** 2 + ((w + 12) / 50) ** 2 <= 1.0
    heart = (hu_ / 64) ** 2 + (hv_ / 46) ** 2 + ((w + 12) / 45) ** 2 <= 1.0
    cls[heart_fat & cavity & above_dia] = _T_FAT
    cls[heart & cavity & above_dia] = _T_HEART
    desc_aorta = ((u - 22) ** 2 + (v - 40) ** 2 <= 12.0**2) & (w < 68) & cavity
    asc_aorta = ((u - 6) ** 2 + (v + 22) ** 2 <= 15.0**2) & (w > -10) & (w < 68)
    arch = (np.abs(w - 66) <= 11) & (_seg_distance_2d(u, v, (6, -22), (22, 40)) <= 12.0)
    cls[desc_aorta | asc_aorta | arch] = _T_VESSEL

    # airways: trachea and main bronchi
    trachea = ((u**2 + (v - 16) ** 2) <= 9.0**2) & (w >= 14)
    cls[trachea] = _T_AIRWAY
    for tip in ((-42.0, 12.0, -2.0), (44.0, 14.0, 2.0)):
        pts = np.stack([u.ravel(), v.ravel(), w.ravel()], axis=1)
        dist = _seg_distance(pts, np.array([0.0, 16.0, 16.0]), np.array(tip)).reshape(u.shape)
        cls[(dist <= 6.0) & cavity] = _T_AIRWAY

    # pulmonary vessels (only inside the lungs)
    vessel = _vessel_lookup(vessels, u, v, w)
    cls[vessel & (cls == _T_LUNG_R)] = _T_LUNG_VESSEL_R
    cls[vessel & (cls == _T_LUNG_L)] = _T_LUNG_VESSEL_L

    # spine: vertebral bodies with discs, canal, posterior elements
    vs = b_post - 36.0  # vertebral body centre (posterior)
    vb = ((u / 19.0) ** 2 + ((v - vs) / 15.0) ** 2) <= 1.0
    vb_in = ((u / 16.5) ** 2 + ((v - vs) / 12.5) ** 2) <= 1.0
    level = np.mod(w + 300.0, 26.0)
    disc = level < 6.0
    cls[vb & ~disc] = _T_CORTEX
    cls[vb_in & ~disc] = _T_MARROW
    cls[vb & disc] = _T_DISC
    canal_c = vs + 26.0
    r_canal = np.hypot(u, v - canal_c)
    arch_bone = (r_canal > 8.0) & (r_canal <= 14.0) & (v > canal_c - 5.0) & ~disc
    spinous = (np.abs(u) <= 4.5) & (v > canal_c + 12.0) & (v < canal_c + 34.0) & (level > 8.0)
    cls[arch_bone | spinous] = _T_CORTEX
    cls[(r_canal <= 8.0)] = _T_CSF

    # ribs: tubes along an inset of the body outline, sloping down anteriorly
    r_pt = np.hypot(u, v) + 1e-6
    e_rib = _superellipse(u, v, a - 33, b_ant - 24, b_post - 30)
    q = e_rib ** (1.0 / 2.2)
    dr = (q - 1.0) * r_pt / np.maximum(q, 1e-6)  # ~radial distance to the rib path (mm)
    cosphi = v / r_pt  # 1 = posterior, -1 = anterior
    phi = np.arccos(np.clip(cosphi, -1, 1))
    t = w + 27.0 * (1.0 - cosphi)
    k = np.clip(np.round((100.0 - t) / 22.0), 0, 10)
    dz = t - (100.0 - 22.0 * k)
    has_rib = (phi > 0.30) & (phi < np.pi - 0.42) & (t < 107.0)
    rib = has_rib & ((dr / 4.6) ** 2 + (dz / 6.5) ** 2 <= 1.0)
    rib_in = has_rib & ((dr / 2.6) ** 2 + (dz / 4.5) ** 2 <= 1.0)
    cls[rib] = _T_CORTEX
    cls[rib_in] = _T_MARROW

    # sternum
    sv = -(b_ant - 20.0)
    sternum = (np.abs(u) <= 15.0) & (np.abs(v - sv) <= 6.0) & (w > -75) & (w < 75)
    sternum_in = (np.abs(u) <= 12.5) & (np.abs(v - sv) <= 3.5) & (w > -73) & (w < 73)
    cls[sternum] = _T_CORTEX
    cls[sternum_in] = _T_MARROW

    cls[~body] = _T_AIR
    return cls


def _seg_distance_2d(u, v, p0, p1):
    p0 = np.asarray(p0, float)
    d = np.asarray(p1, float) - p0
    t = np.clip(((u - p0[0]) * d[0] + (v - p0[1]) * d[1]) / (d @ d), 0.0, 1.0)
    return np.hypot(u - (p0[0] + t * d[0]), v - (p0[1] + t * d[1]))


def ct_geometry():
    """(affine_ras, direction_lps, origin_lps) of the synthetic CT grid."""
    direction_lps = _rot_z(CT_ROT_DEG)  # columns: image axes in LPS (ITK direction)
    origin_lps = _centred_origin(direction_lps, CT_SPACING, CT_SHAPE, CT_CENTRE_LPS)
    origin_lps = np.round(origin_lps, 4)
    aff = _affine(LPS2RAS @ direction_lps, CT_SPACING, LPS2RAS @ origin_lps)
    return aff, direction_lps, origin_lps


def make_ct(seed: int = SEED_CT):
    """Return (hu_int16, labels_uint8, affine) for the synthetic chest CT."""
    rng = np.random.default_rng(seed)
    vessels = _vessel_raster(_vessel_tree(rng))
    _, direction_lps, origin_lps = ct_geometry()
    nx, ny, nz = CT_SHAPE
    fx, fy, fz = CT_SUPERSAMPLE
    sub = lambda f: (np.arange(f) + 0.5) / f - 0.5  # noqa: E731
    ii = (np.arange(nx)[:, None] + sub(fx)[None, :]).ravel()
    jj = (np.arange(ny)[:, None] + sub(fy)[None, :]).ravel()
    I, J = np.meshgrid(ii, jj, indexing="ij")
    m = direction_lps @ np.diag(CT_SPACING)

    hu = np.empty(CT_SHAPE, np.float32)
    tex_amp = np.empty(CT_SHAPE, np.float32)
    seg = np.empty(CT_SHAPE, np.uint8)
    n_lab = int(_LAB_LUT.max()) + 1
    for kz in range(nz):
        acc_hu = np.zeros((nx, ny), np.float64)
        acc_tex = np.zeros((nx, ny), np.float64)
        counts = np.zeros((n_lab, nx, ny), np.int32)
        for dzs in sub(fz):
            K = np.full_like(I, kz + dzs)
            ijk = np.stack([I, J, K], axis=-1)
            world = ijk @ m.T + origin_lps
            uvw = world - CT_ANATOMY_CENTRE_LPS
            cls = _ct_classes(uvw[..., 0], uvw[..., 1], uvw[..., 2], vessels)
            # block sums over the in-plane supersamples
            blk = lambda x: x.reshape(nx, fx, ny, fy).sum(axis=(1, 3))  # noqa: E731
            acc_hu += blk(_HU_LUT[cls].astype(np.float64))
            acc_tex += blk(_TEX_LUT[cls].astype(np.float64))
            lab = _LAB_LUT[cls]
            for L in range(n_lab):
                counts[L] += blk((lab == L).astype(np.int32))
        n = fx * fy * fz
        hu[:, :, kz] = acc_hu / n
        tex_amp[:, :, kz] = acc_tex / n
        seg[:, :, kz] = np.argmax(counts, axis=0).astype(np.uint8)

    # smooth tissue texture (structure that survives resampling), dependent lung density
    tex = _smooth_noise(rng, CT_SHAPE, sigma=(2.5, 2.5, 1.0))
    hu += tex * tex_amp
    lung = (seg == LABELS["lung_right"]) | (seg == LABELS["lung_left"])
    y_idx = np.arange(ny, dtype=np.float32)[None, :, None]
    hu += np.where(lung, 45.0 * (y_idx / ny - 0.5), 0.0).astype(np.float32)
    # scanner PSF (in-plane) and correlated quantum noise
    hu = ndimage.gaussian_filter(hu, sigma=(0.55, 0.55, 0.0))
    noise = _smooth_noise(rng, CT_SHAPE, sigma=(0.6, 0.6, 0.0))
    body = seg > 0
    hu += noise * np.where(body, 9.0, 3.0).astype(np.float32)
    hu_i16 = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return hu_i16, seg, ct_geometry()[0]


# --------------------------------------------------------------------------
# Real-data derived MRI and PET (MNI ICBM152 2009a from the nilearn wheel)
# --------------------------------------------------------------------------
MRI_SHAPE = (112, 96, 80)
MRI_SPACING = (1.8, 1.8, 2.0)
MRI_DIRECTION_RAS = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # A, S, L
MRI_CENTRE_RAS = (0.0, -17.0, 5.0)

PET_SHAPE = (64, 64, 47)
PET_SPACING = (4.0, 4.0, 3.375)
PET_DIRECTION_RAS = np.diag([-1.0, 1.0, 1.0])  # L, A, S (radiological)
PET_CENTRE_RAS = (1.0, -18.0, 5.0)
PET_SLOPE = 0.0002  # SUV per stored unit
PET_INTER = 6.4  # SUV at stored value 0 (stored -32000 == SUV 0)


def find_mni_files(nilearn_data_dir: str | Path | None = None, download_dir=None) -> dict:
    """Locate the three MNI template files, verifying their SHA-256.

    Order: an explicit ``nilearn_data_dir``; an importable nilearn whose copies
    match the pinned checksums; otherwise ``pip download nilearn==0.14.1`` into
    ``download_dir`` (a new temporary folder when None; the caller cleans it up).
    """
    candidates = []
    if nilearn_data_dir is not None:
        candidates.append(Path(nilearn_data_dir))
    spec = importlib.util.find_spec("nilearn")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data")
    for cand in candidates:
        paths = {k: cand / name for k, (name, _) in MNI_FILES.items()}
        if all(p.is_file() and _sha256(p) == MNI_FILES[k][1] for k, p in paths.items()):
            return paths
    if nilearn_data_dir is not None:
        raise FileNotFoundError(
            f"{nilearn_data_dir} does not hold the pinned MNI files of nilearn {NILEARN_VERSION}"
        )
    tmp = Path(download_dir) if download_dir else Path(tempfile.mkdtemp(prefix="nilearn_whl_"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(tmp),
            f"nilearn=={NILEARN_VERSION}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wheel = next(tmp.glob("nilearn-*.whl"))
    paths = {}
    with zipfile.ZipFile(wheel) as zf:
        for key, (name, digest) in MNI_FILES.items():
            out = tmp / name
            out.write_bytes(zf.read(f"{NILEARN_DATA_SUBDIR}/{name}"))
            if _sha256(out) != digest:
                raise RuntimeError(f"checksum mismatch for {name} in {wheel.name}")
            paths[key] = out
    return paths


def _load_mni(paths: dict):
    imgs = {k: nib.load(str(p)) for k, p in paths.items()}
    aff = imgs["t1"].affine
    data = {k: np.asanyarray(im.dataobj).astype(np.float32) for k, im in imgs.items()}  # in memory
    return data, aff


def _resample_from(src, src_aff, dst_shape, dst_aff, *, order, prefilter_sigma_vox=None):
    """Sample ``src`` (on src_aff) at the voxel centres of a target grid."""
    if prefilter_sigma_vox is not None:
        src = ndimage.gaussian_filter(src, prefilter_sigma_vox)
    vox2vox = np.linalg.inv(src_aff) @ dst_aff
    return ndimage.affine_transform(
        src,
        vox2vox[:3, :3],
        offset=vox2vox[:3, 3],
        output_shape=dst_shape,
        order=order,
        mode="constant",
        cval=0.0,
    ).astype(np.float32)


def _aa_sigma(dst_dir_ras, dst_spacing, src_spacing=1.0):
    """Anti-alias Gaussian sigma (source voxels, along source x,y,z)."""
    sp_world = np.abs(np.asarray(dst_dir_ras)) @ np.asarray(dst_spacing, float)
    return np.sqrt(np.clip(sp_world**2 - src_spacing**2, 0, None)) / 2.355 / src_spacing


def make_mri(mni: dict, mni_aff: np.ndarray, seed: int = SEED_MRI):
    """Return (float32 data, affine) of the MRI-like head volume."""
    rng = np.random.default_rng(seed)
    origin = _centred_origin(MRI_DIRECTION_RAS, MRI_SPACING, MRI_SHAPE, MRI_CENTRE_RAS)
    aff = _affine(MRI_DIRECTION_RAS, MRI_SPACING, origin)
    t1 = _resample_from(
        mni["t1"],
        mni_aff,
        MRI_SHAPE,
        aff,
        order=3,
        prefilter_sigma_vox=_aa_sigma(MRI_DIRECTION_RAS, MRI_SPACING),
    )
    t1 = np.clip(t1, 0, None) * 3.6  # white matter ~ 850 a.u.
    # smooth multiplicative bias field (receive-coil like), +-~12 %
    g = [np.linspace(-1, 1, n, dtype=np.float32) for n in MRI_SHAPE]
    X, Y, Z = np.meshgrid(*g, indexing="ij")
    c = rng.normal(0, 1, 6)
    bias = np.exp(
        0.06 * (c[0] * X + c[1] * Y + c[2] * Z + c[3] * X * Y + c[4] * Y * Z + c[5] * Z**2)
    )
    signal = t1 * bias.astype(np.float32)
    sigma = 8.0  # Rician noise (magnitude image)
    n1 = rng.standard_normal(MRI_SHAPE).astype(np.float32) * sigma
    n2 = rng.standard_normal(MRI_SHAPE).astype(np.float32) * sigma
    mag = np.sqrt((signal + n1) ** 2 + n2**2)
    return np.rint(mag).astype(np.float32), aff  # integer-valued float32, like scanner magnitude


def make_pet(mni: dict, mni_aff: np.ndarray, seed: int = SEED_PET):
    """Return (int16 stored data, slope, inter, affine) of the PET-like SUV volume."""
    rng = np.random.default_rng(seed)
    gm, wm = mni["gm"] / 255.0, mni["wm"] / 255.0
    brain = mni["t1"] > 0
    csf = np.clip(brain.astype(np.float32) - gm - wm, 0, 1)
    # thin extracerebral shell (scalp / muscle, low uptake) around the brain mask
    dist = ndimage.distance_transform_edt(~brain)
    shell = ((dist > 4) & (dist <= 13)).astype(np.float32)
    suv = 7.6 * gm + 2.6 * wm + 0.35 * csf + 0.9 * shell
    # PET point spread function, FWHM 6.5 mm, on the 1 mm grid
    suv = ndimage.gaussian_filter(suv.astype(np.float32), 6.5 / 2.355)
    origin = _centred_origin(PET_DIRECTION_RAS, PET_SPACING, PET_SHAPE, PET_CENTRE_RAS)
    aff = _affine(PET_DIRECTION_RAS, PET_SPACING, origin)
    pet = _resample_from(
        suv,
        mni_aff,
        PET_SHAPE,
        aff,
        order=1,
        prefilter_sigma_vox=_aa_sigma(PET_DIRECTION_RAS, PET_SPACING),
    )
    noise = _smooth_noise(rng, PET_SHAPE, sigma=0.9)
    pet = np.clip(pet + noise * 0.10 * np.sqrt(np.clip(pet, 0, None) + 0.02), 0, None)
    stored = np.rint((pet - PET_INTER) / PET_SLOPE)
    stored = np.clip(stored, -32768, 32767).astype(np.int16)
    return stored, PET_SLOPE, PET_INTER, aff


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------
def make_demo_data(out_dir, *, nilearn_data_dir=None, synthetic_only: bool = False) -> list[Path]:
    """Write the demo volumes into ``out_dir`` and return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    hu, seg, ct_aff = make_ct()
    ct = nib.Nifti1Image(hu, ct_aff)
    ct.header.set_data_dtype(np.int16)
    ct.header.set_slope_inter(1.0, 0.0)
    ct.header["cal_min"], ct.header["cal_max"] = -1024.0, 3071.0
    _finish_header(
        ct,
        descrip="Synthetic chest CT phantom, HU, demo (make_demo_data.py)",
        qform_code=1,
        sform_code=1,
    )
    _write_nifti_gz(ct, out / "ct_chest.nii.gz")
    written.append(out / "ct_chest.nii.gz")

    lab = nib.Nifti1Image(seg, ct_aff)
    lab.header.set_data_dtype(np.uint8)
    lab.header.set_slope_inter(1.0, 0.0)
    lab.header.set_intent("label", name="ct_chest_labels")
    lab.header["cal_min"], lab.header["cal_max"] = 0.0, 4.0
    _finish_header(
        lab,
        descrip="Labels for ct_chest: 0 bg 1 body 2 R lung 3 L lung 4 bone",
        qform_code=1,
        sform_code=1,
    )
    _write_nifti_gz(lab, out / "ct_chest_seg.nii.gz")
    written.append(out / "ct_chest_seg.nii.gz")

    if synthetic_only:
        return written

    with tempfile.TemporaryDirectory(prefix="nilearn_whl_") as tmp:
        mni, mni_aff = _load_mni(find_mni_files(nilearn_data_dir, download_dir=tmp))

    mri, mri_aff = make_mri(mni, mni_aff)
    img = nib.Nifti1Image(mri, mri_aff)
    img.header.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)
    _finish_header(
        img,
        descrip="T1w from MNI ICBM152 2009a sym (nilearn 0.14.1)+bias+noise",
        qform_code=4,
        sform_code=4,
    )
    _write_nifti_gz(img, out / "mri_head.nii.gz")
    written.append(out / "mri_head.nii.gz")

    stored, slope, inter, pet_aff = make_pet(mni, mni_aff)
    img = nib.Nifti1Image(stored, pet_aff)
    img.header.set_data_dtype(np.int16)
    img.header.set_slope_inter(slope, inter)
    _finish_header(
        img,
        descrip="Simulated FDG PET, SUVbw = stored*scl_slope+scl_inter",
        qform_code=2,
        sform_code=2,
    )
    _write_nifti_gz(img, out / "pet_brain.nii.gz")
    written.append(out / "pet_brain.nii.gz")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", help="output folder (created if missing)")
    ap.add_argument(
        "--nilearn-data-dir",
        default=None,
        help="folder holding nilearn's bundled MNI152 files (nilearn/datasets/data)",
    )
    ap.add_argument(
        "--synthetic-only",
        action="store_true",
        help="write only the synthetic CT and its label map (no real data needed)",
    )
    args = ap.parse_args(argv)
    for p in make_demo_data(
        args.out_dir, nilearn_data_dir=args.nilearn_data_dir, synthetic_only=args.synthetic_only
    ):
        print(f"{p}  {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
