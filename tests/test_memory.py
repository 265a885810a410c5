"""Memory requests (`mem_mb`) cover what real jobs use, on every path a volume can take.

Each case runs `python -m nii_resample volume` as the workflow's job does, from a small launcher whose
wait4() gives the job's own peak RSS (a process forked from this large test process would
count the test's memory in its ru_maxrss), and compares it with the estimate the workflow
sends to the cluster (nii_resample.resources).
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from support import REPO, affine_from, run_snakemake, smooth_volume, write_nifti
from nii_resample.resources import estimate_mem_mb_for_file

LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_mib(arguments) -> float:
    result = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "nii_resample", "volume",
         *map(str, arguments)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1]) / 1024


def blocks(shape, n_labels, dtype):
    """A label map whose every label spans the whole volume (the worst case for label boxes)."""
    grid = np.indices(tuple(-(-n // 8) for n in shape)).sum(0) % n_labels
    return np.kron(grid, np.ones((8, 8, 8), np.uint8))[: shape[0], : shape[1], : shape[2]].astype(dtype)


def make_input(folder, name, shape, dtype, content):
    path = folder / f"{name}.nii.gz"
    if not path.exists():
        if content == "labels":
            data = blocks(shape, 14, dtype)
        elif content == "nan":
            data = smooth_volume(shape, dtype, low=0.0, high=1.0)
            data[: shape[0] // 4] = np.nan
        else:
            data = smooth_volume(shape[:3] + shape[3:], dtype) if len(shape) == 3 else (
                np.random.default_rng(0).normal(0, 300, shape).astype(dtype))
        write_nifti(path, data, affine_from((0.8, 0.8, 1.5)))
    return path


CASES = {
    # name: (input shape, dtype, content, target, job flags, options for the estimate)
    "image int16 down": ((300, 300, 200), np.int16, "image", (160, 160, 100), [], {}),
    "image int16 down itk": ((300, 300, 200), np.int16, "image", (160, 160, 100),
                             ["--engine", "itk"], {"engine": "itk"}),
    "image int16 up": ((160, 160, 100), np.int16, "image", (300, 300, 200), [], {}),
    "image float64 up": ((120, 120, 80), np.float64, "image", (200, 200, 140), [], {}),
    "image float32 with NaN": ((256, 256, 150), np.float32, "nan", (128, 128, 75), [], {}),
    "label uint8 down": ((300, 300, 200), np.uint8, "labels", (160, 160, 100),
                         ["--label-map"], {"label_map": True}),
    "label uint8 up": ((160, 160, 100), np.uint8, "labels", (300, 300, 200),
                       ["--label-map"], {"label_map": True}),
    "label int16 nearest": ((300, 300, 200), np.int16, "labels", (160, 160, 100),
                            ["--label-map", "--label-interpolation", "nearest"],
                            {"label_map": True, "label_interpolation": "nearest"}),
    "series int16": ((96, 96, 40, 40), np.int16, "image", (64, 64, 30), [], {}),
    "series int16 itk": ((96, 96, 40, 40), np.int16, "image", (64, 64, 30),
                         ["--engine", "itk"], {"engine": "itk"}),
    # orientation: the reordered copy of the input (the inputs are stored RAS).
    "image int16 down reoriented": ((300, 300, 200), np.int16, "image", (160, 100, 160),
                                    ["--orientation", "PIL"], {"orientation": "PIL"}),
    "label uint8 down reoriented": ((300, 300, 200), np.uint8, "labels", (160, 100, 160),
                                    ["--label-map", "--orientation", "PIL"],
                                    {"label_map": True, "orientation": "PIL"}),
    "series int16 reoriented": ((96, 96, 40, 40), np.int16, "image", (64, 30, 64),
                                ["--orientation", "LIP"], {"orientation": "LIP"}),
    # Onto a reference grid (world coordinates, nii_resample.ongrid): the reference can be
    # much larger than the input; a rotated one maps every output voxel anywhere.
    "image int16 onto a larger reference": ((160, 160, 100), np.int16, "image",
                                            ("reference", (300, 300, 200)), [], {}),
    "image float32 with NaN onto a reference": ((200, 200, 120), np.float32, "nan",
                                                ("reference", (160, 160, 100)), [], {}),
    "label uint8 onto a larger reference": ((160, 160, 100), np.uint8, "labels",
                                            ("reference", (300, 300, 200)),
                                            ["--label-map"], {"label_map": True}),
}


def make_reference(folder, shape):
    """A reference grid of `shape`, rotated 20 degrees against the inputs, covering them."""
    path = folder / f"reference_{'x'.join(map(str, shape))}.nii.gz"
    if not path.exists():
        from support import rotation

        spacing = np.array([0.8 * 160, 0.8 * 160, 1.5 * 100]) / np.array(shape)
        write_nifti(path, np.zeros(shape, np.uint8), affine_from(spacing, (5.0, -5.0, 2.0),
                                                                 rotation(20, 2)))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return tmp_path_factory.mktemp("memory-inputs")


@pytest.mark.parametrize("case", list(CASES))
def test_request_covers_the_measured_peak(case, inputs, tmp_path):
    shape, dtype, content, target, flags, options = CASES[case]
    source = make_input(inputs, re.sub(r"\W+", "_", case), shape, dtype, content)
    if target[0] == "reference":
        target = target[1]
        reference = str(make_reference(inputs, target))
        flags, options = [*flags, "--reference", reference], {**options, "reference": reference}
        peak = peak_mib([source, tmp_path / "out.nii.gz", *flags])
    else:
        peak = peak_mib([source, tmp_path / "out.nii.gz", *target, *flags])
    requested = estimate_mem_mb_for_file(source, target, options)
    assert peak <= requested, f"{case}: job peak {peak:.0f} MiB > request {requested} MiB"
    # ... without asking a cluster for several times what is needed.
    assert requested <= 3 * peak + 150, f"{case}: request {requested} MiB for {peak:.0f} MiB"


def test_workflow_sends_the_estimate(tmp_path):
    """The rule's mem_mb is the same estimate, per volume (a dry run prints resources)."""
    folder = tmp_path / "in"
    write_nifti(folder / "ct.nii.gz", smooth_volume((200, 180, 90)), affine_from((0.8, 0.8, 2.0)))
    write_nifti(folder / "seg.nii.gz", blocks((200, 180, 90), 5, np.uint8), affine_from((1, 1, 1)))
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [224, 224, 128], "label_maps": ["seg*"]}
    result = run_snakemake(tmp_path / "work", config, "-n")
    requested = dict(re.findall(r"wildcards: prefix=(\w+)\n\s+resources: .*?mem_mb=(\d+)",
                                result.output))
    assert requested == {
        "ct": str(estimate_mem_mb_for_file(folder / "ct.nii.gz", (224, 224, 128), {})),
        "seg": str(estimate_mem_mb_for_file(folder / "seg.nii.gz", (224, 224, 128),
                                            {"label_map": True})),
    }
