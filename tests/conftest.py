"""Shared test set-up: the benchmark data directory and small fixtures."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Tests read the local benchmark files beside the repo unless told otherwise.
os.environ.setdefault("LATENTLAB_DATA_DIR", str(SHARED_DATA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ["LATENTLAB_DATA_DIR"])
    assert path.is_dir(), f"benchmark data directory {path} is missing (set LATENTLAB_DATA_DIR)"
    return path
