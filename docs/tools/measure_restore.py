"""Round trip of the way back: resample, restore the outputs themselves, compare with the inputs.

Measures, for the demo volumes and a generated multi-label map, the Dice of each label and
the correlation of each image after resampling by 1/F per axis (F = 1, 2, 4) and restoring
onto the original grid (README.md, "Back to the original grid"; docs/benchmarks.md).

    PYTHONPATH=src python docs/tools/measure_restore.py [--factors 1 2 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from nii_resample import resampling_dataset, restore_dataset

DEMO = Path(__file__).resolve().parents[2] / "workflow" / "resources" / "demo"


def multi_label_map(shape=(128, 128, 96)) -> np.ndarray:
    """Five smooth structures of 1-60 cm3 on 1 mm voxels: nested ellipsoids, a thin slab
    (6 mm), a small sphere (10 mm across)."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    labels = np.zeros(shape, np.uint8)
    labels[(x / 0.8) ** 2 + (y / 0.7) ** 2 + (z / 0.75) ** 2 < 1] = 1
    labels[((x - 0.2) / 0.35) ** 2 + (y / 0.3) ** 2 + ((z + 0.1) / 0.4) ** 2 < 1] = 2
    labels[((x + 0.35) / 0.25) ** 2 + ((y - 0.2) / 0.3) ** 2 + (z / 0.3) ** 2 < 1] = 3
    labels[(np.abs(z - 0.8) < 6 / shape[2]) & (np.abs(x) < 0.6)] = 4
    labels[(x + 0.2) ** 2 + (y + 0.45) ** 2 + (z + 0.3) ** 2 < (10 / shape[0]) ** 2] = 5
    return labels


def dice(a, b, value) -> float:
    a, b = a == value, b == value
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def round_trip(inputs: list[Path], factor: int, work: Path) -> dict:
    """{input name: (original, restored) arrays} after resampling to 1/factor and back."""
    folder = work / f"in_{factor}"
    folder.mkdir()
    for path in inputs:
        (folder / path.name).symlink_to(path)
    restored = {}
    stems = {path.name.split(".")[0] for path in inputs}
    for path in inputs:
        if path.name.split(".")[0].removesuffix("_seg") in stems - {path.name.split(".")[0]}:
            continue  # on its case image's grid (cases: <prefix>_seg)
        shape = nib.load(path).shape[:3]
        size = [max(1, round(n / factor)) for n in shape]
        single = work / f"one_{factor}_{path.name}"
        single.mkdir()
        for member in inputs:
            if member.name.split(".")[0].startswith(path.name.split(".")[0]):
                (single / member.name).symlink_to(member)
        resampling_dataset(single, work / f"res_{factor}_{path.name}", size, saving_mode="folder",
                           progress=False)
        out = work / f"back_{factor}_{path.name}"
        restore_dataset(work / f"res_{factor}_{path.name}", out,
                        work / f"res_{factor}_{path.name}" / "manifest.tsv", progress=False)
        for member in single.iterdir():
            restored[member.name] = (nib.load(member).get_fdata(),
                                     nib.load(out / member.name).get_fdata())
    return restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="restore_"))
    try:
        generated = work / "organs_seg.nii.gz"
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        image = nib.Nifti1Image(multi_label_map(), affine)
        image.header.set_sform(affine, 1)
        image.header.set_qform(affine, 1)
        nib.save(image, generated)
        inputs = sorted(DEMO.glob("*.nii.gz")) + [generated]
        print("| input | factor | measure | value |\n| --- | --- | --- | --- |")
        for factor in args.factors:
            for name, (original, restored) in sorted(round_trip(inputs, factor, work).items()):
                if "_seg" in name:
                    for value in np.unique(original)[1:]:
                        print(f"| {name} | {factor} | Dice label {int(value)} "
                              f"({int(np.count_nonzero(original == value))} voxels) | "
                              f"{dice(original, restored, value):.4f} |")
                    exact = np.mean(original == restored)
                    print(f"| {name} | {factor} | voxels exactly equal | {exact:.4f} |")
                else:
                    r = np.corrcoef(original.ravel(), restored.ravel())[0, 1]
                    rms = np.sqrt(np.mean((original - restored) ** 2)) / np.ptp(original)
                    print(f"| {name} | {factor} | correlation; RMS error / range | "
                          f"{r:.4f}; {rms:.4f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
