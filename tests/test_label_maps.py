"""Label maps never get a new label value, keep their type, and keep each label's volume.

Measured (label volume change, linear_argmax / nearest), on the synthetic anatomy below
(60x50x40; labels from 2 % to 35 % of the volume): 2x downsampling: large label <= 1.5 % /
1.2 %, small ellipsoids (about 15 voxels across) <= 5.3 % / 7.7 %, a thin slab <= 3.5 % / 4.2 %;
1.5x upsampling: <= 3.0 % / 6.0 %. On the demo chest label map (2.5x in-plane), body and
lungs change < 2 %, thin ribs lose 13 % with linear_argmax (smooth interpolation erodes
structures thinner than a new voxel) and < 1 % with nearest. The tests assert 2 % for the
large label and 8 % for the others.
"""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from support import affine_from, rotation, run_snakemake, write_nifti
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


@pytest.mark.parametrize("method", ["linear_argmax", "nearest"])
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
    assert manifest.loc["label_map", "interpolation"] == "linear_argmax"
    assert manifest.loc["image", "interpolation"] == "bspline"
    assert bool(manifest.loc["image", "antialias"]) is True
    seg = np.asanyarray(nib.load(tmp_path / "out" / "case1_seg_resampled.nii.gz").dataobj)
    image = nib.load(tmp_path / "out" / "case1_resampled.nii.gz")
    assert set(np.unique(seg)) <= {0, 1, 2, 7, 200}
    np.testing.assert_allclose(image.affine, nib.load(tmp_path / "out" /
                                                      "case1_seg_resampled.nii.gz").affine)
