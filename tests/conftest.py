"""Shared fixtures: every test gets its own run store and cache; real data is found or skipped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import PostgresUnavailable, throwaway_postgres

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def dashboard_on_loopback() -> None:
    """Page tests run the dashboard as if on 127.0.0.1, which it serves without a login
    (dashboard.auth); tests of the login set other addresses themselves."""
    from streamlit import config

    config.set_option("server.address", "127.0.0.1")


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs, caches and the SQLite store of a test live under its tmp_path, never in ./runs;
    the dashboard finds no dataset under data roots (../shared/data) unless a test names some."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("TBXRAY_RUNS_DIR", str(runs))
    monkeypatch.setenv("TBXRAY_CACHE_DIR", str(runs / "cache"))
    monkeypatch.setenv("TBXRAY_DATA_DIRS", "")
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
    from pipeline.data import synth

    out = tmp_path_factory.mktemp("phantoms")
    synth.generate(out, 120, size=64, seed=1)
    return out


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for this test session (see :mod:`tests.pgserver`).

    Skipped, saying why, when the server programs are missing or it cannot start.
    """
    try:
        with throwaway_postgres() as url:
            yield url
    except PostgresUnavailable as err:
        pytest.skip(f"{err}: the PostgreSQL half of the store tests is skipped")


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (dropped afterwards)."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a current, empty run store: a SQLite file, then a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    from db import make_engine, migrate

    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url
