"""QC pictures: readable PNGs in patient orientation and millimetres, and the HTML report."""

import base64
import re
import struct

import nibabel as nib
import numpy as np
import pytest

from support import REPO, affine_from, run_snakemake, smooth_volume, write_nifti
from nii_resample.qc_figures import draw_qc_figure, manifest_table, overview_figure, qc_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) of a PNG file, after checking that it is one and that it decodes."""
    from matplotlib.image import imread

    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE and raw[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", raw[16:24])
    pixels = imread(path)  # decodes the whole image: a truncated file fails here
    assert pixels.shape[:2] == (height, width)
    assert pixels[..., :3].std() > 0.05, f"{path} is blank"
    return width, height


def grid_pair(folder, data, spacing, new_shape, origin=(-20.0, 10.0, 5.0), direction=None):
    """An input volume and a stand-in for its resampled version: the same field of view (outer
    corners) on `new_shape` voxels, filled by nearest-neighbour sampling."""
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    old_shape = np.array(data.shape)
    new_spacing = np.asarray(spacing) * old_shape / np.asarray(new_shape)
    new_origin = np.asarray(origin) + direction @ ((new_spacing - np.asarray(spacing)) / 2)
    index = [np.minimum((np.arange(m) + 0.5) * n / m, n - 1).astype(int)
             for n, m in zip(old_shape, new_shape)]
    resampled = data[np.ix_(*index)]
    before = write_nifti(folder / "in.nii.gz", data, affine_from(spacing, origin, direction))
    after = write_nifti(folder / "out.nii.gz", resampled,
                        affine_from(new_spacing, new_origin, direction))
    return before, after


def as_lps(path, target):
    """The same image with its first two voxel axes reversed (LPS voxel order)."""
    image = nib.load(path)
    n_i, n_j = image.shape[:2]
    reverse = np.array([[-1, 0, 0, n_i - 1], [0, -1, 0, n_j - 1], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    data = np.asanyarray(image.dataobj)[::-1, ::-1, :].copy()
    return write_nifti(target, data, image.affine @ reverse)


def draw(figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure).draw()
    return figure.axes


def span(limits):
    return abs(limits[1] - limits[0])


def test_panels_are_in_millimetres_with_the_physical_aspect(tmp_path):
    # 40 x 30 x 10 voxels of 1 x 1 x 4 mm: a 40 x 30 x 40 mm box, flat in voxels.
    before, after = grid_pair(tmp_path, smooth_volume((40, 30, 10), np.int16), (1.0, 1.0, 4.0),
                              (20, 15, 20))
    axes = draw(draw_qc_figure(before, after))
    # axial: R-L x A-P, coronal: R-L x S-I, sagittal: A-P x S-I, in mm, before and after.
    expected = [(40, 30), (40, 40), (30, 40)]
    for row in (0, 1):
        for column, (width_mm, height_mm) in enumerate(expected):
            ax = axes[3 * row + column]
            assert span(ax.get_xlim()) == pytest.approx(width_mm, abs=1e-3)
            assert span(ax.get_ylim()) == pytest.approx(height_mm, abs=1e-3)
            box = ax.get_window_extent()
            assert box.width / box.height == pytest.approx(width_mm / height_mm, rel=0.02)
    # Both rows cover the same box (the field of view is kept), to float32 rounding.
    for column in range(3):
        np.testing.assert_allclose(axes[column].get_xlim(), axes[3 + column].get_xlim(), atol=1e-3)
        np.testing.assert_allclose(axes[column].get_ylim(), axes[3 + column].get_ylim(), atol=1e-3)
    # One grey window for both rows.
    assert axes[0].images[0].get_clim() == axes[3].images[0].get_clim()


def test_orientation_is_anatomical_whatever_the_voxel_order(tmp_path):
    data = np.zeros((20, 16, 12), np.int16)
    data[-3:, -3:, :] = 1000  # the patient's right-anterior column (RAS voxel order)
    ras_in, ras_out = grid_pair(tmp_path / "ras", data, (1.0, 1.0, 2.0), (10, 8, 6))
    # The same anatomy stored LPS (as DICOM/ITK write it): the first two axes reversed.
    lps_in, lps_out = (as_lps(path, tmp_path / "lps" / path.name) for path in (ras_in, ras_out))
    ras_axes = draw(draw_qc_figure(ras_in, ras_out))
    lps_axes = draw(draw_qc_figure(lps_in, lps_out))
    for ras, lps in zip(ras_axes[:6], lps_axes[:6]):
        np.testing.assert_array_equal(ras.images[0].get_array(), lps.images[0].get_array())
        np.testing.assert_allclose(ras.get_xlim(), lps.get_xlim(), atol=1e-3)
    # Radiological axial view: right on the left of the picture, anterior at the top.
    axial = ras_axes[0]
    left, right = axial.get_xlim()
    assert left > right  # +R (patient's right) is drawn on the left
    picture = np.asarray(axial.images[0].get_array())  # origin="lower": last row = top
    assert picture[-1, -1] == 1000 and picture[0, 0] == 0
    neurological = draw(draw_qc_figure(ras_in, ras_out, convention="neurological"))[0]
    assert neurological.get_xlim()[0] < neurological.get_xlim()[1]


def test_label_maps_keep_their_colours(tmp_path):
    labels = np.zeros((24, 20, 8), np.uint8)
    labels[4:12, 4:16, 2:6] = 1
    labels[12:20, 6:14, 2:6] = 7
    before, after = grid_pair(tmp_path, labels, (1.0, 1.2, 3.0), (12, 10, 12))
    axes = draw(draw_qc_figure(before, after, label_map=True))
    first, last = axes[0].images[0], axes[3].images[0]
    assert first.cmap is last.cmap and first.cmap.N == 3  # labels 0, 1, 7
    assert first.norm is last.norm
    assert first.get_interpolation() == "nearest"
    assert first.cmap(0)[:3] == (0.0, 0.0, 0.0)  # background black


def test_qc_figure_overview_and_table_files(tmp_path):
    before, after = grid_pair(tmp_path, smooth_volume((30, 24, 12), np.int16), (0.8, 0.9, 3.0),
                              (16, 16, 16))
    png = qc_figure(before, after, tmp_path / "qc" / "in.png", method="bspline")
    width, height = png_size(png)
    assert 1000 <= width <= 2000 and 500 <= height <= 1500
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(
        "input_path\toutput_path\tstatus\treason\tkind\toriginal_size\toriginal_spacing\t"
        "new_size\tnew_spacing\tmin_before\n"
        f"{before}\t{after}\tok\t\timage\t30x24x12\t0.8,0.9,3.0\t16x16x16\t1.5,1.35,2.25\t-1000\n"
    )
    width, height = png_size(overview_figure(manifest, tmp_path / "overview.png"))
    assert width >= 1000 and height >= 400
    page = manifest_table(manifest, tmp_path / "manifest.html").read_text()
    assert "<table" in page and "0.8, 0.9, 3" in page and "Download manifest.tsv" in page
    assert base64.b64encode(manifest.read_bytes()).decode() in page


def test_workflow_writes_qc_pictures_and_a_report(tmp_path, make_dataset):
    folder, _ = make_dataset(names=("ct", "mri"))
    output = tmp_path / "out"
    config = {"nii_folder": str(folder), "output_path": str(output), "desired_volume": [16, 16, 12],
              "qc": True}
    work = tmp_path / "work"
    run_snakemake(work, config)
    pictures = [output / "qc" / "ct.png", output / "qc" / "mri.png",
                output / "qc" / "dataset" / "overview.png"]
    for picture in pictures:
        width, height = png_size(picture)
        assert 1000 <= width <= 2000 and 400 <= height <= 2500, (picture, width, height)
    table = output / "qc" / "dataset" / "manifest.html"
    assert "ct.nii.gz" in table.read_text()
    assert (output / "logs" / "qc_figure" / "ct.log").read_text().startswith("wrote ")

    report = tmp_path / "report.html"
    run_snakemake(work, config, "--report", str(report))
    page = report.read_text()
    # The report embeds each result as base64: the very files must be inside.
    for result in pictures + [table]:
        assert base64.b64encode(result.read_bytes()).decode() in page, result.name
    for text in ("Volumes", "Dataset", "qc_figure", "radiological convention"):
        assert text in page, text


def test_report_refuses_qc_pictures_older_than_their_volumes(tmp_path, make_dataset):
    # The sequence of issue 12: a run with QC, a run at another size without QC, a report.
    folder, _ = make_dataset(names=("ct", "mri"))
    output, work, report = tmp_path / "out", tmp_path / "work", tmp_path / "report.html"
    config = {"nii_folder": str(folder), "output_path": str(output)}
    run_snakemake(work, config, "--config", "desired_volume=[64,64,48]", "qc=true")
    run_snakemake(work, config, "--config", "desired_volume=[32,32,24]")
    refused = run_snakemake(work, config, "--config", "desired_volume=[32,32,24]", "qc=true",
                            "--report", str(report), check=False)
    assert refused.returncode != 0, refused.output
    assert not report.exists()
    [line] = [line.strip() for line in refused.output.splitlines() if "No report:" in line]
    assert line.startswith("No report: the QC pictures of 2 of 2 volumes are older than their "
                           "volumes (or missing); "), line
    assert line.endswith("; run `snakemake --cores N` with this report's --config/--configfile "
                         "options (qc=true included) first, then the report."), line
    # the README shows that very sentence (for 3 volumes)
    readme = (REPO / "README.md").read_text().split("### QC pictures and the report\n")[1]
    assert line.replace("2 of 2", "3 of 3") in re.findall(r"```\n(No report: .*)\n```", readme)
    assert "Report created" not in refused.output

    # The suggested command brings them up to date; then the report shows the 32x32x24 run.
    run_snakemake(work, config, "--config", "desired_volume=[32,32,24]", "qc=true")
    created = run_snakemake(work, config, "--config", "desired_volume=[32,32,24]", "qc=true",
                            "--report", str(report))
    assert "Report created" in created.output
    page = report.read_text()
    for result in (output / "qc" / "ct.png", output / "qc" / "dataset" / "manifest.html"):
        assert base64.b64encode(result.read_bytes()).decode() in page, result.name
    resampled = nib.load(output / "ct" / "ct_resampled.nii.gz")
    assert resampled.shape == (32, 32, 24)
    assert "32x32x24" in (output / "qc" / "dataset" / "manifest.html").read_text()


def test_report_refuses_a_manifest_of_another_grid(tmp_path, make_dataset):
    # desired_volume changed but nothing was run since: every file is consistent, but the
    # pictures show the old grid under a caption naming the new one.
    folder, _ = make_dataset(names=("ct",))
    output, work, report = tmp_path / "out", tmp_path / "work", tmp_path / "report.html"
    config = {"nii_folder": str(folder), "output_path": str(output), "qc": True}
    run_snakemake(work, {**config, "desired_volume": [16, 16, 12]})
    refused = run_snakemake(work, {**config, "desired_volume": [8, 8, 6]}, "--report",
                            str(report), check=False)
    assert refused.returncode != 0 and not report.exists(), refused.output
    assert "No report: 1 volumes were resampled to 16x16x12, not 8x8x6; run" in refused.output
