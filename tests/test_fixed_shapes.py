"""Network-ready shapes (issue 19): a spacing chosen from the dataset (median, nnU-Net's rule),
fixed shapes by crop/pad on the same lattice, padding to a multiple; real files and runs."""

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from support import affine_from, fov_corners, rotation, run_snakemake, smooth_volume, write_nifti
from nii_resample.api import resampling_dataset
from nii_resample.errors import ConfigError, VolumeError
from nii_resample.settings import normalise_config
from nii_resample.volume import resample_volume

# Mixed spacings and sizes: an anisotropic z (thick slices, few of them), as CT series are.
VOLUMES = {
    "a": ((40, 36, 8), (0.70, 0.70, 5.0)),
    "b": ((44, 40, 10), (0.80, 0.75, 4.0)),
    "c": ((36, 36, 12), (0.90, 0.85, 3.0)),
    "d": ((48, 44, 9), (0.75, 0.80, 5.0)),
    "e": ((40, 40, 30), (0.85, 0.90, 1.0)),
}


def _manifest(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return {Path(r["input_path"]).name: r for r in csv.DictReader(handle, delimiter="\t")}


def _dataset(folder, volumes=VOLUMES):
    for index, (name, (shape, spacing)) in enumerate(volumes.items()):
        write_nifti(folder / f"{name}.nii.gz", smooth_volume(shape, np.int16, seed=index),
                    affine_from(spacing, (1.0, -2.0, 3.0), rotation(10 * index, 2)))
    return folder


def _expected(rule, volumes=VOLUMES):
    """Both rules computed here from the numbers above, independently of the package:
    nnU-Net v2's ExperimentPlanner.determine_fullres_target_spacing, as it reads."""
    spacings = np.array([s for _, s in volumes.values()], float)
    sizes = np.array([n for n, _ in volumes.values()], float)
    target = np.median(spacings, axis=0)
    if rule == "median":
        return target
    size = np.median(sizes, axis=0)
    worst = int(np.argmax(target))
    other = [i for i in range(3) if i != worst]
    if target[worst] > 3 * max(target[other]) and size[worst] * 3 < min(size[other]):
        low = np.percentile(spacings[:, worst], 10)
        if low < max(target[other]):
            low = max(max(target[other]), low) + 1e-5
        target[worst] = low
    return target


@pytest.mark.parametrize("rule", ["median", "nnunet"])
def test_spacing_from_the_dataset(tmp_path, rule):
    folder = _dataset(tmp_path / "in")
    out = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(out), "desired_volume": [8, 8, 8],
              "desired_spacing": rule}
    result = run_snakemake(tmp_path / "work", config)
    expected = _expected(rule)
    assert rule != "nnunet" or expected[2] != np.median([s[2] for _, s in VOLUMES.values()])
    said = [line for line in result.output.splitlines() if f"desired_spacing {rule} =" in line]
    assert len(said) == 1 and "(5 volumes' headers)" in said[0]
    rows = _manifest(out / "manifest.tsv")
    for name, row in rows.items():
        spacing = np.array(row["new_spacing"].split(","), float)
        # headers hold float32: the test computes from the decimal numbers written
        assert np.allclose(spacing, expected, rtol=0, atol=1e-6), (name, spacing, expected)
        assert row["grid"].startswith(f"{rule} ")
    document = json.loads((out / "dataset.json").read_text())
    [grid] = document["grids"]
    assert grid["rule"] == rule and grid["volumes"] == 5
    assert np.allclose(grid["spacing"], expected, rtol=0, atol=1e-6)
    assert np.allclose(grid["spacing_median"], np.median([s for _, s in VOLUMES.values()], 0))
    # The same rule on the same volumes: the same spacing, nothing to redo.
    again = run_snakemake(tmp_path / "work", config)
    assert "Nothing to be done" in again.output
    # A volume that moves the median: said in one line, every volume redone.
    more = dict(VOLUMES, f=((40, 40, 40), (1.2, 1.2, 1.2)), g=((40, 40, 40), (1.3, 1.3, 1.1)))
    _dataset(folder, more)
    changed = run_snakemake(tmp_path / "work", config)
    lines = [l for l in changed.output.splitlines() if "is now" in l and "redone" in l]
    assert len(lines) == 1, changed.output
    assert np.allclose(json.loads((out / "dataset.json").read_text())["grids"][0]["spacing"],
                       _expected(rule, more))


def _grid_pair(tmp_path, data, affine, label_map=False, method="linear_argmax", **shaping):
    """The same volume at 1.1 mm with and without crop/pad."""
    source = write_nifti(tmp_path / ("seg.nii.gz" if label_map else "ct.nii.gz"), data, affine)
    kind = {"kind": "label_map", "label_interpolation": method} if label_map else {}
    plain = resample_volume(source, tmp_path / "plain.nii.gz", desired_spacing=(1.1, 1.1, 1.1), **kind)
    shaped = resample_volume(source, tmp_path / "shaped.nii.gz", desired_spacing=(1.1, 1.1, 1.1),
                             **kind, **shaping)
    return plain, shaped, nib.load(tmp_path / "plain.nii.gz"), nib.load(tmp_path / "shaped.nii.gz")


def _offsets(plain, shaped):
    """The integer voxel shift from the uncropped grid to the cropped/padded one."""
    shift = np.linalg.solve(plain.affine, shaped.affine)[:3, 3]
    assert np.allclose(shift, np.round(shift), atol=1e-4), shift  # the same lattice
    return [int(v) for v in np.round(shift)]


@pytest.mark.parametrize("label_map", [False, True])
def test_crop_and_pad_are_exact_voxel_operations(tmp_path, label_map):
    shape = (50, 30, 21)
    affine = affine_from((0.9, 1.0, 1.3), (-5.0, 7.0, 2.0), rotation(20, 1))
    data = (np.random.default_rng(1).integers(0, 4, shape).astype(np.uint8) if label_map
            else smooth_volume(shape, np.int16, seed=3))
    # 0.9 * 50 / 1.1 -> 41 voxels (cropped to 32), 30 / 1.1 -> 27 (padded to 36), 25 -> 25.
    crop_or_pad = (32, 36, 25)
    plain, shaped, a, b = _grid_pair(tmp_path, data, affine, label_map, crop_or_pad=crop_or_pad)
    assert a.shape == (41, 27, 25) and b.shape == crop_or_pad
    shift = _offsets(a, b)
    assert shift == [4, -4, 0]  # crop 9: 4 before, 5 after; pad 9: 4 before, 5 after
    whole, part = np.asarray(a.dataobj), np.asarray(b.dataobj)
    # Kept voxels: exactly those of the uncropped grid, voxel by voxel (label maps with a
    # local method; volume_preserving balances each label's count over the whole output,
    # so a crop moves a few boundary voxels: below).
    assert np.array_equal(part[:, 4:31, :], whole[4:36, :, :])
    if label_map:
        _, _, a2, b2 = _grid_pair(tmp_path / "vp", data, affine, True, "volume_preserving",
                                  crop_or_pad=crop_or_pad)
        same = np.mean(np.asarray(b2.dataobj)[:, 4:31, :] == np.asarray(a2.dataobj)[4:36])
        assert same > 0.95, same
    # Padding: the input's minimum (label maps: 0) on y, 4 before and 5 after.
    pad = 0 if label_map else data.min()
    assert np.all(part[:, :4, :] == pad) and np.all(part[:, 31:, :] == pad)
    # Both transforms moved with the grid; the field of view's centre by <= half a voxel.
    for get in ("get_sform", "get_qform"):
        expected = getattr(a.header, get)() @ np.block([[np.eye(3), np.array(shift)[:, None]],
                                                         [np.zeros((1, 3)), np.ones((1, 1))]])
        assert np.allclose(getattr(b.header, get)(), expected, atol=1e-4)
    centre_moved = np.linalg.norm(fov_corners(a.affine, a.shape).mean(0)
                                  - fov_corners(b.affine, b.shape).mean(0))
    assert centre_moved <= 0.5 * 1.1 * np.sqrt(3) + 1e-6
    assert shaped["crop_or_pad"] == "x: cropped 4+5; y: padded 4+5; z: kept"
    assert shaped["new_size"] == "32x36x25" and plain["crop_or_pad"] == ""


def test_pad_to_multiple_pads_only_and_pad_value_is_physical(tmp_path):
    shape = (30, 33, 20)
    physical = smooth_volume(shape, np.float32, seed=4, low=-1000.0, high=3000.0)
    image = nib.Nifti1Image(physical, affine_from((1.0, 1.0, 1.0)))
    image.set_data_dtype(np.int16)  # nibabel chooses scl_slope/scl_inter: a scaled int16
    source = tmp_path / "ct.nii.gz"
    nib.save(image, source)
    slope, inter = nib.load(source).dataobj.slope, nib.load(source).dataobj.inter
    assert slope != 1.0, "the test needs a scaled input"
    resample_volume(source, tmp_path / "plain.nii.gz", desired_spacing=(1.0, 1.0, 1.0))
    row = resample_volume(source, tmp_path / "padded.nii.gz", desired_spacing=(1.0, 1.0, 1.0),
                          pad_to_multiple=16, pad_value=-999.0)
    padded = nib.load(tmp_path / "padded.nii.gz")
    assert padded.shape == (32, 48, 32) and row["crop_or_pad"].startswith("x: padded 1+1")
    stored = padded.dataobj.get_unscaled()
    plain = nib.load(tmp_path / "plain.nii.gz").dataobj.get_unscaled()
    assert np.array_equal(stored[1:31, 7:40, 6:26], plain)  # nothing cropped, same voxels
    assert stored[0, 0, 0] == np.rint((-999.0 - inter) / slope)  # physical -> stored
    assert abs(padded.get_fdata()[0, 0, 0] + 999.0) <= abs(slope) / 2
    # A value the stored type cannot hold is refused, never clipped.
    with pytest.raises(VolumeError, match=r"^ct.nii.gz: pad_value -1024 cannot be stored in "
                                          r"its int16 voxels \(with its scaling they hold "):
        resample_volume(source, tmp_path / "no.nii.gz", desired_spacing=(1.0, 1.0, 1.0),
                        pad_to_multiple=16, pad_value=-1024.0)
    assert not (tmp_path / "no.nii.gz").exists()
    # Without pad_value: the input's minimum.
    resample_volume(source, tmp_path / "minimum.nii.gz", desired_spacing=(1.0, 1.0, 1.0),
                    pad_to_multiple=16)
    assert nib.load(tmp_path / "minimum.nii.gz").dataobj.get_unscaled()[0, 0, 0] == \
        nib.load(source).dataobj.get_unscaled().min()


def test_workflow_fixed_shape_with_a_case_member_and_config_errors(tmp_path):
    folder = tmp_path / "in"
    affine = affine_from((0.8, 0.8, 2.5), (0, 0, 0), rotation(30, 2))
    write_nifti(folder / "ct.nii.gz", smooth_volume((60, 50, 14), np.int16, 1), affine)
    write_nifti(folder / "ct_seg.nii.gz", (smooth_volume((60, 50, 14), np.int16, 1) > 200)
                .astype(np.uint8), affine)
    out = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(out), "desired_volume": [8, 8, 8],
              "desired_spacing": [1.0, 1.0, 1.0], "crop_or_pad": [32, 48, 24]}
    run_snakemake(tmp_path / "work", config)
    image, seg = (nib.load(out / n / f"{n}_resampled.nii.gz") for n in ("ct", "ct_seg"))
    assert image.shape == seg.shape == (32, 48, 24)
    assert np.array_equal(image.affine, seg.affine)
    assert np.array_equal(image.header.get_qform(), seg.header.get_qform())
    rows = _manifest(out / "manifest.tsv")
    assert rows["ct.nii.gz"]["grid"] == "1,1,1 mm, cropped or padded to 32x48x24"
    # 48, 40 and 35 voxels at 1 mm
    assert rows["ct.nii.gz"]["crop_or_pad"] == "x: cropped 8+8; y: padded 4+4; z: cropped 5+6"
    # With a fixed shape already, crop_or_pad and pad_to_multiple are refused.
    with pytest.raises(ConfigError, match="^crop_or_pad shape a desired_spacing grid; with "
                                          "desired_volume the shape is fixed"):
        normalise_config({"nii_folder": "x", "output_path": "y", "desired_volume": [8, 8, 8],
                          "crop_or_pad": [4, 4, 4]})
    with pytest.raises(ConfigError, match="grid 'g': pad_to_multiple shape a desired_spacing"):
        normalise_config({"nii_folder": "x", "output_path": "y",
                          "grids": {"g": {"desired_volume": [8, 8, 8], "pad_to_multiple": 16}}})
    bad = run_snakemake(tmp_path / "work2", {**config, "desired_spacing": None,
                                             "crop_or_pad": [4, 4]}, check=False)
    assert re.search(r"Invalid configuration: crop_or_pad must be three positive integers",
                     bad.output), bad.output[-2000:]


def test_api_spacing_rule_and_fixed_shape(tmp_path):
    folder = _dataset(tmp_path / "in")
    written = resampling_dataset(folder, tmp_path / "out", desired_spacing="nnunet",
                                 crop_or_pad=(40, 40, 16), cores=1, progress=False)
    shapes = {nib.load(p).shape for p in written}
    assert shapes == {(40, 40, 16)}
    spacing = nib.load(written[0]).header.get_zooms()
    assert np.allclose(spacing, _expected("nnunet"), atol=1e-5)
    assert json.loads((tmp_path / "out/dataset.json").read_text())["grids"][0]["rule"] == "nnunet"
