"""The README's Python API and command-line examples run as written (on the demo data)."""

import re
import subprocess
import sys

import nibabel as nib

from support import REPO

README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _demo_workdir(tmp_path):
    (tmp_path / "workflow" / "resources").mkdir(parents=True)
    (tmp_path / "workflow" / "resources" / "demo").symlink_to(REPO / "workflow/resources/demo")
    return tmp_path


def test_python_api_example(tmp_path):
    code = re.findall(r"```python\n(.*?)```", _section("Python API"), re.S)[0]
    result = subprocess.run([sys.executable, "-c", code], cwd=_demo_workdir(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "4 volumes written" in result.stdout and "Resampling summary" in result.stdout
    seg = nib.load(tmp_path / "results/api_demo/ct_chest_seg_resampled.nii.gz")
    assert seg.shape == (64, 64, 48)


def test_command_line_example(tmp_path):
    command = re.findall(r"```bash\n(python -m nii_resample .*?)\n```", _section("Command line"))[0]
    result = subprocess.run(command, shell=True, cwd=_demo_workdir(tmp_path), capture_output=True,
                            text=True, timeout=300, executable="/bin/bash",
                            env={"PATH": f"{sys.prefix}/bin:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "results/cli_demo").glob("*_resampled.nii.gz"))) == 4
