"""What a user checks with nibabel survives resampling (apart from the grid itself): the
header fields, and the qform and the sform, each carried onto the new grid by its own
transform; header problems are refused before any work."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from support import REPO, affine_from, fov_corners, rotation, run_snakemake, smooth_volume
from nii_resample import volume as volume_module
from nii_resample.errors import VolumeError
from nii_resample.volume import resample_volume


def write_rich_header(path, data, affine, *, scaled=False):
    image = nib.Nifti1Image(data, affine)
    header = image.header
    header.set_sform(affine, code=4)  # MNI
    header.set_qform(affine, code=2)  # aligned
    header.set_xyzt_units("mm", "msec")
    header.set_intent("estimate", (), name="T1w")
    header["descrip"] = b"scanner X, protocol Y"
    header["pixdim"][4] = 2500.0
    header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"kept as is"))
    if scaled:
        header.set_data_dtype(np.int16)  # float data stored as scaled int16
    nib.save(image, path)
    return nib.load(path)


@pytest.mark.parametrize("engine", ["fast", "itk"])
def test_header_fields_survive(tmp_path, engine):
    affine = affine_from((0.8, 0.9, 3.0), (1.0, 2.0, 3.0), rotation(10, 2))
    source = write_rich_header(tmp_path / "in.nii.gz", smooth_volume((20, 20, 10), np.float32),
                               affine)
    resample_volume(source.get_filename(), tmp_path / "out.nii.gz", (10, 12, 14), engine=engine)
    before, after = source.header, nib.load(tmp_path / "out.nii.gz").header
    for field in ("sform_code", "qform_code", "xyzt_units", "intent_code", "intent_name",
                  "descrip", "datatype", "bitpix"):
        assert after[field] == before[field], field
    assert after["pixdim"][4] == 2500.0
    assert [bytes(e.get_content()) for e in after.extensions] == [b"kept as is"]
    np.testing.assert_allclose(nib.load(tmp_path / "out.nii.gz").get_qform(),
                               nib.load(tmp_path / "out.nii.gz").get_sform(), atol=1e-4)


def test_scaled_integers_stay_scaled_integers(tmp_path):
    """SimpleITK alone would write this as float32 (twice the size) with sform_code 1."""
    affine = affine_from((1.0, 1.0, 2.0))
    values = smooth_volume((24, 24, 12), np.float32, low=0.0, high=6.5)  # e.g. SUV
    source = write_rich_header(tmp_path / "in.nii.gz", values, affine, scaled=True)
    slope, inter = source.dataobj.slope, source.dataobj.inter
    assert slope != 1.0, "the test needs a scaled input"
    record = resample_volume(source.get_filename(), tmp_path / "out.nii.gz", (12, 12, 12))
    result = nib.load(tmp_path / "out.nii.gz")
    assert result.get_data_dtype() == np.int16
    assert (result.dataobj.slope, result.dataobj.inter) == (slope, inter)
    physical = result.get_fdata()
    assert physical.min() >= source.get_fdata().min() - 1e-6
    assert physical.max() <= source.get_fdata().max() + 1e-6
    assert record["max_before"] == pytest.approx(source.get_fdata().max())
    assert record["pixel_type"] == "int16"


# --- qform and sform: each carried onto the new grid by its own transform -----------------

SHAPE, DESIRED = (20, 18, 12), (10, 24, 15)  # shrinks, grows, grows: every kind of axis
SCANNER = affine_from((0.8, 0.9, 2.0), (10.0, -20.0, 30.0), rotation(10, 2))


def registered(affine):
    """A registration's rigid move (rotation + translation) applied to a scanner affine."""
    move = affine_from((1.0, 1.0, 1.0), (3.0, -2.5, 5.0), rotation(7, 0) @ rotation(-4, 1))
    return move @ affine


def left_handed(affine):
    """The same grid with the z axis reversed (det < 0: the qform stores qfac = -1)."""
    return affine @ np.diag([1.0, 1.0, -1.0, 1.0])


def sheared(affine, amount):
    """`affine` with its y axis leaning into x by `amount` (|D^T D - I| = amount)."""
    result = affine.copy()
    direction_x = affine[:3, 0] / np.linalg.norm(affine[:3, 0])
    result[:3, 1] += amount * np.linalg.norm(affine[:3, 1]) * direction_x
    return result


def write_transforms(path, data, *, qform=None, qform_code=0, sform=None, sform_code=0):
    """A NIfTI file whose qform and sform are set independently (None: left as nibabel's)."""
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(data.dtype)
    header.set_qform(SCANNER if qform is None else qform, code=qform_code)
    header.set_sform(SCANNER if sform is None else sform, code=sform_code)
    # No affine: nibabel would otherwise overwrite both transforms with it on saving.
    nib.save(nib.Nifti1Image(data, None, header=header), path)
    return path


def old_index(new_index, old_shape, new_shape):
    """The input's continuous voxel index at a new voxel centre (field of view kept)."""
    factors = np.asarray(old_shape, float) / np.asarray(new_shape, float)
    return (np.asarray(new_index, float) + 0.5) * factors - 0.5


def voxel_centres(affine, indices):
    return (np.asarray(affine) @ np.c_[indices, np.ones(len(indices))].T).T[:, :3]


def assert_carried(before, after, name):
    """`after` (on DESIRED) puts the field-of-view corners and voxel centres where `before`
    (on SHAPE) puts them, to 1e-5 mm (float32 storage)."""
    np.testing.assert_allclose(fov_corners(after, DESIRED), fov_corners(before, SHAPE),
                               rtol=0, atol=1e-5, err_msg=name)
    indices = np.array([[0, 0, 0], [9, 23, 14], [3, 11, 7], [5, 0, 14], [0, 17, 2]])
    np.testing.assert_allclose(voxel_centres(after, indices),
                               voxel_centres(before, old_index(indices, SHAPE, DESIRED)),
                               rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("handedness", ["right", "left"])
@pytest.mark.parametrize("engine", ["fast", "itk"])
def test_differing_qform_and_sform_are_each_carried(tmp_path, engine, handedness):
    """Scanner qform (code 1) and registered sform (code 2): the output's qform is the input's
    qform on the new grid, not the sform; quaternion, qfac and codes are kept."""
    qform = SCANNER if handedness == "right" else left_handed(SCANNER)
    source = write_transforms(tmp_path / "in.nii.gz", smooth_volume(SHAPE), qform=qform,
                              qform_code=1, sform=registered(qform), sform_code=2)
    record = resample_volume(source, tmp_path / "out.nii.gz", DESIRED, engine=engine)
    before, after = nib.load(source).header, nib.load(tmp_path / "out.nii.gz").header
    assert_carried(before.get_qform(), after.get_qform(), "qform")
    assert_carried(before.get_sform(), after.get_sform(), "sform")
    for field in ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d"):
        assert after[field] == before[field], field
    assert after["pixdim"][0] == before["pixdim"][0] == (1 if handedness == "right" else -1)
    gap = np.max(np.linalg.norm(fov_corners(before.get_sform(), SHAPE)
                                - fov_corners(before.get_qform(), SHAPE), axis=1))
    assert record["header_geometry"] == (
        f"sform(2) + qform(1), differ by up to {gap:.3g} mm; both carried")


@pytest.mark.parametrize("sform_code, qform_code, text", [
    (2, 0, "sform(2) only"),
    (0, 1, "qform(1) only"),
    (1, 1, "sform(1) = qform(1)"),
    (0, 0, "no orientation codes: pixdim only"),
])
def test_each_declared_transform_is_carried_codes_kept(tmp_path, sform_code, qform_code, text):
    source = write_transforms(tmp_path / "in.nii.gz", smooth_volume(SHAPE), qform=SCANNER,
                              qform_code=qform_code, sform=SCANNER, sform_code=sform_code)
    record = resample_volume(source, tmp_path / "out.nii.gz", DESIRED)
    before, after = nib.load(source).header, nib.load(tmp_path / "out.nii.gz").header
    assert (after["sform_code"], after["qform_code"]) == (sform_code, qform_code)
    if sform_code:
        assert_carried(before.get_sform(), after.get_sform(), "sform")
    if qform_code:
        assert_carried(before.get_qform(), after.get_qform(), "qform")
    # pixdim is the spacing every reader falls back on: the new zooms, whatever the codes.
    np.testing.assert_allclose(after.get_zooms(), np.array(before.get_zooms())
                               * np.array(SHAPE) / np.array(DESIRED), rtol=1e-6)
    # With no codes, readers build the grid from pixdim alone: the field of view is kept.
    assert_carried(before.get_best_affine(), after.get_best_affine(), "best affine")
    assert record["header_geometry"] == text


def physical_pattern(points):
    """A smooth intensity pattern defined in millimetres (wavelengths >> voxels)."""
    x, y, z = points.T
    return 100.0 * np.sin(x / 9.0) * np.cos(y / 11.0) + 2.0 * z


@pytest.mark.parametrize("engine", ["fast", "itk"])
def test_noise_shear_is_accepted_and_carried(tmp_path, engine):
    """A 1e-5 shear in the sform (float noise) used to pass the check and then fail the write
    (nibabel's set_qform refuses shears). Now: the sform keeps its shear on the new grid, the
    qform stays the input's own, and the voxels are right in the sform's millimetres."""
    sform = sheared(registered(SCANNER), 1e-5)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    data = physical_pattern(voxel_centres(sform, grid.reshape(-1, 3))).reshape(SHAPE, order="C")
    source = write_transforms(tmp_path / "in.nii.gz", data.astype(np.float32), qform=SCANNER,
                              qform_code=1, sform=sform, sform_code=2)
    record = resample_volume(source, tmp_path / "out.nii.gz", DESIRED, engine=engine)
    before, result = nib.load(source).header, nib.load(tmp_path / "out.nii.gz")
    after = result.header
    assert_carried(before.get_sform(), after.get_sform(), "sform")
    assert_carried(before.get_qform(), after.get_qform(), "qform")
    linear = after.get_sform()[:3, :3] / np.linalg.norm(after.get_sform()[:3, :3], axis=0)
    assert np.max(np.abs(linear.T @ linear - np.eye(3))) == pytest.approx(1e-5, rel=0.02)
    assert record["header_geometry"].endswith("; both carried; shear 1.0e-05 accepted")
    # Interior voxels (the outer ones lean on the mirror boundary) follow the pattern.
    new_grid = np.stack(np.meshgrid(*[np.arange(2, n - 2) for n in DESIRED], indexing="ij"), -1)
    expected = physical_pattern(voxel_centres(after.get_sform(), new_grid.reshape(-1, 3)))
    inner = result.get_fdata()[2:-2, 2:-2, 2:-2].reshape(-1)
    assert np.max(np.abs(inner - expected)) < 0.02 * np.ptp(data)


def test_simpleitk_sees_its_own_transform_carried(tmp_path):
    """SimpleITK picks the qform when sform_code is 2 and qform_code 1 (nibabel: the sform);
    either way the output is where that reader put the input."""
    source = write_transforms(tmp_path / "in.nii.gz", smooth_volume(SHAPE), qform=SCANNER,
                              qform_code=1, sform=registered(SCANNER), sform_code=2)
    resample_volume(source, tmp_path / "out.nii.gz", DESIRED)
    before, after = sitk.ReadImage(str(source)), sitk.ReadImage(str(tmp_path / "out.nii.gz"))
    for index in ([0, 0, 0], [9, 23, 14], [3, 11, 7]):
        old = old_index(index, SHAPE, DESIRED)
        expected = before.TransformContinuousIndexToPhysicalPoint(old.tolist())
        actual = after.TransformContinuousIndexToPhysicalPoint([float(i) for i in index])
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


# --- header problems: refused before any work, one line naming the file and the problem ---

def write_raw(path, header, data):
    """Write header fields exactly as given (nibabel's own writer would repair some)."""
    header = header.copy()
    header["vox_offset"] = 352
    payload = header.binaryblock + bytes(4) + np.asarray(data).tobytes(order="F")
    path.write_bytes(gzip.compress(payload))
    return path


def good_header(data, **codes):
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(data.dtype)
    header.set_qform(SCANNER, code=codes.get("qform_code", 1))
    header.set_sform(registered(SCANNER), code=codes.get("sform_code", 2))
    return header


def set_fields(header, **fields):
    for name, value in fields.items():
        if name.startswith("pixdim"):
            header["pixdim"][int(name[-1])] = value
        else:
            header[name] = value
    return header


def with_sform(header, sform):
    header.set_sform(sform, code=int(header["sform_code"]))
    return header


def zero_axis(affine):
    result = affine.copy()
    result[:3, 1] = 0.0
    return result


BAD_HEADERS = {
    "sform_nan": (lambda h: set_fields(h, srow_x=[1.0, 0.0, 0.0, np.nan]),
                  "the sform holds a non-finite number"),
    "sform_zero_axis": (lambda h: with_sform(h, zero_axis(registered(SCANNER))),
                        "the voxel spacing of the sform is zero"),
    "sform_shear": (lambda h: with_sform(h, sheared(registered(SCANNER), 1e-2)),
                    "the voxel axes are not orthonormal in the sform (sheared, "
                    "max |D^T D - I| = 0.01 > 0.0001 tolerated)"),
    "qform_nan_offset": (lambda h: set_fields(h, qoffset_y=np.nan),
                         "the qform holds a non-finite number"),
    "qform_zero_pixdim": (lambda h: set_fields(h, pixdim3=0.0),
                          "zero voxel spacing in pixdim[1:4] = 0.8,0.9,0, used by the qform"),
    "qform_negative_pixdim": (lambda h: set_fields(h, pixdim1=-0.8),
                              "negative voxel spacing in pixdim[1:4] = -0.8,0.9,2; readers "
                              "disagree"),
    "qform_bad_quaternion": (lambda h: set_fields(h, quatern_b=0.9, quatern_c=0.9),
                             "invalid qform (w2 should be positive"),
    "qform_bad_code": (lambda h: set_fields(h, qform_code=9),
                       "qform_code 9 is not a NIfTI transform code (0-5)"),
    "no_codes_nan_pixdim": (lambda h: set_fields(h, qform_code=0, sform_code=0, pixdim2=np.nan),
                            "no orientation codes and pixdim[1:4] = 0.8,nan,2 is not a positive"),
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_header_problems_are_refused_before_any_work(tmp_path, monkeypatch, name):
    spoil, message = BAD_HEADERS[name]
    data = smooth_volume(SHAPE)
    source = write_raw(tmp_path / f"{name}.nii.gz", spoil(good_header(data)), data)

    def no_work(*args, **kwargs):
        raise AssertionError("resampling started on a refused header")

    monkeypatch.setattr(volume_module, "resample_frame", no_work)
    with pytest.raises(VolumeError) as raised:
        resample_volume(source, tmp_path / "out.nii.gz", DESIRED)
    text = str(raised.value)
    assert text.startswith(f"{name}.nii.gz: ") and message in text, text
    assert "\n" not in text
    assert not list(tmp_path.glob("*out*"))


def test_command_line_refuses_a_real_shear_in_one_line(tmp_path):
    """1e-2 is a real shear (no rectilinear grid): exit 1, `error: <file>: ...`, no output."""
    data = smooth_volume(SHAPE)
    header = with_sform(good_header(data), sheared(registered(SCANNER), 1e-2))
    source = write_raw(tmp_path / "tilted.nii.gz", header, data)
    result = subprocess.run(
        [sys.executable, "-m", "nii_resample", "volume", str(source),
         str(tmp_path / "out.nii.gz"), "8", "8", "8"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: tilted.nii.gz: the voxel axes are not orthonormal in the sform (sheared, "
        "max |D^T D - I| = 0.01 > 0.0001 tolerated); only rectilinear grids can be resampled"
    ]
    assert not list(tmp_path.glob("*out*"))


def test_workflow_records_the_header_geometry(tmp_path):
    """A real run: what was accepted of each header is in the manifest and the job's log."""
    folder, output = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    data = smooth_volume(SHAPE)
    write_raw(folder / "noise.nii.gz",
              with_sform(good_header(data, sform_code=1), sheared(SCANNER, 1e-5)), data)
    write_raw(folder / "registered.nii.gz", good_header(data), data)
    write_raw(folder / "bare.nii.gz", good_header(data, qform_code=0, sform_code=0), data)
    config = {"nii_folder": str(folder), "output_path": str(output),
              "desired_volume": list(DESIRED), "saving_mode": "folder"}
    run_snakemake(tmp_path / "work", config)
    manifest = pd.read_csv(output / "manifest.tsv", sep="\t", keep_default_na=False)
    names = manifest["input_path"].map(lambda path: Path(path).name.split(".")[0])
    geometry = dict(zip(names, manifest["header_geometry"]))
    assert geometry["noise"] == "sform(1) = qform(1); shear 1.0e-05 accepted"
    assert geometry["registered"].startswith("sform(2) + qform(1), differ by up to ")
    assert geometry["registered"].endswith(" mm; both carried")
    assert geometry["bare"] == "no orientation codes: pixdim only"
    for name, text in geometry.items():
        log = (output / "logs" / "resample_volume" / f"{name}.log").read_text()
        assert f"header: {text}" in log
    noisy = nib.load(output / "noise_resampled.nii.gz").header
    assert_carried(sheared(SCANNER, 1e-5), noisy.get_sform(), "sform")
    assert_carried(SCANNER, noisy.get_qform(), "qform")
