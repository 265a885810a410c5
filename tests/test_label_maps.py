"""Label maps never get a new label value, keep their type, and keep each label's volume.

Measured (label volume change, linear_argmax / nearest), on the synthetic anatomy below
(60x50x40; labels from 2 % to 35 % of the volume): 2x downsampling: large label <= 1.5 % /
1.2 %, small ellipsoids (about 15 voxels across) <= 5.3 % / 7.7 %, a thin slab <= 3.5 % / 4.2 %;
1.5x upsampling: <= 3.0 % / 6.0 %. On the demo chest label map (2.5x in-plane), body and
lungs change < 2 %, thin ribs lose 13 % with linear_argmax (smooth interpolation erodes
structures thinner than a new voxel) and < 1 % with nearest. The tests assert 2 % for the
large label and 8 % for the others.
"""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from support import REPO, affine_from, rotation, run_snakemake, smooth_volume, write_nifti
from nii_resample.api import resampling_dataset
from nii_resample.errors import VolumeError
from nii_resample.labels import resample_label_map
from nii_resample.volume import resample_volume


def anatomy(shape=(60, 50, 40), dtype=np.uint8):
    """Nested ellipsoids and a slab: labels 0 (background), 1, 2, 7 and 200."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    x, y, z = grids
    labels = np.zeros(shape, dtype)
    labels[(x / 0.9) ** 2 + (y / 0.8) ** 2 + (z / 0.9) ** 2 < 1] = 1
    labels[((x - 0.3) / 0.3) ** 2 + (y / 0.4) ** 2 + (z / 0.5) ** 2 < 1] = 2
    labels[((x + 0.4) / 0.25) ** 2 + ((y + 0.1) / 0.25) ** 2 + (z / 0.3) ** 2 < 1] = 7
    labels[(np.abs(y - 0.5) < 0.12) & (np.abs(x) < 0.5) & (np.abs(z) < 0.6)] = 200
    return labels


def label_volumes(labels, voxel_volume):
    values, counts = np.unique(labels, return_counts=True)
    return dict(zip(values.tolist(), (counts * voxel_volume).tolist()))


@pytest.mark.parametrize("method", ["volume_preserving", "linear_argmax", "nearest"])
@pytest.mark.parametrize("new_shape, direction", [((30, 25, 16), "down"), ((90, 80, 61), "up"),
                                                 ((41, 33, 40), "down")])
def test_labels_are_kept_and_volumes_preserved(tmp_path, method, new_shape, direction):
    labels = anatomy()
    source = write_nifti(tmp_path / "seg.nii.gz", labels,
                         affine_from((0.8, 0.9, 2.0), (10, 20, 30), rotation(10, 2)))
    record = resample_volume(source, tmp_path / "out.nii.gz", new_shape, label_map=True,
                             label_interpolation=method)
    image = nib.load(tmp_path / "out.nii.gz")
    result = np.asanyarray(image.dataobj)
    assert image.get_data_dtype() == np.uint8 and result.shape == new_shape
    assert set(np.unique(result)) <= set(np.unique(labels))
    assert record["kind"] == "label_map" and record["interpolation"] == method
    assert record["antialias"] is False
    before = label_volumes(labels, np.prod([0.8, 0.9, 2.0]))
    after = label_volumes(result, np.prod(image.header.get_zooms()))
    for label, volume in before.items():
        tolerance = 0.02 if label in (0, 1) else 0.08
        assert abs(after.get(label, 0.0) - volume) <= tolerance * volume, (label, volume, after)


def test_identity_grid_returns_the_labels_unchanged():
    labels = anatomy((20, 18, 16))
    assert np.array_equal(resample_label_map(labels, labels.shape), labels)


def test_many_labels_never_invent_values():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.repeat(rng.integers(0, 120, (12, 12, 6)), 4, axis=0), 4, axis=1)
    labels = labels.astype(np.int16)
    result = resample_label_map(labels, (20, 20, 9))
    assert set(np.unique(result)) <= set(np.unique(labels))
    assert result.dtype == np.int16


def test_float_label_map_with_fractions_is_refused(tmp_path):
    from nii_resample.errors import VolumeError

    source = write_nifti(tmp_path / "seg.nii.gz", np.full((8, 8, 8), 0.5, np.float32), np.eye(4))
    with pytest.raises(VolumeError, match="seg.nii.gz: matched label_maps but holds non-integer"):
        resample_volume(source, tmp_path / "out.nii.gz", (4, 4, 4), label_map=True)


def test_workflow_treats_matching_files_as_label_maps(tmp_path):
    folder = tmp_path / "in"
    affine = affine_from((0.8, 0.9, 2.0))
    labels = anatomy()
    write_nifti(folder / "case1_seg.nii.gz", labels, affine)
    write_nifti(folder / "case1.nii.gz", (labels * 100).astype(np.int16), affine)
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [25, 20, 17], "label_maps": ["*_seg.nii.gz"],
              # case1 (labels x 100) is piecewise constant: detection would call it labels.
              "detect_label_maps": False, "saving_mode": "folder"}
    run_snakemake(tmp_path / "work", config)
    manifest = pd.read_csv(tmp_path / "out" / "manifest.tsv", sep="\t").set_index("kind")
    assert manifest.loc["label_map", "interpolation"] == "volume_preserving"
    assert manifest.loc["image", "interpolation"] == "bspline"
    assert bool(manifest.loc["image", "antialias"]) is True
    seg = np.asanyarray(nib.load(tmp_path / "out" / "case1_seg_resampled.nii.gz").dataobj)
    image = nib.load(tmp_path / "out" / "case1_resampled.nii.gz")
    assert set(np.unique(seg)) <= {0, 1, 2, 7, 200}
    np.testing.assert_allclose(image.affine, nib.load(tmp_path / "out" /
                                                      "case1_seg_resampled.nii.gz").affine)


# --- Label maps recognised by header and content, not only by name (docs/label_detection.md)


def tissue_classes(shape=(48, 44, 36), dtype=np.int16):
    """A BIDS-like dseg: nested shells 1 (CSF), 2 (grey matter), 3 (white matter) in 0."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = np.sqrt(sum((g / s) ** 2 for g, s in zip(grids, (0.9, 0.8, 0.85))))
    return np.select([radius < 0.5, radius < 0.75, radius < 0.9], [3, 2, 1], 0).astype(dtype)


def mri_like_uint8(shape=(48, 44, 36)):
    """An MRI-like image rescaled to 0..80 grey levels as uint8 (noise, smooth contrast)."""
    return smooth_volume(shape, np.uint8, seed=5, low=0.0, high=80.0)


def with_intent(code):
    header = nib.Nifti1Header()
    header.set_intent(code)
    return header


def check_labels_kept(source, output, tolerance_large=0.02, tolerance_small=0.08):
    """Output labels are input labels, and every label keeps its physical volume."""
    before_image, after_image = nib.load(source), nib.load(output)
    before, after = np.asanyarray(before_image.dataobj), np.asanyarray(after_image.dataobj)
    assert after_image.get_data_dtype() == before_image.get_data_dtype()
    assert set(np.unique(after)) <= set(np.unique(before))
    volumes_before = label_volumes(before, np.prod(before_image.header.get_zooms()[:3]))
    volumes_after = label_volumes(after, np.prod(after_image.header.get_zooms()[:3]))
    largest = max(volumes_before.values())
    for label, volume in volumes_before.items():
        tolerance = tolerance_large if volume > 0.2 * largest else tolerance_small
        assert abs(volumes_after.get(label, 0.0) - volume) <= tolerance * volume, (label, volume)


def test_unnamed_segmentations_are_label_maps_with_the_default_config(tmp_path):
    """nnU-Net labelsTr/case_001 and BIDS *_dseg are label maps by content; an intent code
    forces a label map; a uint8 MRI with 81 grey levels and an int16 CT stay images."""
    folder = tmp_path / "labelsTr"
    affine = affine_from((0.8, 0.9, 2.0), (10, 20, 30), rotation(10, 2))
    write_nifti(folder / "case_001.nii.gz", anatomy(), affine)
    write_nifti(folder / "sub-01_dseg.nii.gz", tissue_classes(), affine)
    write_nifti(folder / "sub-01_T1w.nii.gz", mri_like_uint8(), affine)
    write_nifti(folder / "ct.nii.gz", smooth_volume((48, 44, 36)), affine)
    write_nifti(folder / "parcels.nii.gz", smooth_volume((20, 18, 16), seed=2, low=0, high=40),
                affine, header=with_intent(1002))
    run_snakemake(tmp_path / "work", {"nii_folder": str(folder), "saving_mode": "folder",
                                      "output_path": str(tmp_path / "out"),
                                      "desired_volume": [30, 25, 16],
                                      # content, not layout (sub-01_dseg beside sub-01_T1w
                                      # is a label map by layout too: test_cases.py)
                                      "cases": "off"})
    manifest = pd.read_csv(tmp_path / "out" / "manifest.tsv", sep="\t", keep_default_na=False)
    rows = manifest.set_index(manifest["input_path"].map(lambda p: p.split("/")[-1]))
    assert rows.loc["case_001.nii.gz", "kind"] == "label_map"
    assert rows.loc["case_001.nii.gz", "kind_reason"].startswith("content: 5 distinct integer")
    assert rows.loc["sub-01_dseg.nii.gz", "kind"] == "label_map"
    assert rows.loc["sub-01_dseg.nii.gz", "kind_reason"].startswith("content: 4 distinct integer")
    assert rows.loc["sub-01_dseg.nii.gz", "interpolation"] == "volume_preserving"
    assert rows.loc["parcels.nii.gz", "kind"] == "label_map"
    assert rows.loc["parcels.nii.gz", "kind_reason"] == "header intent NIFTI_INTENT_LABEL"
    for name in ("sub-01_T1w.nii.gz", "ct.nii.gz"):
        assert rows.loc[name, "kind"] == "image", rows.loc[name, "kind_reason"]
        assert rows.loc[name, "interpolation"] == "bspline"
        assert rows.loc[name, "kind_reason"].endswith("(image)")
    for prefix in ("case_001", "sub-01_dseg"):
        check_labels_kept(folder / f"{prefix}.nii.gz",
                          tmp_path / "out" / f"{prefix}_resampled.nii.gz")


def test_patterns_beat_content_and_detection_turns_off_in_the_workflow(tmp_path):
    """An `images` pattern makes a label-like volume an image, a `label_maps` pattern makes an
    image-like volume a label map; detect_label_maps: false leaves the rest to the names."""
    folder = tmp_path / "in"
    affine = affine_from((0.8, 0.9, 2.0))
    write_nifti(folder / "case_001.nii.gz", anatomy(), affine)
    write_nifti(folder / "case_002_T1w.nii.gz", anatomy(), affine)
    write_nifti(folder / "ct_seg.nii.gz", smooth_volume((30, 24, 20), seed=3, low=0, high=30),
                affine)
    config = {"nii_folder": str(folder), "saving_mode": "folder", "desired_volume": [25, 20, 17],
              "label_maps": ["*_seg.nii.gz"], "images": ["*_T1w.nii.gz"]}

    def run(out, **settings):
        run_snakemake(tmp_path / f"work_{out}", {**config, **settings,
                                                  "output_path": str(tmp_path / out)})
        table = pd.read_csv(tmp_path / out / "manifest.tsv", sep="\t", keep_default_na=False)
        return table.set_index(table["input_path"].map(lambda p: p.split("/")[-1]))

    rows = run("on")
    assert rows.loc["case_001.nii.gz", "kind"] == "label_map"
    assert tuple(rows.loc["case_002_T1w.nii.gz", ["kind", "kind_reason"]]) == (
        "image", "file name matches images pattern *_T1w.nii.gz")
    assert tuple(rows.loc["ct_seg.nii.gz", ["kind", "kind_reason"]]) == (
        "label_map", "file name matches *_seg.nii.gz")
    assert set(np.unique(nib.load(tmp_path / "on" / "ct_seg_resampled.nii.gz").dataobj)) <= set(
        np.unique(nib.load(folder / "ct_seg.nii.gz").dataobj))
    # B-spline on labels invents values between neighbouring labels: what detection prevents.
    invented = np.asanyarray(nib.load(tmp_path / "on" / "case_002_T1w_resampled.nii.gz").dataobj)
    assert not set(np.unique(invented)) <= {0, 1, 2, 7, 200}
    rows = run("off", detect_label_maps=False)
    assert tuple(rows.loc["case_001.nii.gz", ["kind", "kind_reason"]]) == (
        "image", "no label_maps pattern matches (detection off)")
    assert rows.loc["ct_seg.nii.gz", "kind"] == "label_map"


def test_api_detects_by_default_and_obeys_its_options(tmp_path):
    folder = tmp_path / "in"
    affine = affine_from((0.8, 0.9, 2.0))
    write_nifti(folder / "case_001.nii.gz", anatomy(), affine)
    write_nifti(folder / "ct.nii.gz", smooth_volume((30, 24, 20)), affine)

    def kinds(out, **options):
        resampling_dataset(folder, tmp_path / out, (25, 20, 17), cores=1, progress=False,
                           **options)
        table = pd.read_csv(tmp_path / out / "manifest.tsv", sep="\t", keep_default_na=False)
        return {path.split("/")[-1]: (kind, reason) for path, kind, reason
                in zip(table["input_path"], table["kind"], table["kind_reason"])}

    found = kinds("default")
    assert found["case_001.nii.gz"][0] == "label_map"
    assert found["case_001.nii.gz"][1].startswith("content: 5 distinct integer values")
    assert found["ct.nii.gz"][0] == "image"
    assert kinds("off", detect_label_maps=False)["case_001.nii.gz"][0] == "image"
    forced = kinds("forced", images=["case_*"], label_maps=["ct.nii.gz"])
    assert forced["case_001.nii.gz"] == ("image", "file name matches images pattern case_*")
    assert forced["ct.nii.gz"] == ("label_map", "file name matches ct.nii.gz")


def test_command_lines_detect_by_default(tmp_path):
    folder = tmp_path / "in"
    source = write_nifti(folder / "case_001.nii.gz", anatomy(), affine_from((0.8, 0.9, 2.0)))
    env = {"PYTHONPATH": str(REPO / "src")}
    single = subprocess.run([sys.executable, "-m", "nii_resample", "volume", str(source),
                             str(tmp_path / "one.nii.gz"), "30", "25", "16"],
                            capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr
    check_labels_kept(source, tmp_path / "one.nii.gz")
    for out, flags, kind in (("on", [], "label_map"), ("off", ["--no-detect-label-maps"], "image"),
                             ("img", ["--images", "case_*"], "image")):
        run = subprocess.run([sys.executable, "-m", "nii_resample", str(folder),
                              str(tmp_path / out), "25", "20", "17", "--cores", "1", *flags],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        table = pd.read_csv(tmp_path / out / "manifest.tsv", sep="\t")
        assert table.loc[0, "kind"] == kind, (flags, table.loc[0, "kind_reason"])


def test_intent_coded_map_with_fractions_is_refused_naming_the_intent(tmp_path):
    data = anatomy().astype(np.float32) + 0.5
    source = write_nifti(tmp_path / "atlas.nii.gz", data, np.eye(4), header=with_intent(1003))
    with pytest.raises(VolumeError, match="atlas.nii.gz: has header intent NIFTI_INTENT_NEURONAME "
                                          "but holds non-integer values"):
        resample_volume(source, tmp_path / "out.nii.gz", (30, 25, 16), kind="auto")
    assert not (tmp_path / "out.nii.gz").exists()


def test_float32_segmentation_is_resampled_as_labels_and_stays_float32(tmp_path):
    source = write_nifti(tmp_path / "aseg.nii.gz", anatomy().astype(np.float32),
                         affine_from((0.8, 0.9, 2.0)))
    row = resample_volume(source, tmp_path / "out.nii.gz", (30, 25, 16), kind="auto")
    assert row["kind"] == "label_map" and row["pixel_type"] == "float32"
    check_labels_kept(source, tmp_path / "out.nii.gz")


@pytest.mark.parametrize("name, data, reason", [
    ("nan", np.where(anatomy() == 2, np.nan, anatomy()).astype(np.float32),
     "content: NaN values (image)"),
    ("fraction", anatomy().astype(np.float32) + 0.25, "content: fractional values (image)"),
    ("mri81", mri_like_uint8(), "uniform (image)"),
    ("ct", smooth_volume((48, 44, 36)), "content: more than 2000 distinct values (image)"),
])
def test_images_stay_images(tmp_path, name, data, reason):
    source = write_nifti(tmp_path / f"{name}.nii.gz", data, affine_from((0.8, 0.9, 2.0)))
    row = resample_volume(source, tmp_path / "out.nii.gz", (30, 25, 16), kind="auto")
    assert row["kind"] == "image" and row["kind_reason"].endswith(reason)
    assert row["interpolation"] == "bspline"
