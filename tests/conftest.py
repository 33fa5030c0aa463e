"""Shared fixtures: where the real data is, and a scratch folder per test."""
import os
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data():
    "The real data: `$DBP_AE_DATA`, else `../shared/data` beside the repository; None when absent"
    for p in (os.environ.get("DBP_AE_DATA"), REPO.parent / "shared" / "data"):
        if p and (Path(p) / "MNIST").exists():
            return Path(p)
    return None


@pytest.fixture
def data_dir():
    p = shared_data()
    if p is None:
        pytest.skip("no real data: set DBP_AE_DATA or put the data in ../shared/data beside the repository")
    return p
