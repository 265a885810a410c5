"""Anti-aliasing error against an area-average ground truth, for several sigma formulas.

Each demo volume is cropped to a multiple of f on every axis, the ground truth is its f x f x f
block mean, and the volume is resampled to the block grid (cubic B-spline) after a Gaussian
prefilter of each sigma. Prints a Markdown table of RMSEs (docs/antialiasing.md records it).
Usage: python docs/tools/measure_antialias.py [folder]  (default: workflow/resources/demo)
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # docs/tools/ -> the package
from nii_resample.antialias import gaussian_blur  # noqa: E402
from nii_resample.engine import resample_array  # noqa: E402

FORMULAS = {
    "none": lambda f: 0.0,
    "sqrt((f^2-1)/12) (used)": lambda f: np.sqrt((f * f - 1) / 12),
    "(f-1)/2 (scikit-image)": lambda f: (f - 1) / 2,
    "sqrt(f^2-1)/2.355 (FWHM)": lambda f: np.sqrt(f * f - 1) / 2.3548,
}


def area_average_rmse(volume: np.ndarray, factor: int, sigma: float) -> float:
    shape = tuple(n // factor for n in volume.shape)
    crop = volume[tuple(slice(0, n * factor) for n in shape)]
    truth = crop.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(axis=(1, 3, 5))
    blurred = gaussian_blur(crop, (sigma,) * 3, np.float64) if sigma > 0 else crop
    resampled = resample_array(blurred, shape, "bspline", precision=np.float64)
    return float(np.sqrt(np.mean((resampled - truth) ** 2)))


def main(folder: str = "workflow/resources/demo") -> None:
    print("| volume | factor | " + " | ".join(FORMULAS) + " |")
    print("|---|---|" + "---|" * len(FORMULAS))
    for path in sorted(Path(folder).glob("*.nii.gz")):
        if "_seg" in path.name:
            continue
        volume = nib.load(path).get_fdata()
        for factor in (2, 3, 4):
            errors = [area_average_rmse(volume, factor, sigma(factor)) for sigma in FORMULAS.values()]
            print(f"| {path.name} | {factor} | " + " | ".join(f"{e:.2f}" for e in errors) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
