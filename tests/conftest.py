"""Shared test fixtures. Real data lives in ../shared/data (never in the repository)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder of real motion capture; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (tests read ../shared/data relative to the repo)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def cmu_clip(tmp_path_factory, shared_data):
    """CMU subject 11 (soccer kick) and subject 01 (jumps) copied to a temp folder (never into the repo)."""
    d = tmp_path_factory.mktemp("cmu")
    for name in ("11.asf", "11_01.amc", "01.asf", "01_01.amc"):
        shutil.copy(shared_data / "cmu" / name, d / name)
    return d
