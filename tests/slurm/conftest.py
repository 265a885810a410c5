"""pytest glue for the throw-away SLURM cluster (see cluster.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import SlurmCluster, SlurmUnavailable  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slurm: needs a real single-node SLURM cluster (started by the test, root only)",
    )


def _unavailable(reason: str):
    """Skip with the reason, or fail when SLURM_TESTS_REQUIRED=1 (e.g. in CI)."""
    if os.environ.get("SLURM_TESTS_REQUIRED", "") not in ("", "0"):
        pytest.fail(f"SLURM required but unavailable: {reason}", pytrace=False)
    pytest.skip(f"SLURM unavailable: {reason}")


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running SlurmCluster for the module; stopped afterwards."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()
