"""Shared fixtures: every test gets its own run store and cache; real data is found or skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs, caches and the SQLite store of a test live under its tmp_path, never in ./runs."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("TBXRAY_RUNS_DIR", str(runs))
    monkeypatch.setenv("TBXRAY_CACHE_DIR", str(runs / "cache"))
    monkeypatch.delenv("TBXRAY_DB_URL", raising=False)
    return runs


def shared_dataset(name: str) -> Path:
    """A real dataset under ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small phantom dataset (120 images, 5 : 1, 64 px) shared by the tests of a session."""
    from pipeline import synth

    out = tmp_path_factory.mktemp("phantoms")
    synth.generate(out, 120, size=64, seed=1)
    return out
