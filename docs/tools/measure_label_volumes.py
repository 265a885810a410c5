"""Label volumes, surfaces and CPU time of the three label methods (docs/benchmarks.md).

For each label map and target grid: the largest volume error over the labels with at least
50 output voxels (output voxels x voxel volume against the input's), per method; the total
surface (faces between differently-labelled 6-neighbours) and the worst per-label surface
(normalised by volume^(2/3), so a label that keeps its volume is not blamed for it) against
linear_argmax; CPU seconds (best of 3). The maps are generated (tests/label_phantoms.py), the
demo segmentation, and, with a folder holding nilearn's wheel data (not a requirement:
`pip download nilearn==0.14.1 --no-deps` and unzip it, or a venv's site-packages), tissue
classes and a 117-parcel Voronoi atlas of the real MNI152 2009a brain:
    python docs/tools/measure_label_volumes.py [SITE_PACKAGES]
"""

import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]  # docs/tools/ -> repository
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))
from label_phantoms import atlas_phantom, head_phantom, label_surfaces  # noqa: E402
from nii_resample.labels import resample_labels  # noqa: E402
from nii_resample.nifti import resampling_index_map  # noqa: E402

METHODS = ("nearest", "linear_argmax", "volume_preserving")


def cpu_seconds(function, repeats=3):
    best = np.inf
    for _ in range(repeats):
        start = time.process_time()
        result = function()
        best = min(best, time.process_time() - start)
    return result, best


def volume_errors(labels, result):
    """{label: relative volume error} for the labels with >= 50 output voxels."""
    ratio = labels.size / result.size
    values, counts = np.unique(labels, return_counts=True)
    after = dict(zip(*np.unique(result, return_counts=True)))
    return {int(v): after.get(v, 0) * ratio / n - 1 for v, n in zip(values, counts)
            if n / ratio >= 50}


def measure(name, labels, shape, per_label=False):
    index_map = resampling_index_map(labels.shape, shape)
    results, seconds, errors = {}, {}, {}
    for method in METHODS:
        results[method], seconds[method] = cpu_seconds(
            lambda: resample_labels(labels, shape, index_map, method))
        errors[method] = volume_errors(labels, results[method])
        assert results[method].dtype == labels.dtype
        assert set(np.unique(results[method])) <= set(np.unique(labels))
    faces = {m: label_surfaces(results[m]) for m in ("linear_argmax", "volume_preserving")}
    sizes = {m: dict(zip(*np.unique(results[m], return_counts=True))) for m in faces}
    normalised = [
        (faces["volume_preserving"][0][v] / sizes["volume_preserving"][v] ** (2 / 3))
        / (faces["linear_argmax"][0][v] / sizes["linear_argmax"][v] ** (2 / 3))
        for v in errors["volume_preserving"] if v in sizes["linear_argmax"]
    ]
    total = faces["volume_preserving"][1] / faces["linear_argmax"][1]
    shape_text = "x".join(map(str, labels.shape)) + " -> " + "x".join(map(str, shape))
    cells = []
    for method in METHODS:
        worst = max(errors[method], key=lambda v: abs(errors[method][v]))
        cells.append(f"{100 * abs(errors[method][worst]):.1f} % (label {worst})")
    print(f"| {name} | {shape_text} | {len(np.unique(labels))} | " + " | ".join(cells)
          + f" | {total:.3f} / {max(normalised):.3f} | "
          + " / ".join(f"{seconds[m]:.2f}" for m in METHODS) + " |")
    if per_label:
        print("\n| label | " + " | ".join(METHODS) + " |\n| --- | --- | --- | --- |")
        for value in errors["volume_preserving"]:
            print(f"| {value} | " + " | ".join(f"{100 * errors[m][value]:+.1f} %" for m in METHODS)
                  + " |")
        print()
    over = {v: e for v, e in errors["volume_preserving"].items() if abs(e) > 0.02}
    for value, error in over.items():
        print(f"  over 2 %: label {value}: {100 * error:+.1f} % "
              f"(linear_argmax {100 * errors['linear_argmax'][value]:+.1f} %)")


def main():
    print("| map | grid | labels | max volume error: nearest | linear_argmax | "
          "volume_preserving | surface vs arg-max: total / worst label | CPU s (n / a / v) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    head = head_phantom()
    measure("7-class head phantom", head, (64, 64, 48))
    atlas = atlas_phantom()
    for shape in ((64, 64, 48), (60, 72, 60), (45, 54, 45)):
        measure("117-label atlas phantom", atlas, shape)
    seg = np.asarray(nib.load(REPO / "workflow/resources/demo/ct_chest_seg.nii.gz").dataobj)
    measure("demo ct_chest_seg", seg, (64, 64, 48))
    if len(sys.argv) > 1:
        data = Path(sys.argv[1]) / "nilearn" / "datasets" / "data"
        mni = {k: np.asarray(nib.load(
            data / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz").dataobj)
            for k in ("t1", "gm", "wm")}
        brain = mni["t1"] > 0
        csf = np.clip(255 - mni["gm"].astype(int) - mni["wm"].astype(int), 0, 255)
        tissue = np.where(brain, 1 + np.argmax(np.stack([csf, mni["gm"], mni["wm"]]), 0), 0)
        measure("MNI152 tissue classes (nilearn)", tissue.astype(np.uint8), (64, 64, 48))
        from scipy.spatial import cKDTree
        where = np.argwhere(brain)
        seeds = where[np.random.default_rng(0).choice(len(where), 116, replace=False)]
        parcels = np.zeros(brain.shape, np.int16)
        parcels[tuple(where.T)] = cKDTree(seeds).query(where)[1] + 1
        for shape in ((64, 64, 48), (49, 58, 47)):
            measure("MNI152 brain, 116 Voronoi parcels", parcels, shape)
    print("\n7-class head phantom, per class (volume error):")
    measure("7-class head phantom", head, (64, 64, 48), per_label=True)


if __name__ == "__main__":
    main()
