"""The way back: predictions on the resampled grid restored onto the original scans' grids."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from support import REPO, affine_from, fov_corners, rotation, smooth_volume, write_nifti
from nii_resample import ResamplingFailed, resampling_dataset, restore_dataset
from nii_resample.records import read_rows
from nii_resample.restore import match_predictions

LPS = np.diag([-1.0, -1.0, 1.0])
# Coronal slices stored L, S, A: voxel axes i -> left, j -> superior, k -> anterior.
LSA = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
OBLIQUE = rotation(20, 2) @ rotation(-12, 0)


def blob_labels(shape, seed=0) -> np.ndarray:
    """A smooth multi-label map: nested ellipsoids and a slab, labels 1-4 on background 0."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    x, y, z = grids
    labels = np.zeros(shape, np.uint8)
    labels[(x / 0.8) ** 2 + (y / 0.7) ** 2 + (z / 0.75) ** 2 < 1] = 1
    labels[((x - 0.2) / 0.35) ** 2 + (y / 0.3) ** 2 + ((z + 0.1) / 0.4) ** 2 < 1] = 2
    labels[((x + 0.35) / 0.25) ** 2 + ((y - 0.2) / 0.3) ** 2 + (z / 0.3) ** 2 < 1] = 3
    labels[(np.abs(z - 0.8) < 0.12) & (np.abs(x) < 0.6)] = 4
    return labels


def dice(a, b, value) -> float:
    a, b = a == value, b == value
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def assert_same_grid(restored_path, original_path):
    """Shape, transforms and their codes, units: the original's exactly, and in mm."""
    restored, original = nib.load(restored_path), nib.load(original_path)
    assert restored.shape[:3] == original.shape[:3]
    for name in ("srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c", "quatern_d",
                 "qoffset_x", "qoffset_y", "qoffset_z", "sform_code", "qform_code",
                 "xyzt_units"):
        assert np.array_equal(restored.header[name], original.header[name]), name
    assert np.array_equal(restored.header["pixdim"][:4], original.header["pixdim"][:4])
    for get in ("get_sform", "get_qform"):
        ours, theirs = getattr(restored.header, get)(), getattr(original.header, get)()
        assert np.abs(fov_corners(ours, restored.shape) -
                      fov_corners(theirs, original.shape)).max() < 1e-6


def resample(folder, out, size, **options):
    return resampling_dataset(folder, out, size, saving_mode="folder", cores=2, progress=False,
                              **options)


@pytest.fixture
def originals(tmp_path):
    """Inputs stored LPS, coronal LSA and oblique (and flipped), with different units and
    types."""
    folder = tmp_path / "in"
    made = {}
    made["ct_lps"] = write_nifti(folder / "ct_lps.nii.gz", smooth_volume((40, 36, 24)),
                                 affine_from((0.8, 0.9, 2.5), (120.0, 90.0, -40.0), LPS))
    mri = smooth_volume((30, 34, 28), np.float32, seed=1, low=0.0, high=900.0)
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    header["descrip"] = b"coronal MRI"
    made["mri_lsa"] = write_nifti(folder / "mri_lsa.nii.gz", mri,
                                  affine_from((1.1, 1.3, 0.9), (-20.0, 5.0, 30.0), LSA),
                                  header=header, qform_code=2)
    made["seg_oblique"] = write_nifti(folder / "seg_oblique.nii.gz", blob_labels((32, 30, 26)),
                                      affine_from((1.0, 1.2, 1.5), (3.0, -8.0, 12.0), LPS @ OBLIQUE),
                                      sform_code=2, qform_code=1)
    return folder, made


def test_restored_volumes_take_the_original_grids_exactly(tmp_path, originals):
    folder, made = originals
    resample(folder, tmp_path / "res", [20, 18, 16])
    written = restore_dataset(tmp_path / "res", tmp_path / "back", tmp_path / "res/manifest.tsv",
                              cores=2, progress=False)
    assert sorted(written) == [str(tmp_path / "back" / f"{n}.nii.gz") for n in sorted(made)]
    for name, original in made.items():
        restored = tmp_path / "back" / f"{name}.nii.gz"
        assert_same_grid(restored, original)
        restored, original = nib.load(restored), nib.load(original)
        assert restored.get_data_dtype() == original.get_data_dtype()
        assert restored.header["descrip"] == original.header["descrip"]
        values, expected = restored.get_fdata(), original.get_fdata()
        if name.startswith("seg"):
            assert set(np.unique(values)) <= set(np.unique(expected))
            assert dice(values, expected, 2) > 0.8
        else:
            assert np.corrcoef(values.ravel(), expected.ravel())[0, 1] > 0.9
            assert values.min() >= expected.min() and values.max() <= expected.max()
    rows = {row["input_path"]: row for row in read_rows(tmp_path / "back/restore_manifest.tsv")}
    assert rows[str(made["seg_oblique"])]["kind"] == "label_map"
    assert rows[str(made["ct_lps"])]["restored_size"] == "40x36x24"
    assert rows[str(made["ct_lps"])]["prediction_size"] == "20x18x16"
    assert rows[str(made["ct_lps"])]["matched_by"] == "output name"


def test_predictions_stored_in_another_orientation_come_back_the_same(tmp_path, originals):
    """A network that works in RAS+ (nibabel's closest canonical) writes its predictions so;
    the originals are LPS, coronal LSA and oblique. The world positions are what count."""
    folder, made = originals
    resample(folder, tmp_path / "res", [20, 18, 16])
    for path in (tmp_path / "res").glob("*.nii.gz"):
        canonical = nib.as_closest_canonical(nib.load(path))
        assert nib.aff2axcodes(canonical.affine) != nib.aff2axcodes(nib.load(path).affine)
        write_nifti(tmp_path / "ras" / path.name, np.asanyarray(canonical.dataobj),
                    canonical.affine)
    for predictions in ("res", "ras"):
        restore_dataset(tmp_path / predictions, tmp_path / f"back_{predictions}",
                        tmp_path / "res/manifest.tsv", cores=2, progress=False)
    for name, original in made.items():
        assert_same_grid(tmp_path / f"back_ras/{name}.nii.gz", original)
        ours, theirs = (nib.load(tmp_path / f"back_{p}/{name}.nii.gz").get_fdata()
                        for p in ("ras", "res"))
        if name.startswith("seg"):
            # Only ties (two labels' shares equal at a boundary) may fall the other way: the
            # reoriented affine is stored in float32 too, rounded differently (33 of 24960).
            # volume_preserving breaks tied shares in each file's own raster order
            assert np.mean(ours != theirs) < 0.02
        else:
            assert np.abs(ours - theirs).max() <= 1e-3 * np.ptp(theirs) + 1  # rounding to int


@pytest.mark.parametrize("direction", [LSA, OBLIQUE], ids=["coronal_lsa", "oblique"])
def test_label_map_round_trip_on_the_same_size_gives_the_labels_back_exactly(tmp_path, direction):
    labels = blob_labels((28, 24, 20))
    original = write_nifti(tmp_path / "in/mask_seg.nii.gz", labels,
                           affine_from((0.7, 1.1, 2.0), (10.0, -4.0, 7.5), direction))
    resample(tmp_path / "in", tmp_path / "res", list(labels.shape))
    restore_dataset(tmp_path / "res", tmp_path / "back", tmp_path / "res/manifest.tsv",
                    cores=1, progress=False)
    restored = nib.load(tmp_path / "back/mask_seg.nii.gz")
    assert_same_grid(tmp_path / "back/mask_seg.nii.gz", original)
    assert np.array_equal(np.asanyarray(restored.dataobj), labels)
    assert restored.get_data_dtype() == np.uint8


def test_two_fold_down_and_up_keeps_a_smooth_multi_label_map(tmp_path):
    labels = blob_labels((64, 64, 48))
    write_nifti(tmp_path / "in/organs_seg.nii.gz", labels,
                affine_from((1.0, 1.0, 1.5), (-30.0, 20.0, 5.0), OBLIQUE))
    resample(tmp_path / "in", tmp_path / "res", [32, 32, 24])
    restore_dataset(tmp_path / "res", tmp_path / "back", tmp_path / "res/manifest.tsv",
                    cores=1, progress=False)
    restored = np.asanyarray(nib.load(tmp_path / "back/organs_seg.nii.gz").dataobj)
    for value in (1, 2, 3, 4):
        assert dice(restored, labels, value) > 0.9, value


def test_a_network_prediction_takes_the_case_image_grid_type_and_no_scaling(tmp_path):
    """nnU-Net names its output after the case; a CT stored int16 with an intercept."""
    header = nib.Nifti1Header()
    header.set_slope_inter(1.0, -1024.0)
    image = smooth_volume((30, 28, 20), np.int16, low=0, high=2000)
    original = write_nifti(tmp_path / "in/imagesTr/case_001_0000.nii.gz", image,
                           affine_from((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), LPS), header=header)
    write_nifti(tmp_path / "in/imagesTr/case_001_0001.nii.gz", image,
                affine_from((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), LPS))
    write_nifti(tmp_path / "in/labelsTr/case_001.nii.gz", blob_labels((30, 28, 20)),
                affine_from((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), LPS))
    resampling_dataset(tmp_path / "in", tmp_path / "res", [15, 14, 10], recursive=True,
                       cores=2, progress=False)
    # The "network": the resampled label map, written as its own uint8 file named by case.
    resampled = next((tmp_path / "res").rglob("case_001_resampled.nii.gz"))
    network = nib.load(resampled)
    write_nifti(tmp_path / "pred/case_001.nii.gz", np.asanyarray(network.dataobj).astype(np.uint8),
                network.affine)
    restore_dataset(tmp_path / "pred", tmp_path / "back", tmp_path / "res/manifest.tsv",
                    cores=1, progress=False)
    restored = nib.load(tmp_path / "back/case_001_0000.nii.gz")
    assert_same_grid(tmp_path / "back/case_001_0000.nii.gz", original)
    assert restored.get_data_dtype() == np.int16  # the input's type holds labels 0-4
    assert restored.header.get_slope_inter() == (None, None)
    assert set(np.unique(restored.get_fdata())) == {0, 1, 2, 3, 4}
    [row] = read_rows(tmp_path / "back/restore_manifest.tsv")
    assert row["matched_by"] == "case name" and row["kind"] == "label_map"


def test_labels_the_input_type_cannot_hold_keep_the_prediction_type(tmp_path):
    original = write_nifti(tmp_path / "in/mask.nii.gz", blob_labels((20, 20, 20)),
                           affine_from((1.0, 1.0, 1.0)))
    resample(tmp_path / "in", tmp_path / "res", [10, 10, 10])
    labels = blob_labels((10, 10, 10)).astype(np.uint16) * 100  # 400 > uint8
    write_nifti(tmp_path / "pred/mask.nii.gz", labels, nib.load(
        tmp_path / "res/mask_resampled.nii.gz").affine)
    restore_dataset(tmp_path / "pred", tmp_path / "back", tmp_path / "res/manifest.tsv",
                    label_maps=["mask*"], cores=1, progress=False)
    restored = nib.load(tmp_path / "back/mask.nii.gz")
    assert restored.get_data_dtype() == np.uint16
    assert set(np.unique(np.asanyarray(restored.dataobj))) <= {0, 100, 200, 300, 400}
    assert_same_grid(tmp_path / "back/mask.nii.gz", original)


def test_cropped_voxels_come_back_as_background(tmp_path):
    affine = affine_from((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), LSA)
    write_nifti(tmp_path / "in/ct.nii.gz", smooth_volume((24, 24, 24)), affine)
    write_nifti(tmp_path / "in/ct_seg.nii.gz", blob_labels((24, 24, 24)), affine)
    resample(tmp_path / "in", tmp_path / "res", [24, 24, 24])
    # Predictions on the crop i, j, k in 6..17 (a network's patch), of values 1 everywhere.
    crop = affine @ np.array([[1, 0, 0, 6], [0, 1, 0, 6], [0, 0, 1, 6], [0, 0, 0, 1.0]])
    write_nifti(tmp_path / "pred/ct_seg.nii.gz", np.full((12, 12, 12), 3, np.uint8), crop)
    write_nifti(tmp_path / "pred/ct.nii.gz", np.linspace(5, 9, 12**3, dtype=np.float32)
                .reshape(12, 12, 12), crop)
    restore_dataset(tmp_path / "pred", tmp_path / "back", tmp_path / "res/manifest.tsv",
                    label_maps=["*_seg*"], cores=1, progress=False)
    labels = np.asanyarray(nib.load(tmp_path / "back/ct_seg.nii.gz").dataobj)
    image = nib.load(tmp_path / "back/ct.nii.gz").get_fdata()
    inside = np.zeros((24, 24, 24), bool)
    inside[6:18, 6:18, 6:18] = True
    assert np.all(labels[inside] == 3) and np.all(labels[~inside] == 0)
    assert np.all(image[~inside] == np.float32(5)) and image[inside].max() <= 9
    rows = read_rows(tmp_path / "back/restore_manifest.tsv")
    assert {row["outside_voxels"] for row in rows} == {str(24**3 - 12**3)}


def test_probability_maps_with_channels_are_restored_frame_by_frame(tmp_path):
    original = write_nifti(tmp_path / "in/ct.nii.gz", smooth_volume((30, 26, 22)),
                           affine_from((0.9, 0.9, 1.8), (5.0, 5.0, 5.0), OBLIQUE))
    resample(tmp_path / "in", tmp_path / "res", [15, 13, 11])
    grid = nib.load(tmp_path / "res/ct_resampled.nii.gz").affine
    from scipy.ndimage import gaussian_filter

    foreground = gaussian_filter((blob_labels((15, 13, 11)) > 0).astype(np.float32), 1.0)
    probabilities = np.stack([1 - foreground, foreground], axis=-1)
    write_nifti(tmp_path / "pred/ct.nii.gz", probabilities, grid)
    restore_dataset(tmp_path / "pred", tmp_path / "back", tmp_path / "res/manifest.tsv",
                    cores=1, progress=False)
    restored = nib.load(tmp_path / "back/ct.nii.gz")
    assert restored.shape == (30, 26, 22, 2) and restored.get_data_dtype() == np.float32
    values = restored.get_fdata()
    assert values.min() >= 0 and values.max() <= 1
    assert_same_grid(tmp_path / "back/ct.nii.gz", original)


def test_an_uncompressed_input_is_restored_gzipped_with_its_header(tmp_path):
    header = nib.Nifti1Header()
    header.set_intent("label")
    header.set_xyzt_units("mm", "msec")
    original = write_nifti(tmp_path / "in/scan_labels.nii", blob_labels((20, 22, 18)),
                           affine_from((1.5, 1.0, 1.0), (1.0, 2.0, 3.0), OBLIQUE), header=header)
    resample(tmp_path / "in", tmp_path / "res", [10, 11, 9])
    restore_dataset(tmp_path / "res", tmp_path / "back", tmp_path / "res/manifest.tsv",
                    cores=1, progress=False)
    restored = nib.load(tmp_path / "back/scan_labels.nii.gz")
    assert_same_grid(tmp_path / "back/scan_labels.nii.gz", original)
    assert restored.header.get_intent()[0] == "label"
    assert restored.header.get_xyzt_units() == ("mm", "msec")


ROWS = [
    {"input_path": f"in/{name}", "output_path": f"res/{name.split('/')[-1][:-7]}_resampled.nii.gz",
     "status": "ok"}
    for name in ("imagesTr/case_001_0001.nii.gz", "imagesTr/case_001_0000.nii.gz",
                 "labelsTr/case_001.nii.gz", "ct.nii.gz", "a/mri.nii.gz", "b/mri.nii.gz")
] + [{"input_path": "in/pet.nii.gz", "output_path": "res/pet_resampled.nii.gz",
      "status": "failed"}]


def test_predictions_match_by_case_input_or_output_name():
    names = ["case_001.nii.gz", "ct.nii", "ct_resampled.nii.gz", "case_001_0001.nii.gz",
             "mri.nii.gz", "pet.nii.gz", "liver.nii.gz"]
    matches = match_predictions(names, ROWS)
    assert matches["case_001.nii.gz"][0]["input_path"] == "in/imagesTr/case_001_0000.nii.gz"
    assert matches["case_001.nii.gz"][1] == "case name"
    assert matches["ct.nii"] == (ROWS[3], "input name")
    assert matches["ct_resampled.nii.gz"] == (ROWS[3], "output name")
    assert matches["case_001_0001.nii.gz"][0] is ROWS[0]
    assert "several inputs" in matches["mri.nii.gz"]
    assert matches["pet.nii.gz"].startswith("pet.nii.gz: no ok row")  # its row failed
    assert matches["liver.nii.gz"].startswith("liver.nii.gz: ")


def _demo_run(tmp_path):
    """Two inputs resampled; predictions for both and one that matches nothing."""
    write_nifti(tmp_path / "in/ct.nii.gz", smooth_volume((20, 20, 16)),
                affine_from((1.0, 1.0, 2.0), (0, 0, 0), LPS))
    write_nifti(tmp_path / "in/mri.nii.gz", smooth_volume((18, 20, 22), np.float32, seed=3),
                affine_from((1.2, 1.0, 1.0), (4, 2, 0), LSA))
    resample(tmp_path / "in", tmp_path / "res", [10, 10, 8])
    for name in ("ct", "mri"):
        image = nib.load(tmp_path / f"res/{name}_resampled.nii.gz")
        write_nifti(tmp_path / f"pred/{name}.nii.gz", np.asanyarray(image.dataobj), image.affine)
    write_nifti(tmp_path / "pred/liver.nii.gz", np.zeros((4, 4, 4), np.uint8))


def test_an_unmatched_file_is_one_line_and_the_others_are_written(tmp_path):
    _demo_run(tmp_path)
    command = [sys.executable, "-m", "nii_resample", "restore", str(tmp_path / "pred"),
               str(tmp_path / "back"), "--manifest", str(tmp_path / "res/manifest.tsv"),
               "--cores", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: 1 prediction(s) could not be restored:"
    assert lines[1].strip().startswith("liver.nii.gz: no ok row") and len(lines) == 2
    assert (tmp_path / "back/ct.nii.gz").exists() and (tmp_path / "back/mri.nii.gz").exists()
    assert not (tmp_path / "back/liver.nii.gz").exists()
    rows = read_rows(tmp_path / "back/restore_manifest.tsv")
    assert [row["status"] for row in rows] == ["ok", "failed", "ok"]
    with pytest.raises(ResamplingFailed, match="liver.nii.gz"):
        restore_dataset(tmp_path / "pred", tmp_path / "again", tmp_path / "res/manifest.tsv",
                        cores=1, progress=False)


def test_a_prediction_outside_its_original_field_of_view_fails_alone(tmp_path):
    _demo_run(tmp_path)
    (tmp_path / "pred/liver.nii.gz").unlink()
    far = nib.load(tmp_path / "pred/mri.nii.gz")
    write_nifti(tmp_path / "pred/mri.nii.gz", np.asanyarray(far.dataobj),
                far.affine + np.array([[0, 0, 0, 1000.0], [0, 0, 0, 0], [0, 0, 0, 0], [0] * 4]))
    with pytest.raises(ResamplingFailed) as failed:
        restore_dataset(tmp_path / "pred", tmp_path / "back", tmp_path / "res/manifest.tsv",
                        cores=2, progress=False)
    [failure] = failed.value.failures
    assert failure["reason"].startswith("mri.nii.gz: its field of view does not overlap")
    assert "original input: " in failure["reason"] and "\n" not in failure["reason"]
    assert failed.value.written == [str(tmp_path / "back/ct.nii.gz")]
    assert not (tmp_path / "back/mri.nii.gz").exists()


def test_the_command_line_restores_and_reports_usage_errors(tmp_path):
    _demo_run(tmp_path)
    (tmp_path / "pred/liver.nii.gz").unlink()
    base = [sys.executable, "-m", "nii_resample", "restore", str(tmp_path / "pred"),
            str(tmp_path / "back")]
    result = subprocess.run(base + ["--manifest", str(tmp_path / "res/manifest.tsv"),
                                    "--no-progress"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 predictions restored into" in result.stdout
    assert_same_grid(tmp_path / "back/mri.nii.gz", tmp_path / "in/mri.nii.gz")
    missing = subprocess.run(base + ["--manifest", str(tmp_path / "none.tsv")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "none.tsv: no such manifest" in missing.stderr
    no_manifest = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert no_manifest.returncode == 2 and "--manifest" in no_manifest.stderr
    helps = [subprocess.run([sys.executable, "-m", "nii_resample", *args, "--help"],
                            capture_output=True, text=True, timeout=300)
             for args in (["restore"], [])]
    assert all(help.returncode == 0 for help in helps)
    assert "--label-maps" in helps[0].stdout and "restore --help" in helps[1].stdout


def test_the_api_runs_from_a_plain_script(tmp_path):
    _demo_run(tmp_path)
    script = (
        "from nii_resample import restore_dataset, ResamplingFailed\n"
        "try:\n"
        f"    restore_dataset({str(tmp_path / 'pred')!r}, {str(tmp_path / 'back')!r},\n"
        f"                    manifest={str(tmp_path / 'res/manifest.tsv')!r}, cores=2)\n"
        "except ResamplingFailed as failed:\n"
        "    print(len(failed.written), 'written;', failed)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 written; 1 prediction(s) could not be restored")
    assert "Restoring" not in result.stderr  # no progress bar off a terminal


def test_bad_arguments_are_errors_before_any_work(tmp_path):
    _demo_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        restore_dataset(tmp_path / "nothing", tmp_path / "back", tmp_path / "res/manifest.tsv")
    with pytest.raises(ValueError, match="label_maps"):
        restore_dataset(tmp_path / "pred", tmp_path / "back", tmp_path / "res/manifest.tsv",
                        label_maps="*_seg*")
    with pytest.raises(ValueError, match="must not be the predictions"):
        restore_dataset(tmp_path / "pred", tmp_path / "pred", tmp_path / "res/manifest.tsv")
    assert not (tmp_path / "back").exists()


def test_the_readme_examples_run_as_written(tmp_path):
    import re

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Back to the original grid\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", section, re.S)[0].strip().splitlines()
    (tmp_path / "workflow/resources").mkdir(parents=True)
    (tmp_path / "workflow/resources/demo").symlink_to(REPO / "workflow/resources/demo")
    for command in commands:
        result = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True,
                                text=True, timeout=300, executable="/bin/bash",
                                env={"PATH": f"{sys.prefix}/bin:/usr/bin:/bin",
                                     "PYTHONPATH": str(REPO / "src")})
        assert result.returncode == 0, result.stderr
    assert "4 predictions restored into results/restored" in result.stdout
    for name in ("ct_chest", "ct_chest_seg", "mri_head", "pet_brain"):
        assert_same_grid(tmp_path / f"results/restored/{name}.nii.gz",
                         REPO / f"workflow/resources/demo/{name}.nii.gz")
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("4 volumes restored, e.g. results/api_restored/")
