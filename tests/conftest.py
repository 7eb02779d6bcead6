"""Shared pytest fixtures: where the real datasets are, and the tolerances every test names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def datasets_path() -> Path:
    """Folder of the shared real datasets: ``$SPECTROLITE_DATASETS`` or ``../shared/datasets`` beside the repo."""
    env = os.environ.get("SPECTROLITE_DATASETS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """Folder holding the real ``.npz`` datasets; the tests that use it fail (not skip) when it is missing."""
    path = datasets_path()
    if not (path / "idrc2002_tablets.npz").is_file():
        raise FileNotFoundError(
            f"expected the shared datasets at {path} (set SPECTROLITE_DATASETS to override), found none"
        )
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Root of the repository checkout."""
    return REPO_ROOT
