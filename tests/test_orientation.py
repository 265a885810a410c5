"""`orientation`: volumes stored in any orientation come out stored in one (RAS, LPS, ...),
their voxels moved, never interpolated, their field of view and both transforms kept."""

import itertools
import shlex
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.orientations import aff2axcodes, apply_orientation, inv_ornt_aff, ornt_transform
from nibabel.orientations import axcodes2ornt, io_orientation

from support import REPO, affine_from, fov_corners, rotation, run_snakemake, smooth_volume
from support import write_nifti
from nii_resample.api import resampling_dataset
from nii_resample.command import build_parser, job_arguments
from nii_resample.errors import ConfigError
from nii_resample.nifti import read_volume
from nii_resample.orientation import parse_orientation, reorient_header, reorient_volume
from nii_resample.settings import job_options, normalise_config
from nii_resample.volume import resample_volume

# A coronal acquisition stored LSA: x runs to the left, y up, z forwards.
LSA = np.array([[-1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
# Spacings and origins exact in float32: the headers store them so, and geometry is then
# compared to 1e-6 mm without the header's own rounding in the way.
SPACING, ORIGIN = (0.75, 1.5, 2.0), (40.5, -20.25, 12.0)
# Every order of the three axes, each pointing either way: 6 x 8 codes.
ALL_CODES = sorted("".join(letters) for pairs in itertools.permutations(("LR", "AP", "SI"))
                   for letters in itertools.product(*pairs))


def corner_set(affine, shape) -> np.ndarray:
    """The 8 field-of-view corners (mm) in a fixed order whatever the storage order."""
    corners = fov_corners(affine, shape)
    return corners[np.lexsort(np.round(corners, 3).T[::-1])]


def same_fov(first, first_shape, second, second_shape, tolerance=1e-6) -> bool:
    return np.abs(corner_set(first, first_shape) - corner_set(second, second_shape)).max() < tolerance


def stored_as(code, data, ras_affine):
    """`data` on the RAS grid `ras_affine`, stored in orientation `code` (nibabel)."""
    transform = ornt_transform(io_orientation(ras_affine), axcodes2ornt(code))
    return (np.asfortranarray(apply_orientation(data, transform)),
            ras_affine @ inv_ornt_aff(transform, data.shape[:3]))


def test_48_codes_and_how_they_are_written():
    assert len(ALL_CODES) == 48
    assert all(parse_orientation(code) == code for code in ALL_CODES)
    assert parse_orientation("ras") == "RAS" and parse_orientation(" lps ") == "LPS"
    assert parse_orientation("keep") == "keep" and parse_orientation("KEEP") == "keep"


@pytest.mark.parametrize("value", ["RAR", "XYZ", "ras4", "RA", "", "LRS", 3, None, ["R", "A", "S"]])
def test_invalid_codes_are_one_sentence_naming_the_key(value):
    with pytest.raises(ConfigError) as error:
        parse_orientation(value)
    message = str(error.value)
    assert message.startswith("orientation must be keep or three letters") and "\n" not in message
    if value is None:
        return  # in a config, an empty key means its default (as for every key)
    with pytest.raises(ConfigError, match="^orientation must be"):
        normalise_config({"nii_folder": "in", "output_path": "out", "desired_volume": [4, 4, 4],
                          "orientation": value})


def test_invalid_code_stops_the_workflow_the_api_and_the_cli_before_any_job(tmp_path, make_dataset):
    folder, _ = make_dataset(names=("ct",))
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [8, 8, 8], "orientation": "RAR"}
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert "Invalid configuration: orientation must be keep or three letters" in result.output
    assert "got 'RAR'" in result.output and not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="^orientation must be .* got 'XYZ'$"):
        resampling_dataset(folder, tmp_path / "api", (8, 8, 8), orientation="XYZ")
    cli = subprocess.run([sys.executable, "-m", "nii_resample", str(folder), str(tmp_path / "cli"),
                          "8", "8", "8", "--orientation", "ras4"], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert cli.returncode == 2 and cli.stderr.strip().startswith("error: orientation must be")
    assert len(cli.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


@pytest.mark.parametrize("code", ALL_CODES)
def test_every_code_moves_voxels_only_and_keeps_the_field_of_view(code, tmp_path):
    data = smooth_volume((7, 6, 5), seed=1)
    path = write_nifti(tmp_path / "lsa.nii.gz", data, affine_from(SPACING, ORIGIN, LSA))
    stored = read_volume(path)
    volume, text = reorient_volume(stored, code)
    assert "".join(aff2axcodes(volume.affine)) == code
    assert text == ("LSA (unchanged)" if code == "LSA" else f"LSA -> {code}")
    assert same_fov(stored.affine, stored.spatial_shape, volume.affine, volume.spatial_shape)
    assert np.array_equal(np.sort(volume.data, axis=None), np.sort(data, axis=None))
    assert volume.data.flags.f_contiguous
    # Every voxel keeps its value at its own position in mm.
    index = np.array([3, 1, 4, 1.0])
    world = stored.affine @ index
    new_index = np.linalg.solve(volume.affine, world)
    assert np.allclose(new_index, np.round(new_index), atol=1e-9)
    i, j, k = np.round(new_index[:3]).astype(int)
    assert volume.data[i, j, k] == data[3, 1, 4]
    # Header only (the planner's view) is the same, bit for bit.
    header, transform, _ = reorient_header(stored.header, code)
    assert np.array_equal(header.get_best_affine(), volume.affine)
    assert header.get_data_shape() == volume.data.shape


def test_coronal_lsa_to_ras_both_transforms_each_by_its_own_and_codes_kept(tmp_path):
    data = smooth_volume((14, 10, 6), seed=2)
    sform = affine_from(SPACING, ORIGIN, LSA)
    # A registered sform (code 2) over a scanner qform (code 1) 3 mm and 5 degrees away.
    qform = affine_from(SPACING, (43.5, -20.25, 10.0), rotation(5, 2) @ LSA)
    header = nib.Nifti1Header()
    header.set_dim_info(freq=0, phase=1, slice=2)
    path = write_nifti(tmp_path / "cor.nii.gz", data, sform, sform_code=2, header=header)
    image = nib.load(path)
    image.header.set_qform(qform, code=1)
    nib.save(image, path)
    stored = read_volume(path)

    out = tmp_path / "cor_resampled.nii.gz"
    row = resample_volume(path, out, (14, 6, 10), orientation="RAS", interpolation="nearest")
    assert row["orientation"] == "LSA -> RAS"
    # Before and after compare axis by axis: original_* are the input's once reordered.
    assert row["original_size"] == "14x6x10" and row["new_size"] == "14x6x10"
    assert row["original_spacing"] == row["new_spacing"] == "0.75,2.0,1.5"
    assert row["header_geometry"].startswith("sform(2) + qform(1), differ by up to")

    result = nib.load(out)
    output = np.asanyarray(result.dataobj)
    # Exactly the input transposed and flipped (L->R on x, S and A swapped): nothing interpolated.
    assert np.array_equal(output, np.transpose(data[::-1], (0, 2, 1)))
    header = result.header
    assert int(header["sform_code"]) == 2 and int(header["qform_code"]) == 1
    assert "".join(aff2axcodes(header.get_sform())) == "RAS"
    assert "".join(aff2axcodes(header.get_qform())) == "RAS"
    # Against the input as stored (its float32 quaternion, not the float64 matrix we made).
    assert same_fov(header.get_sform(), output.shape, stored.header.get_sform(), data.shape)
    assert same_fov(header.get_qform(), output.shape, stored.header.get_qform(), data.shape)
    assert not same_fov(header.get_qform(), output.shape, header.get_sform(), output.shape, 1.0)
    assert np.allclose(header.get_zooms(), (SPACING[0], SPACING[2], SPACING[1]), atol=0)
    assert header.get_dim_info() == (0, 2, 1)  # the slice axis moved with its voxels
    assert header["pixdim"][0] in (1, -1)  # qfac: what the new qform's handedness needs


def test_lps_and_ras_copies_of_one_scan_give_identical_outputs(tmp_path):
    data = smooth_volume((26, 22, 12), seed=3)
    ras_affine = affine_from(SPACING, ORIGIN)
    made = {}
    for code in ("RAS", "LPS", "PIL"):
        stored, affine = stored_as(code, data, ras_affine)
        made[code] = write_nifti(tmp_path / "in" / f"{code}.nii.gz", stored, affine)
        assert "".join(aff2axcodes(nib.load(made[code]).affine)) == code
    rows, outputs = {}, {}
    for code, path in made.items():
        outputs[code] = tmp_path / f"{code}_resampled.nii.gz"
        rows[code] = resample_volume(path, outputs[code], (16, 18, 9), orientation="RAS")
    reference = nib.load(outputs["RAS"])
    for code in ("LPS", "PIL"):
        other = nib.load(outputs[code])
        assert other.shape == reference.shape == (16, 18, 9)
        assert np.array_equal(np.asanyarray(other.dataobj), np.asanyarray(reference.dataobj))
        assert np.abs(other.header.get_sform() - reference.header.get_sform()).max() < 1e-6
        assert np.abs(other.header.get_qform() - reference.header.get_qform()).max() < 1e-6
        assert rows[code]["orientation"] == f"{code} -> RAS"
    assert rows["RAS"]["orientation"] == "RAS (unchanged)"
    # desired_spacing names the axes of the new orientation too.
    spaced = {code: resample_volume(made[code], tmp_path / f"{code}_mm.nii.gz",
                                    desired_spacing=(1.5, 1.0, 4.0), orientation="RAS")
              for code in ("RAS", "PIL")}
    assert spaced["PIL"]["new_size"] == spaced["RAS"]["new_size"] == "13x33x6"
    assert np.array_equal(nib.load(tmp_path / "RAS_mm.nii.gz").get_fdata(),
                          nib.load(tmp_path / "PIL_mm.nii.gz").get_fdata())


def test_oblique_volume_goes_to_the_closest_orientation(tmp_path):
    direction = rotation(20, 0) @ LSA  # 20 degrees off LSA
    affine = affine_from(SPACING, ORIGIN, direction)
    data = smooth_volume((9, 8, 7), seed=4)
    path = write_nifti(tmp_path / "oblique.nii.gz", data, affine)
    stored = read_volume(path)
    volume, text = reorient_volume(stored, "RAS")
    assert text == "LSA -> RAS" and "".join(aff2axcodes(volume.affine)) == "RAS"
    assert same_fov(stored.affine, stored.spatial_shape, volume.affine, volume.spatial_shape)
    # Still oblique: the same 20 degrees, axes only reordered and flipped.
    columns = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
    assert np.allclose(np.abs(columns), np.abs(direction[:, [0, 2, 1]]), atol=1e-6)
    row = resample_volume(path, tmp_path / "out.nii.gz", (9, 7, 8), orientation="RAS",
                          interpolation="nearest")
    assert row["orientation"] == "LSA -> RAS"
    assert np.array_equal(np.asanyarray(nib.load(tmp_path / "out.nii.gz").dataobj), volume.data)


def test_series_reorients_its_spatial_axes_and_keeps_the_fourth(tmp_path):
    frames = np.stack([smooth_volume((8, 7, 5), seed=s) for s in range(3)], axis=-1)
    path = write_nifti(tmp_path / "series.nii.gz", frames, affine_from(SPACING, ORIGIN, LSA))
    image = nib.load(path)
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 2.5  # TR
    nib.save(image, path)
    out = tmp_path / "series_resampled.nii.gz"
    row = resample_volume(path, out, (8, 5, 7), orientation="RAS", interpolation="nearest")
    result = nib.load(out)
    assert row["orientation"] == "LSA -> RAS" and result.shape == (8, 5, 7, 3)
    for t in range(3):
        assert np.array_equal(np.asanyarray(result.dataobj)[..., t],
                              np.transpose(frames[::-1, :, :, t], (0, 2, 1)))
    assert result.header["pixdim"][4] == np.float32(2.5)
    assert same_fov(result.affine, result.shape, image.affine, frames.shape)


def test_keep_is_today_and_an_unchanged_code_writes_the_same_bytes(tmp_path):
    data = smooth_volume((12, 10, 8), seed=5)
    path = write_nifti(tmp_path / "lsa.nii.gz", data, affine_from(SPACING, ORIGIN, LSA))
    kept = resample_volume(path, tmp_path / "kept.nii.gz", (9, 9, 9))
    same = resample_volume(path, tmp_path / "same.nii.gz", (9, 9, 9), orientation="LSA")
    assert kept["orientation"] == "LSA (kept)" and same["orientation"] == "LSA (unchanged)"
    assert (tmp_path / "kept.nii.gz").read_bytes() == (tmp_path / "same.nii.gz").read_bytes()
    stored = read_volume(path)
    assert reorient_header(stored.header, "keep") == (stored.header, None, "LSA (kept)")
    # No orientation codes: nothing known to reorient from; kept as stored, and said so.
    bare = tmp_path / "bare.nii.gz"
    nib.save(nib.Nifti1Image(data, None), bare)  # no affine: both codes 0, pixdim only
    row = resample_volume(bare, tmp_path / "bare_out.nii.gz", (9, 9, 9), orientation="RAS")
    assert row["orientation"] == "no orientation codes (kept)"


def test_keep_leaves_the_job_command_line_as_it_was():
    base = {"nii_folder": "in", "output_path": "out", "desired_volume": [7, 8, 9]}
    before = job_arguments(job_options(normalise_config(base), "ct.nii.gz"))
    keep = job_arguments(job_options(normalise_config({**base, "orientation": "keep"}), "ct.nii.gz"))
    assert keep == before and "orientation" not in before
    ras = job_options(normalise_config({**base, "orientation": "ras"}), "ct.nii.gz")
    words = shlex.split(job_arguments(ras))
    assert words[-2:] == ["--orientation", "RAS"]
    assert vars(build_parser().parse_args(["a", "b", *words]))["orientation"] == "RAS"


def _resampled_jobs(result):
    return sorted(line.split("prefix=", 1)[1].strip() for line in result.output.splitlines()
                  if "wildcards: prefix=" in line)


def test_workflow_reorients_records_it_and_reruns_only_when_it_changes(tmp_path):
    data = smooth_volume((20, 16, 10), seed=6)
    ras_affine = affine_from(SPACING, ORIGIN)
    folder = tmp_path / "in"
    for code in ("RAS", "LPS", "LSA"):
        stored, affine = stored_as(code, data, ras_affine)
        write_nifti(folder / f"{code.lower()}.nii.gz", stored, affine)
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output),
              "desired_volume": [12, 10, 8], "orientation": "RAS"}
    first = run_snakemake(tmp_path / "work", config)
    assert _resampled_jobs(first) == ["lps", "lsa", "ras"]
    manifest = pd.read_csv(output / "manifest.tsv", sep="\t", dtype=str).set_index("input_path")
    assert dict(zip(manifest.index.map(lambda p: p.rsplit("/", 1)[1]), manifest["orientation"])) == {
        "lps.nii.gz": "LPS -> RAS", "lsa.nii.gz": "LSA -> RAS", "ras.nii.gz": "RAS (unchanged)"}
    results = {name: nib.load(output / name / f"{name}_resampled.nii.gz") for name in ("ras", "lps", "lsa")}
    for name, image in results.items():
        assert image.shape == (12, 10, 8) and "".join(aff2axcodes(image.affine)) == "RAS"
        assert np.abs(image.affine - results["ras"].affine).max() < 1e-6
        assert np.array_equal(np.asanyarray(image.dataobj), np.asanyarray(results["ras"].dataobj))

    # A deleted record is rebuilt with the same orientation column.
    (output / "records" / "lsa.tsv").unlink()
    run_snakemake(tmp_path / "work", config, "--forcerun", "manifest")
    rebuilt = pd.read_csv(output / "manifest.tsv", sep="\t", dtype=str)
    assert pd.read_csv(output / "records" / "lsa.tsv", sep="\t", dtype=str)["orientation"][0] == "LSA -> RAS"
    kept = [c for c in manifest.columns if c not in ("reason", "seconds")]
    pd.testing.assert_frame_equal(manifest.reset_index()[["input_path"] + kept].sort_values("input_path", ignore_index=True),
                                  rebuilt[["input_path"] + kept].sort_values("input_path", ignore_index=True))

    again = run_snakemake(tmp_path / "work", config)
    assert "Nothing to be done" in again.output and _resampled_jobs(again) == []
    changed = run_snakemake(tmp_path / "work", {**config, "orientation": "LPS"})
    assert _resampled_jobs(changed) == ["lps", "lsa", "ras"]
    assert "".join(aff2axcodes(nib.load(output / "ras" / "ras_resampled.nii.gz").affine)) == "LPS"
    back = run_snakemake(tmp_path / "work", {**config, "orientation": "keep"})
    assert _resampled_jobs(back) == ["lps", "lsa", "ras"]
    manifest = pd.read_csv(output / "manifest.tsv", sep="\t", dtype=str)
    assert sorted(manifest["orientation"]) == ["LPS (kept)", "LSA (kept)", "RAS (kept)"]
    # keep written out or left to its default: the same command lines, nothing to do.
    default = {key: value for key, value in config.items() if key != "orientation"}
    assert "Nothing to be done" in run_snakemake(tmp_path / "work", default).output


def test_the_job_command_line_refuses_an_invalid_code_with_the_same_sentence(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["a.nii.gz", "b.nii.gz", "4", "4", "4", "--orientation", "XYZ"])
    assert "--orientation: orientation must be keep or three letters" in capsys.readouterr().err


def test_the_grid_planned_from_the_header_alone_is_the_jobs(tmp_path):
    """The workflow sizes a desired_spacing job from the header alone (memory request):
    the reoriented header must give exactly the job's grid."""
    from nii_resample.grids import target_grid
    from nii_resample.nifti import read_header

    data = smooth_volume((21, 9, 14), seed=7)
    path = write_nifti(tmp_path / "lsa.nii.gz", data, affine_from((0.7, 1.3, 2.9), ORIGIN, LSA))
    header = reorient_header(read_header(path), "RAS")[0]
    volume, _ = reorient_volume(read_volume(path), "RAS")
    assert np.array_equal(header.get_best_affine(), volume.affine)
    planned = target_grid(header.get_data_shape(), header.get_zooms(), None, (1.0, 1.0, 1.0))[0]
    row = resample_volume(path, tmp_path / "out.nii.gz", desired_spacing=(1.0, 1.0, 1.0),
                          orientation="RAS")
    assert row["new_size"] == "x".join(map(str, planned)) == "15x41x12"


def test_api_with_several_grids_reorients_each(tmp_path):
    data = smooth_volume((20, 16, 10), seed=8)
    ras_affine = affine_from(SPACING, ORIGIN)
    for code in ("LPS", "LSA"):
        stored, affine = stored_as(code, data, ras_affine)
        write_nifti(tmp_path / "in" / f"{code.lower()}.nii.gz", stored, affine)
    grids = {"low": {"desired_volume": (10, 8, 5)}, "iso": {"desired_spacing": (2.0, 2.0, 2.0)}}
    written = resampling_dataset(tmp_path / "in", tmp_path / "out", grids=grids,
                                 orientation="ras", cores=2, progress=False)
    assert len(written) == 4
    for grid in grids:
        lps, lsa = (nib.load(tmp_path / "out" / grid / name / f"{name}_resampled.nii.gz")
                    for name in ("lps", "lsa"))
        assert "".join(aff2axcodes(lps.affine)) == "RAS" and lps.shape == lsa.shape
        assert np.array_equal(np.asanyarray(lps.dataobj), np.asanyarray(lsa.dataobj))
        assert np.abs(lps.affine - lsa.affine).max() < 1e-6
    manifest = pd.read_csv(tmp_path / "out" / "manifest.tsv", sep="\t", dtype=str)
    assert sorted(manifest["orientation"]) == ["LPS -> RAS"] * 2 + ["LSA -> RAS"] * 2
