"""Quality-control pictures: one volume before and after resampling, and the whole dataset.

Pure functions (no Snakemake): `qc_figure` draws the middle axial, coronal and sagittal
slices of a volume and of its resampled version, `overview_figure` plots the spacings
before/after and a size table from the manifest, `manifest_table` turns the manifest into an
HTML table for the Snakemake report.

Slices are shown in patient orientation, whatever the voxel order on disk: each volume is
reoriented to the closest RAS+ voxel axes (nibabel's `as_closest_canonical`), and drawn in
millimetres, so the physical aspect ratio is kept whatever the voxel spacing. The default is
the radiological convention (patient's right on the image's left, as CT/MRI consoles show
it); `convention="neurological"` puts the patient's right on the right.

matplotlib, numpy and nibabel are imported inside the functions: the resample jobs never pay
for matplotlib, and the Snakefile (which reads report_labels and outdated_report_inputs from
here) never pays for any of them.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .files import atomic_write_bytes, modified_ns
from .formatting import decimals_text, number_text, numbers_text, size_text
from .records import read_rows, read_table

if TYPE_CHECKING:
    import numpy as np

CONVENTIONS = ("radiological", "neurological")
# CT window when the volume holds Hounsfield units: air, lungs, fat, soft tissue and bone
# all stay distinguishable (level -200 HU, width 1600 HU).
CT_WINDOW = (-1000.0, 600.0)
# Percentiles of the input's voxels that set the window of any other image.
WINDOW_PERCENTILES = (1.0, 99.0)
# Voxels sampled (at most) to compute the percentiles: fast even on 512x512x1000 volumes.
WINDOW_SAMPLES = 2_000_000
# Label maps with at most this many labels get a legend.
MAX_LEGEND_LABELS = 16
# The overview's table lists at most this many volumes (manifest.tsv has them all).
MAX_TABLE_ROWS = 40
DPI = 100
TIMES = " \u00d7 "  # between the numbers of a size or spacing in the pictures


# --------------------------------------------------------------------------- loading


class _Oriented:
    """A volume on its closest RAS+ voxel axes: data, spacing, and the box it covers in mm."""

    def __init__(self, path):
        import nibabel as nib
        import numpy as np

        image = nib.load(os.fspath(path))
        self.path = Path(path)
        self.file_shape = tuple(int(n) for n in image.shape)
        self.file_spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
        self.frames = int(np.prod(self.file_shape[3:], dtype=np.int64)) if image.ndim > 3 else 1
        if image.ndim > 3:  # a series: show its first frame
            image = image.slicer[(slice(None),) * 3 + (0,) * (image.ndim - 3)]
        image = nib.as_closest_canonical(image)
        self.data = np.asarray(image.get_fdata(dtype=np.float32, caching="unchanged"))
        affine = image.affine
        self.shape = self.data.shape
        self.spacing = np.linalg.norm(affine[:3, :3], axis=0)
        # The outer corner of the first voxel, in mm along R, A and S; the far edge is one
        # field of view away. Resampling keeps the corners, so before and after share a box.
        corner = (affine @ [-0.5, -0.5, -0.5, 1.0])[:3]
        self.low = corner
        self.high = corner + np.asarray(self.shape) * self.spacing

    def size_text(self) -> str:
        return size_text(self.file_shape[:3], TIMES)

    def spacing_text(self) -> str:
        return numbers_text(self.file_spacing, 3, TIMES) + " mm"


def _middle_indices(reference: _Oriented, other: _Oriented) -> tuple[list[int], list[int]]:
    """Middle slice of `reference` on each axis, and the slice of `other` through the same
    physical point (the centre of the reference slice), so both pictures show one plane."""
    ref, oth = [], []
    for axis in range(3):
        n_ref, n_oth = reference.shape[axis], other.shape[axis]
        index = n_ref // 2
        fraction = (index + 0.5) / n_ref
        ref.append(index)
        oth.append(min(n_oth - 1, int(fraction * n_oth)))
    return ref, oth


# --------------------------------------------------------------------------- windows


def _sample(data: np.ndarray) -> np.ndarray:
    import numpy as np

    step = max(1, int(np.ceil((data.size / WINDOW_SAMPLES) ** (1 / 3))))
    sample = data[::step, ::step, ::step].ravel()
    return sample[np.isfinite(sample)]


def _looks_like_ct(sample: np.ndarray) -> bool:
    """Hounsfield units: whole numbers, air near -1000 and tissue or bone above 0."""
    import numpy as np

    if sample.size == 0:
        return False
    low, high = float(sample.min()), float(sample.max())
    whole = bool(np.all(sample[: 10_000] == np.round(sample[: 10_000])))
    return whole and -1100.0 <= low <= -900.0 and high >= 200.0


def intensity_window(data: np.ndarray) -> tuple[float, float, str]:
    """(low, high, description) of the grey-level window for an image volume."""
    import numpy as np

    sample = _sample(data)
    if sample.size == 0:
        return 0.0, 1.0, "no finite voxel"
    if _looks_like_ct(sample):
        low, high = CT_WINDOW
        return low, high, f"CT window [{low:g}, {high:g}] HU"
    low, high = (float(v) for v in np.percentile(sample, WINDOW_PERCENTILES))
    if not high > low:
        low, high = float(sample.min()), float(sample.max())
    if not high > low:
        high = low + 1.0
    # Two significant digits of the window's width: no "2.57e-07" for a zero background.
    decimals = max(0, 2 - int(np.floor(np.log10(high - low))))
    low, high = round(low, decimals), round(high, decimals)
    text = f"window [{low:.{decimals}f}, {high:.{decimals}f}]"
    return low, high, f"{text} (1st-99th percentile of the input)"


def _label_colours(values: np.ndarray):
    """One colour per label value (0 = black background), identical before and after."""
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors
    palette = palette[0::2] + palette[1::2]  # the saturated colours first
    colours = []
    others = 0
    for value in values:
        if value == 0:
            colours.append((0.0, 0.0, 0.0))
        else:
            colours.append(palette[others % len(palette)])
            others += 1
    return colours


# --------------------------------------------------------------------------- per volume

# For each view: the fixed axis (R=0, A=1, S=2), the horizontal and vertical axes, the letters
# at the left/right/bottom/top edges in radiological convention.
_VIEWS = (
    ("axial", 2, 0, 1, ("R", "L", "P", "A")),
    ("coronal", 1, 0, 2, ("R", "L", "I", "S")),
    ("sagittal", 0, 1, 2, ("A", "P", "I", "S")),
)


def _slice(volume: _Oriented, fixed: int, index: int) -> np.ndarray:
    taken = volume.data[(slice(None),) * fixed + (index,)]  # remaining axes in R, A, S order
    return taken.T  # rows: the vertical axis, columns: the horizontal one


def _draw_panel(ax, volume, view, index, convention, image_kwargs):
    from matplotlib import patheffects

    name, fixed, horizontal, vertical, letters = view
    extent = (
        volume.low[horizontal],
        volume.high[horizontal],
        volume.low[vertical],
        volume.high[vertical],
    )
    shown = ax.imshow(
        _slice(volume, fixed, index), origin="lower", extent=extent, aspect="equal", **image_kwargs
    )
    left, right, bottom, top = letters
    # Radiological: the patient's right (+R) and anterior (+A) on the image's left.
    flip = horizontal == 1 or convention == "radiological"
    if flip:
        ax.set_xlim(extent[1], extent[0])
    else:
        ax.set_xlim(extent[0], extent[1])
        left, right = right, left
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    for text, x, y, ha, va in (
        (left, 0.015, 0.5, "left", "center"),
        (right, 0.985, 0.5, "right", "center"),
        (bottom, 0.5, 0.015, "center", "bottom"),
        (top, 0.5, 0.985, "center", "top"),
    ):
        ax.text(
            x, y, text, transform=ax.transAxes, ha=ha, va=va, color="yellow",
            fontsize=10, fontweight="bold", path_effects=outline,
        )
    position = (volume.low[fixed] + (index + 0.5) * volume.spacing[fixed])
    axis_letter = "RAS"[fixed]
    ax.set_title(
        f"{name}, slice {index + 1}/{volume.shape[fixed]} ({axis_letter} {position:+.1f} mm)",
        fontsize=9,
    )
    return shown


def qc_figure(
    input_path,
    output_path,
    png_path,
    *,
    label_map: bool = False,
    method: str = "",
    convention: str = "radiological",
) -> Path:
    """Write a PNG: middle axial, coronal and sagittal slices of `input_path` (top row) and
    of its resampled version `output_path` (bottom row), through the same physical points,
    in millimetres, with one grey window (or one label colour table) for both rows."""
    figure = draw_qc_figure(
        input_path, output_path, label_map=label_map, method=method, convention=convention
    )
    return _save(figure, png_path)


def draw_qc_figure(
    input_path,
    output_path,
    *,
    label_map: bool = False,
    method: str = "",
    convention: str = "radiological",
):
    """The matplotlib Figure of `qc_figure`. Axes 0-2: axial, coronal, sagittal before;
    3-5: after; their data limits are millimetres in RAS+ (x reversed where the convention
    puts the patient's right or anterior on the left)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    before, after = _Oriented(input_path), _Oriented(output_path)
    indices_after, indices_before = _middle_indices(after, before)

    if label_map:
        values = np.union1d(
            np.unique(before.data[np.isfinite(before.data)]),
            np.unique(after.data[np.isfinite(after.data)]),
        )
        colours = _label_colours(values)

        def as_codes(volume):  # label value -> its colour's index
            volume.data = np.searchsorted(values, volume.data).astype(np.int32)

        as_codes(before)
        as_codes(after)
        image_kwargs = {
            "cmap": ListedColormap(colours),
            "norm": BoundaryNorm(np.arange(len(values) + 1) - 0.5, len(values)),
            "interpolation": "nearest",
        }
        shading = f"label map, {len(values)} values, same colours before and after"
    else:
        low, high, shading = intensity_window(before.data)
        image_kwargs = {"cmap": "gray", "vmin": low, "vmax": high, "interpolation": "nearest"}
        shading += ", same window before and after"

    # Panel widths in mm: axial and coronal span R-L, sagittal spans A-P.
    extent = after.high - after.low
    widths = [extent[0], extent[0], extent[1]]
    tallest = max(extent[1], extent[2])
    # Sizes in inches: the panels share one mm-to-inch scale, so they line up.
    fig_width, left, right, wspace = 13.0, 1.1, 1.3, 0.06
    panels_width = (fig_width - left - right) / (1 + wspace * 2 / 3)
    row_height = float(np.clip(panels_width * tallest / sum(widths), 2.4, 5.5))
    header, gap, footer = 1.2, 0.45, 0.15
    fig_height = header + 2 * row_height + gap + footer
    fig = Figure(figsize=(fig_width, fig_height), dpi=DPI, facecolor="white")
    grid = fig.add_gridspec(
        2, 3, width_ratios=widths, left=left / fig_width, right=1 - right / fig_width,
        top=1 - header / fig_height, bottom=footer / fig_height,
        wspace=wspace, hspace=gap / row_height,
    )

    rows = (
        ("before", before, indices_before),
        ("after", after, indices_after),
    )
    shown = None
    for row, (label, volume, indices) in enumerate(rows):
        for column, view in enumerate(_VIEWS):
            ax = fig.add_subplot(grid[row, column])
            shown = _draw_panel(ax, volume, view, indices[view[1]], convention, image_kwargs)
            if column == 0:
                ax.set_ylabel(
                    f"{label.upper()}\n{volume.size_text()} voxels\n{volume.spacing_text()}",
                    fontsize=11, fontweight="bold" if row == 0 else "normal", labelpad=8,
                )

    name = Path(input_path).name
    frames = f", frame 1 of {before.frames}" if before.frames > 1 else ""
    kind = "label map" if label_map else "image"
    fig.suptitle(
        f"{name}  ({kind}{frames})\n"
        f"{before.size_text()} voxels at {before.spacing_text()}  \u2192  "
        f"{after.size_text()} voxels at {after.spacing_text()}"
        + (f"  ({method})" if method else ""),
        fontsize=13, y=1 - 0.12 / fig_height, va="top",
    )
    side = "right on the image's left" if convention == "radiological" else "right on the image's right"
    fig.text(
        0.5, 1 - 0.68 / fig_height,
        f"{convention} convention (patient's {side}); {shading}",
        ha="center", va="top", fontsize=10, color="0.25",
    )

    if label_map:
        if len(values) <= MAX_LEGEND_LABELS:
            handles = [
                Patch(facecolor=colour, edgecolor="0.5", label=f"{value:g}")
                for value, colour in zip(values, colours)
            ]
            fig.legend(
                handles=handles, title="label", loc="center left",
                bbox_to_anchor=(1 - (right - 0.1) / fig_width, 0.5), fontsize=9, title_fontsize=10, frameon=False,
            )
    else:
        bar_axes = fig.add_axes((1 - (right - 0.2) / fig_width, 0.3, 0.18 / fig_width, 0.4))
        bar = fig.colorbar(shown, cax=bar_axes, extend="both")
        bar.ax.tick_params(labelsize=9)
        if "HU" in shading:
            bar.set_label("HU", fontsize=10)
    return fig


def report_labels(prefix: str, record_path) -> dict:
    """Labels of a volume's picture in the Snakemake report: its name and kind (its record's)."""
    rows = read_rows(record_path) if Path(record_path).exists() else []
    kind = rows[0].get("kind", "") if rows else ""
    return {"volume": prefix, "kind": (kind or "image").replace("_", " ")}


def _older(path, *sources) -> bool:
    """Whether `path` is missing or older than any of `sources` (a missing source counts)."""
    made = modified_ns(path)
    times = [modified_ns(source) for source in sources]
    return made is None or any(time is None or time > made for time in times)


def outdated_report_inputs(volumes, manifest_path, dataset_outputs, desired_volume) -> list[str]:
    """Why a report made now would show results older than the volumes they describe
    (empty: it would not). `volumes`: (input, resampled volume, QC picture) per volume;
    `dataset_outputs`: the pictures and table made from manifest.tsv."""
    problems = []
    stale = sum(_older(picture, resampled, source) for source, resampled, picture in volumes)
    if stale:
        problems.append(
            f"the QC pictures of {stale} of {len(volumes)} volumes are older than their "
            "volumes (or missing)"
        )
    resampled = [volume for _, volume, _ in volumes]
    if _older(manifest_path, *resampled):
        problems.append(f"{manifest_path} is older than the volumes (or missing)")
    elif any(_older(output, manifest_path) for output in dataset_outputs):
        problems.append("the dataset overview and manifest table are older than manifest.tsv")
    if not problems and desired_volume is not None:
        problems += _other_grid(manifest_path, desired_volume)
    return problems


def _other_grid(manifest_path, desired_volume) -> list[str]:
    """A manifest whose volumes were resampled to another grid than the configured one
    (desired_volume changed since the last run): the pictures show that other grid."""
    wanted = size_text(desired_volume)
    sizes = [
        "x".join(str(row.get("new_size", "")).split("x")[:3])
        for row in _read_manifest(manifest_path)
    ]
    other = sorted({size for size in sizes if size != wanted})
    if not other:
        return []
    count = sum(size != wanted for size in sizes)
    return [f"{count} volumes were resampled to {', '.join(other)}, not {wanted}"]


def _save(fig, png_path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor=fig.get_facecolor())
    atomic_write_bytes(png_path, buffer.getvalue())
    return Path(png_path)


# --------------------------------------------------------------------------- dataset


def _read_manifest(manifest_path) -> list[dict]:
    """The manifest's rows of resampled volumes (status ok; all, in a manifest without it)."""
    return [row for row in read_rows(manifest_path) if row.get("status", "") in ("ok", "")]


def _numbers(text: str, separator: str) -> list[float]:
    return [float(part) for part in str(text).split(separator) if part.strip()]


def _vector(values, digits=3) -> str:
    return numbers_text(values, digits, TIMES)


def overview_figure(manifest_path, png_path) -> Path:
    """Write a PNG of the dataset: voxel spacing before vs after on each axis (one point per
    volume) and a table of sizes, spacings and fields of view."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = []
    for row in _read_manifest(manifest_path):
        size_before = _numbers(row["original_size"], "x")[:3]
        size_after = _numbers(row["new_size"], "x")[:3]
        spacing_before = _numbers(row["original_spacing"], ",")
        spacing_after = _numbers(row["new_spacing"], ",")
        rows.append(
            {
                "name": Path(row["input_path"]).name,
                "kind": row.get("kind", "") or "image",
                "size_before": size_before,
                "size_after": size_after,
                "spacing_before": spacing_before,
                "spacing_after": spacing_after,
                "fov": [n * s for n, s in zip(size_before, spacing_before)],
            }
        )

    shown = rows[:MAX_TABLE_ROWS]
    table_height = 0.3 * (len(shown) + 1) + (0.3 if len(rows) > len(shown) else 0.0)
    fig_width, plots_left, plots_right, plots_wspace = 13.0, 0.06, 0.8, 0.3
    # Square scatter panels: as tall as they are wide.
    plots_height = (plots_right - plots_left) * fig_width / (3 + 2 * plots_wspace)
    head, gap = 0.8, 0.85
    fig_height = head + plots_height + gap + table_height + 0.3
    fig = Figure(figsize=(fig_width, fig_height), dpi=DPI, facecolor="white")
    fig.suptitle(
        f"Dataset overview: {len(rows)} volume{'s' if len(rows) != 1 else ''} resampled",
        fontsize=14, y=1 - 0.12 / fig_height, va="top",
    )
    top = 1 - head / fig_height
    bottom = 1 - (head + plots_height) / fig_height
    grid = fig.add_gridspec(
        1, 3, left=plots_left, right=plots_right, top=top, bottom=bottom, wspace=plots_wspace
    )

    per_volume_colours = len(rows) <= 10
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    markers = {"image": "o", "label_map": "s"}
    for axis in range(3):
        ax = fig.add_subplot(grid[0, axis])
        everything = []
        for number, row in enumerate(rows):
            if len(row["spacing_before"]) <= axis or len(row["spacing_after"]) <= axis:
                continue
            x, y = row["spacing_before"][axis], row["spacing_after"][axis]
            everything += [x, y]
            label_map = row["kind"] == "label_map"
            colour = palette[number % 10] if per_volume_colours else ("C1" if label_map else "C0")
            # Volumes on one grid (an image and its label map) fall on one point: earlier
            # volumes get bigger markers, drawn below, so every one stays visible.
            size = 40 + 22 * (min(len(rows), 10) - 1 - min(number, 9))
            ax.scatter(
                [x], [y], s=size * (1.6 if label_map else 1.0),
                marker=markers.get(row["kind"], "o"),
                facecolors="none" if label_map else colour, edgecolors=colour,
                linewidths=1.8, zorder=3 + number,
            )
        if everything:
            low, high = min(everything), max(everything)
            pad = 0.08 * (high - low) if high > low else 0.5
            limits = (max(0.0, low - pad), high + pad)
            ax.plot(limits, limits, color="0.6", linestyle="--", linewidth=1, zorder=1)
            ax.set_xlim(limits)
            ax.set_ylim(limits)
        ax.set_aspect("equal", adjustable="box")
        ax.grid(True, color="0.9")
        ax.set_title(f"axis {'xyz'[axis]} (file voxel axis {axis})", fontsize=11)
        ax.set_xlabel("spacing before (mm)")
        if axis == 0:
            ax.set_ylabel("spacing after (mm)")
    handles = [
        Line2D([], [], color="0.6", linestyle="--", label="unchanged"),
        Line2D([], [], marker="o", linestyle="", color="0.3", label="image"),
        Line2D([], [], marker="s", linestyle="", markerfacecolor="none", markersize=9,
               color="0.3", markeredgewidth=1.8, label="label map"),
    ]
    if per_volume_colours:
        handles += [
            Line2D([], [], marker="o", linestyle="", color=palette[number % 10], label=row["name"])
            for number, row in enumerate(rows)
        ]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(plots_right + 0.01, top), fontsize=9,
               frameon=False)

    table_top = 1 - (head + plots_height + gap) / fig_height
    table_axes = fig.add_axes((0.04, 0.3 / fig_height, 0.92, table_top - 0.3 / fig_height))
    table_axes.axis("off")
    header = ["volume", "kind", "size before", "size after", "spacing before (mm)",
              "spacing after (mm)", "field of view (mm)"]
    cells = [
        [
            row["name"],
            row["kind"].replace("_", " "),
            _vector([int(n) for n in row["size_before"]]),
            _vector([int(n) for n in row["size_after"]]),
            _vector(row["spacing_before"]),
            _vector(row["spacing_after"]),
            _vector(row["fov"], 4),
        ]
        for row in shown
    ]
    if cells:
        table = table_axes.table(cellText=cells, colLabels=header, loc="upper center",
                                 cellLoc="left", colLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(10)
        table.auto_set_column_width(list(range(len(header))))
        for (line, _), cell in table.get_celld().items():
            cell.set_height(0.3 / (table_top * fig_height - 0.3))
            cell.set_edgecolor("0.8")
            if line == 0:
                cell.set_text_props(fontweight="bold")
                cell.set_facecolor("0.92")
    if len(rows) > len(shown):
        table_axes.text(0, 0, f"... and {len(rows) - len(shown)} more: see manifest.tsv",
                        transform=table_axes.transAxes, fontsize=10)
    if not rows:
        table_axes.text(0.5, 0.5, "no volume in the manifest", ha="center", fontsize=12)
    return _save(fig, png_path)


# --------------------------------------------------------------------------- manifest table

_TABLE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 13px;
       margin: 12px; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
p { margin: 4px 0 10px 0; }
"""
# Manifest columns with numbers joined by commas: rounded for display.
_VECTOR_COLUMNS = ("original_spacing", "new_spacing", "original_origin", "new_origin", "direction")
_NUMBER_COLUMNS = ("min_before", "max_before", "min_after", "max_after")


def manifest_table(manifest_path, html_path) -> Path:
    """Write the manifest as a self-contained HTML table (numbers rounded for reading; the
    exact TSV is embedded as a download link)."""
    import pandas as pd

    raw = Path(manifest_path).read_bytes()
    columns, rows = read_table(manifest_path)
    manifest = pd.DataFrame(rows, columns=columns, dtype=str)
    for column in _VECTOR_COLUMNS:
        if column in manifest:
            manifest[column] = manifest[column].map(lambda text: decimals_text(text, 4))
    for column in _NUMBER_COLUMNS:
        if column in manifest:
            manifest[column] = manifest[column].map(
                lambda text: number_text(text) if text.strip() else text
            )
    link = "data:text/tab-separated-values;base64," + base64.b64encode(raw).decode("ascii")
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>manifest</title>"
        f"<style>{_TABLE_STYLE}</style></head><body>\n"
        f"<p><b>{len(manifest)} volume{'s' if len(manifest) != 1 else ''}</b>. "
        "Sizes in voxels (XxYxZ), spacings and origins in mm (origins in ITK's LPS "
        "convention); numbers rounded for reading. "
        f"<a download='manifest.tsv' href='{link}'>Download manifest.tsv</a> "
        f"(full precision; {html.escape(str(manifest_path))}).</p>\n"
        + manifest.to_html(index=False, escape=True, border=0)
        + "\n</body></html>\n"
    )
    atomic_write_bytes(html_path, page.encode("utf-8"))
    return Path(html_path)
