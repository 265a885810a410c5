"""Label-map detection on real volumes shipped in PyPI packages and on variants made from them.

Prints the Markdown table of docs/label_detection.md: shape, type, distinct values, uniform
share, truth and decision for each volume. The packages are not requirements of this project;
install them in a throw-away venv and pass its site-packages folder:
    python -m venv /tmp/v && /tmp/v/bin/pip install nilearn==0.14.1 dipy==1.12.1
    python docs/tools/measure_label_detection.py /tmp/v/lib/python3.11/site-packages
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[2]  # docs/tools/ -> repository
sys.path.insert(0, str(REPO / "src"))
from nii_resample import labels  # noqa: E402

DEMO = REPO / "workflow" / "resources" / "demo"


def stored(path):
    image = nib.load(path)
    return image.header, np.asarray(image.dataobj.get_unscaled())


def levels(data, top, dtype=np.uint8):
    """`data` rescaled to the grey levels 0..top."""
    data = data.astype(np.float64)
    return np.rint((data - data.min()) / (data.max() - data.min()) * top).astype(dtype)


def voronoi_atlas(brain, parcels, seed=0):
    """`parcels` Voronoi parcels of the voxels of `brain`, numbered 1.. (int16)."""
    where = np.argwhere(brain)
    seeds = where[np.random.default_rng(seed).choice(len(where), parcels, replace=False)]
    atlas = np.zeros(brain.shape, np.int16)
    atlas[tuple(where.T)] = cKDTree(seeds).query(where)[1] + 1
    return atlas


def volumes(site):
    """(name, truth, header, stored data) of every volume measured."""
    plain = nib.Nifti1Header()
    found = []
    for name in ("ct_chest", "ct_chest_seg", "mri_head", "pet_brain"):
        truth = "label map" if name.endswith("_seg") else "image"
        found.append((f"demo {name}.nii.gz", truth, *stored(DEMO / f"{name}.nii.gz")))
    data = site / "nilearn" / "datasets" / "data"
    mni = {k: stored(data / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz")[1]
           for k in ("t1", "gm", "wm")}
    for key in mni:
        found.append((f"nilearn MNI152 {key}", "image", plain, mni[key]))
    found.append(("nilearn image_10426.nii.gz", "image", *stored(data / "image_10426.nii.gz")))
    for name in ("anatomical.nii", "example4d.nii.gz", "functional.nii",
                 "reoriented_anat_moved.nii"):
        found.append((f"nibabel {name}", "image", *stored(site / "nibabel/tests/data" / name)))
    for name in ("aniso_vox.nii.gz", "S0_10slices.nii.gz", "test_piesno.nii.gz", "small_64D.nii"):
        found.append((f"dipy {name}", "image", *stored(site / "dipy/data/files" / name)))
    ct, seg, mri = found[0][3], found[1][3], found[2][3]
    images = [(f"mri_head -> uint8 0..{n}", levels(mri, n)) for n in (80, 40, 20)]
    images += [(f"MNI T1 -> uint8 0..{n} (no noise)", levels(mni["t1"], n))
               for n in (80, 40, 20, 10)]
    images += [("MNI GM -> uint8 0..50", levels(mni["gm"], 50)),
               ("CT -> uint8 0..80 (soft-tissue window)", levels(np.clip(ct, -160, 240), 80)),
               ("CT -> int16 HU / 10", np.rint(ct / 10).astype(np.int16)),
               ("CT -> float32", ct.astype(np.float32)),
               ("mri_head / 3 as float32 (fractions)", (mri / 3).astype(np.float32))]
    found += [(name, "image", plain, image) for name, image in images]
    brain = mni["t1"] > 0
    csf = np.clip(255 - mni["gm"].astype(int) - mni["wm"].astype(int), 0, 255)
    tissue = np.where(brain, 1 + np.argmax(np.stack([csf, mni["gm"], mni["wm"]]), 0), 0)
    tissue = tissue.astype(np.uint8)
    atlas150, atlas1000 = voronoi_atlas(brain, 150), voronoi_atlas(brain, 1000)
    maps = [("MNI brain mask (binary)", brain.astype(np.uint8)),
            ("MNI tissue classes (4 values)", tissue),
            ("  as float32", tissue.astype(np.float32)), ("  as int16", tissue.astype(np.int16)),
            ("  downsampled x2", tissue[::2, ::2, ::2]),
            ("  downsampled x4", tissue[::4, ::4, ::4]),
            ("MNI GM > 127 (binary)", (mni["gm"] > 127).astype(np.uint8)),
            ("Voronoi atlas, 150 parcels", atlas150),
            ("  downsampled x3", atlas150[::3, ::3, ::3]),
            ("Voronoi atlas, 1000 parcels", atlas1000),
            ("  downsampled x2", atlas1000[::2, ::2, ::2]),
            ("ct_chest_seg downsampled x2", seg[::2, ::2, ::2]),
            ("ct_chest_seg as float32", seg.astype(np.float32)),
            ("ct_chest_seg bone (thin ribs)", (seg == 4).astype(np.uint8)),
            ("ct_chest_seg lungs", ((seg == 2) | (seg == 3)).astype(np.uint8))]
    found += [(name, "label map", plain, data) for name, data in maps]
    return found


def uniform_share(data):
    frame = data.reshape(data.shape[:3] + (-1,), order="F")[..., 0]
    sample = labels.sample_slices(frame)
    if sample.dtype.kind == "f" and not np.array_equal(sample, np.round(sample)):
        return "-"
    values, counts = np.unique(sample, return_counts=True)
    return f"{labels.uniform_fraction(sample, values[np.argmax(counts)]):.3f}"


def main(site):
    print("| volume | shape | dtype | distinct | uniform | truth | decision | reason |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, truth, header, data in volumes(Path(site)):
        is_label, reason = labels.detect_label_map(header, data)
        decision = "label map" if is_label else "image"
        flag = "" if decision == truth else " **WRONG**"
        distinct = np.unique(data.reshape(data.shape[:3] + (-1,), order="F")[..., 0]).size
        print(f"| {name} | {'x'.join(map(str, data.shape))} | {data.dtype} | {distinct} | "
              f"{uniform_share(data)} | {truth} | {decision}{flag} | {reason} |")


if __name__ == "__main__":
    main(sys.argv[1])
