"""Cases and reference grids (issue 18): a case's channels and label maps land on exactly its
image's output grid, and any volume on a reference volume's grid; real Snakemake runs on
generated nnU-Net and BIDS trees, checked in physical space."""

import csv
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from support import affine_from, rotation, run_snakemake, smooth_volume, write_nifti
from nii_resample.api import resampling_dataset
from nii_resample.cases import find_cases
from nii_resample.settings import normalise_config
from nii_resample.errors import ConfigError
from nii_resample.volume import resample_volume

GRID_FIELDS = ("srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c", "quatern_d",
               "qoffset_x", "qoffset_y", "qoffset_z")
NOISE = np.array([2e-5, -1.5e-5, 2e-5])  # another writer's float noise in the origin (mm)


def _manifest(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return {Path(r["input_path"]).name: r for r in csv.DictReader(handle, delimiter="\t")}


def _same_grid(first, second):
    """Same shape, and the same sform, qform and spacing fields, bit for bit."""
    a, b = nib.load(first).header, nib.load(second).header
    assert a.get_data_shape()[:3] == b.get_data_shape()[:3]
    for name in GRID_FIELDS:
        assert np.array_equal(a[name], b[name]), name
    assert np.array_equal(a["pixdim"][:4], b["pixdim"][:4])
    assert np.array_equal(a.get_best_affine(), b.get_best_affine())


def _labels(shape, seed=0):
    """Three blobs of labels 1, 2, 5 on background 0."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    labels = np.zeros(shape, np.uint8)
    labels[(grids[0] - 0.2) ** 2 + grids[1] ** 2 + grids[2] ** 2 < 0.35] = 1
    labels[(grids[0] + 0.4) ** 2 + (grids[1] - 0.3) ** 2 + grids[2] ** 2 < 0.08] = 2
    labels[((grids[0] - 0.5) ** 2 + (grids[1] + 0.4) ** 2 < 0.05) & (grids[2] ** 2 < 0.3)] = 5
    return labels


def _crop(affine, start):
    """The affine of a sub-block starting at voxel `start`."""
    cropped = affine.copy()
    cropped[:3, 3] = affine[:3, :3] @ np.asarray(start, float) + affine[:3, 3]
    return cropped


def _nnunet_tree(root):
    shape = (30, 26, 14)
    affine = affine_from((0.8, 0.9, 2.5), (-12.5, 30.25, 80.0), rotation(15, 2))
    noisy = affine.copy()
    noisy[:3, 3] += NOISE
    labels = _labels(shape)
    write_nifti(root / "imagesTr/case_001_0000.nii.gz", smooth_volume(shape, np.int16, 1), affine)
    write_nifti(root / "imagesTr/case_001_0001.nii.gz",
                smooth_volume(shape, np.float32, 2, 0.0, 1.0), noisy)
    write_nifti(root / "labelsTr/case_001.nii.gz", labels, noisy)
    # case_002: the same scan; its label map cropped by its tool (smaller field of view).
    write_nifti(root / "imagesTr/case_002_0000.nii.gz", smooth_volume(shape, np.int16, 1), affine)
    start = (5, 4, 2)  # every label inside the crop
    write_nifti(root / "labelsTr/case_002.nii.gz", labels[5:28, 4:22, 2:12].copy(),
                _crop(affine, start))
    return labels


def test_cases_are_found_in_the_usual_layouts():
    keys = ["imagesTr/case_001_0000", "imagesTr/case_001_0001", "labelsTr/case_001",
            "imagesTs/x_0000", "labelsTs/x", "labelsTr/lonely",
            "sub-01/anat/sub-01_ses-1_T1w", "sub-01/anat/sub-01_ses-1_T2w",
            "sub-01/anat/sub-01_ses-1_dseg", "sub-01/anat/sub-01_ses-1_desc-brain_mask",
            "sub-01/anat/sub-01_ses-1_label-GM_probseg", "sub-01/anat/sub-01_ses-2_dseg",
            "ct", "ct_seg", "ct_seg_mask", "mri_labels", "brain"]
    cases = {key: value[0] for key, value in find_cases(keys).items()}
    assert cases == {
        "imagesTr/case_001_0001": "imagesTr/case_001_0000",
        "labelsTr/case_001": "imagesTr/case_001_0000",
        "labelsTs/x": "imagesTs/x_0000",
        # T1w is preferred to T2w; ses-2 has no image of its own: it stays alone.
        "sub-01/anat/sub-01_ses-1_dseg": "sub-01/anat/sub-01_ses-1_T1w",
        "sub-01/anat/sub-01_ses-1_desc-brain_mask": "sub-01/anat/sub-01_ses-1_T1w",
        "sub-01/anat/sub-01_ses-1_label-GM_probseg": "sub-01/anat/sub-01_ses-1_T1w",
        "ct_seg": "ct",
        "ct_seg_mask": "ct",  # a member of a member takes the root image's grid
    }
    roles = {key: value[1] for key, value in find_cases(keys).items()}
    assert roles["labelsTr/case_001"] == "label_map"
    assert roles["imagesTr/case_001_0001"] == "image"
    assert roles["sub-01/anat/sub-01_ses-1_label-GM_probseg"] == "image"
    assert find_cases(keys, "off") == {}
    declared = find_cases(["img/a", "seg/a_liver", "seg/a_lung", "seg/b_liver"],
                          ["img/{case}.nii.gz", "seg/{case}_*.nii.gz"])
    assert {k: v[0] for k, v in declared.items()} == {"seg/a_liver": "img/a",
                                                     "seg/a_lung": "img/a"}


@pytest.mark.parametrize("value", [["img/{case}.nii.gz"], "sometimes", ["a.nii.gz", "b.nii.gz"],
                                   True, 3])
def test_bad_cases_settings_are_one_sentence(value, tmp_path):
    base = {"nii_folder": str(tmp_path), "output_path": str(tmp_path / "out"),
            "desired_volume": [2, 2, 2]}
    with pytest.raises(ConfigError, match="^cases must be auto, off or a list"):
        normalise_config({**base, "cases": value})
    assert normalise_config({**base, "cases": False})["cases"] == "off"
    assert normalise_config({**base, "cases": ["auto"]})["cases"] == "auto"


def test_nnunet_case_members_share_the_image_grid_bit_for_bit(tmp_path):
    labels = _nnunet_tree(tmp_path / "in")
    out = tmp_path / "out"
    config = {"nii_folder": str(tmp_path / "in"), "output_path": str(out),
              "desired_volume": [16, 14, 10], "recursive": True}
    run_snakemake(tmp_path / "work", config)
    image = out / "imagesTr/case_001_0000/case_001_0000_resampled.nii.gz"
    channel = out / "imagesTr/case_001_0001/case_001_0001_resampled.nii.gz"
    label = out / "labelsTr/case_001/case_001_resampled.nii.gz"
    _same_grid(image, channel)
    _same_grid(image, label)
    # Codes are each file's own; labels stay labels.
    assert int(nib.load(label).header["sform_code"]) == 1
    values = np.unique(np.asarray(nib.load(label).dataobj))
    assert set(values) <= {0, 1, 2, 5} and {1, 2, 5} <= set(values)
    assert nib.load(label).get_data_dtype() == np.uint8
    rows = _manifest(out / "manifest.tsv")
    assert rows["case_001_0000.nii.gz"]["target_grid"] == "own"
    member = rows["case_001.nii.gz"]
    assert member["target_grid"].startswith("case reference: ")
    assert member["target_grid"].endswith("imagesTr/case_001_0000.nii.gz")
    assert 1e-5 < float(member["grid_offset_mm"]) < 1e-4  # the float noise, measured
    assert member["kind"] == "label_map" and "nnU-Net labelsTr" in member["kind_reason"]

    # The cropped label map lands where it belongs, 0 outside its field of view: the same
    # as the uncropped one wherever the crop covered the label.
    cropped = np.asarray(nib.load(out / "labelsTr/case_002/case_002_resampled.nii.gz").dataobj)
    _same_grid(out / "imagesTr/case_002_0000/case_002_0000_resampled.nii.gz",
               out / "labelsTr/case_002/case_002_resampled.nii.gz")
    whole = np.asarray(nib.load(label).dataobj)
    for value in (1, 2, 5):
        a, b = whole == value, cropped == value
        dice = 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
        assert dice > 0.9, (value, dice)
    assert float(rows["case_002.nii.gz"]["grid_offset_mm"]) > 1.0  # another field of view

    # A member's record deleted by hand is rebuilt from the files, on the case's grid.
    (out / "records/labelsTr/case_001.tsv").unlink()
    run_snakemake(tmp_path / "work", config, "--forcerun", "manifest")
    rebuilt = _manifest(out / "manifest.tsv")["case_001.nii.gz"]
    assert rebuilt["reason"] == "record rebuilt from the files"
    assert {k: rebuilt[k] for k in ("target_grid", "grid_offset_mm", "new_size", "new_origin")} == {
        k: member[k] for k in ("target_grid", "grid_offset_mm", "new_size", "new_origin")}


def test_a_member_outside_its_image_fails_alone(tmp_path):
    root = tmp_path / "in"
    shape = (12, 12, 8)
    affine = affine_from((1.0, 1.0, 2.0))
    write_nifti(root / "ct.nii.gz", smooth_volume(shape, np.int16, 1), affine)
    write_nifti(root / "ct_seg.nii.gz", _labels(shape), _crop(affine, (100, 0, 0)))
    write_nifti(root / "mri.nii.gz", smooth_volume(shape, np.int16, 2), affine)
    out = tmp_path / "out"
    config = {"nii_folder": str(root), "output_path": str(out), "desired_volume": [6, 6, 4]}
    result = run_snakemake(tmp_path / "work", config, "--keep-going", check=False)
    assert result.returncode != 0
    lines = [l for l in result.output.splitlines() if l.startswith("ERROR ct_seg.nii.gz")]
    assert lines and "does not overlap" in lines[0] and "ct.nii.gz" in lines[0]
    assert (out / "ct/ct_resampled.nii.gz").is_file() and (out / "mri/mri_resampled.nii.gz").is_file()
    assert not (out / "ct_seg").exists() or not any((out / "ct_seg").iterdir())


def test_bids_label_maps_take_the_anatomical_grid_and_off_turns_it_off(tmp_path):
    anat = tmp_path / "in/sub-01/anat"
    shape = (20, 22, 12)
    affine = affine_from((1.0, 1.0, 1.2), (3.0, -4.0, 5.0), rotation(-20, 0))
    noisy = affine.copy()
    noisy[:3, 3] += NOISE
    write_nifti(anat / "sub-01_T1w.nii.gz", smooth_volume(shape, np.int16, 3), affine)
    write_nifti(anat / "sub-01_dseg.nii.gz", _labels(shape), noisy)
    common = {"nii_folder": str(tmp_path / "in"), "recursive": True,
              "desired_spacing": [1.7, 1.7, 1.7], "cores": 1, "progress": False}
    resampling_dataset(output_path=tmp_path / "paired", **common)
    paired = tmp_path / "paired/sub-01/anat"
    _same_grid(paired / "sub-01_T1w/sub-01_T1w_resampled.nii.gz",
               paired / "sub-01_dseg/sub-01_dseg_resampled.nii.gz")
    resampling_dataset(output_path=tmp_path / "alone", cases="off", **common)
    alone = nib.load(tmp_path / "alone/sub-01/anat/sub-01_dseg/sub-01_dseg_resampled.nii.gz")
    image = nib.load(paired / "sub-01_T1w/sub-01_T1w_resampled.nii.gz")
    assert not np.array_equal(alone.affine, image.affine)  # its own grid: the noise stays


def _reference(path, x=20.0):
    """A reference of another orientation and spacing (an LAS-ish rotated atlas)."""
    affine = affine_from((1.5, 1.25, 2.0), (x, 18.0, 60.0),
                         rotation(35, 0) @ np.diag([-1.0, 1.0, 1.0]))
    return write_nifti(path, np.zeros((18, 20, 10), np.int16), affine)


def test_reference_grid_is_taken_exactly_and_matches_simpleitk(tmp_path):
    shape = (30, 24, 12)
    affine = affine_from((0.8, 0.9, 3.0), (-2.5, 3.25, 50.0), rotation(15, 2))
    data = smooth_volume(shape, np.int16, 4)
    source = write_nifti(tmp_path / "in/ct.nii.gz", data, affine)
    seg = write_nifti(tmp_path / "in/ct_seg.nii.gz", _labels(shape), affine)
    reference = _reference(tmp_path / "atlas.nii.gz")
    out = tmp_path / "out"
    run_snakemake(tmp_path / "work", {"nii_folder": str(tmp_path / "in"), "output_path": str(out),
                                      "desired_volume": [4, 4, 4], "reference": str(reference),
                                      "antialias": False})
    ref = nib.load(reference)
    for name in ("ct", "ct_seg"):
        result = nib.load(out / name / f"{name}_resampled.nii.gz")
        assert result.shape == ref.shape
        assert np.array_equal(result.affine, ref.affine)
        for field in GRID_FIELDS:
            assert np.array_equal(result.header[field], ref.header[field])
    # Images: SimpleITK's own Resample onto the reference, in physical space (LPS), the
    # input's minimum outside its field of view, rounded to the stored type.
    expected = sitk.Resample(sitk.ReadImage(str(source), sitk.sitkFloat64),
                             sitk.ReadImage(str(reference)), sitk.Transform(), sitk.sitkBSpline,
                             float(data.min()), sitk.sitkFloat64)
    expected = np.clip(np.rint(sitk.GetArrayFromImage(expected).T), data.min(), data.max())
    got = np.asarray(nib.load(out / "ct/ct_resampled.nii.gz").dataobj)
    assert np.array_equal(got, expected)
    rows = _manifest(out / "manifest.tsv")
    assert rows["ct.nii.gz"]["target_grid"] == f"reference: {reference}"
    assert rows["ct.nii.gz"]["grid"] == "reference atlas.nii.gz"
    labels = np.asarray(nib.load(out / "ct_seg/ct_seg_resampled.nii.gz").dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 5}


def test_reference_errors_before_any_job_and_reruns(tmp_path):
    folder = tmp_path / "in"
    write_nifti(folder / "ct.nii.gz", smooth_volume((30, 24, 12), np.int16, 1),
                affine_from((0.8, 0.9, 3.0), (-2.5, 3.25, 50.0), rotation(15, 2)))
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [4, 4, 4], "reference": str(tmp_path / "missing.nii.gz")}
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert re.search(r"Invalid configuration: reference .*missing\.nii\.gz' is not a file\.",
                     result.output)
    assert not (tmp_path / "out").exists()
    (tmp_path / "junk.nii.gz").write_bytes(b"not a volume")
    config["reference"] = str(tmp_path / "junk.nii.gz")
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert "Invalid configuration: reference" in result.output and "cannot be used" in result.output
    # A changed reference redoes the volume; an unchanged one nothing.
    config["reference"] = str(_reference(tmp_path / "a.nii.gz"))
    run_snakemake(tmp_path / "work", config)
    assert "Nothing to be done" in run_snakemake(tmp_path / "work", config, "-n").output
    _reference(tmp_path / "a.nii.gz", x=21.0)  # another grid (Snakemake also compares contents)
    assert "resample_volume" in run_snakemake(tmp_path / "work", config, "-n").output


def test_a_case_image_change_reruns_its_members(tmp_path):
    root = tmp_path / "in"
    affine = affine_from((1.0, 1.0, 2.0))
    write_nifti(root / "ct.nii.gz", smooth_volume((12, 12, 8), np.int16, 1), affine)
    write_nifti(root / "ct_seg.nii.gz", _labels((12, 12, 8)), affine)
    config = {"nii_folder": str(root), "output_path": str(tmp_path / "out"),
              "desired_volume": [6, 6, 4]}
    run_snakemake(tmp_path / "work", config)
    write_nifti(root / "ct.nii.gz", smooth_volume((12, 12, 8), np.int16, 2), affine)
    dry = run_snakemake(tmp_path / "work", config, "-n", "--quiet", "rules").output
    assert re.search(r"^resample_volume\s+2$", dry, re.M), dry


def test_case_reference_by_function_matches_the_image_job(tmp_path):
    """The member's grid is computed from the image's header alone, also for a target
    spacing: the same affine as the image's own output, bit for bit."""
    affine = affine_from((0.7, 0.75, 2.2), (1.0, 2.0, 3.0), rotation(25, 1))
    image = write_nifti(tmp_path / "a.nii.gz", smooth_volume((25, 21, 9), np.int16, 1), affine)
    shifted = affine.copy()
    shifted[:3, 3] += NOISE
    member = write_nifti(tmp_path / "b.nii.gz", smooth_volume((25, 21, 9), np.float32, 2, 0, 1),
                         shifted)
    resample_volume(image, tmp_path / "a_out.nii.gz", desired_spacing=(1.1, 1.3, 1.7))
    row = resample_volume(member, tmp_path / "b_out.nii.gz", desired_spacing=(1.1, 1.3, 1.7),
                          case_reference=image)
    _same_grid(tmp_path / "a_out.nii.gz", tmp_path / "b_out.nii.gz")
    assert row["target_grid"] == f"case reference: {image}"
