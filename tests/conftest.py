"""Shared fixtures: every test gets its own run store and cache; real data is found or skipped."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
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


def _postgres_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else Debian's newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return str(versions[-1]) if versions else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for this test session; its base URL.

    Made with initdb / pg_ctl in a temporary folder, run as an unprivileged user (PostgreSQL
    refuses root: as root the cluster belongs to the ``postgres`` user Debian's package makes,
    else ``nobody``), with fsync off, and stopped at the end. Skipped, saying why, when the
    server programs are missing or it cannot start.
    """
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip(
            "PostgreSQL server programs (initdb, pg_ctl) are not installed: the PostgreSQL "
            "half of the store tests is skipped (`make test` installs Debian's postgresql)"
        )
    user = None
    if os.geteuid() == 0:
        user = "postgres" if _has_user("postgres") else "nobody"
    # Not under pytest's tmp_path: its parents are private to root, and the server's user must
    # reach this folder.
    folder = Path(tempfile.mkdtemp(prefix="tbxray-postgres-"))
    data = folder / "data"
    if user is not None:
        shutil.chown(folder, user)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, user=user, capture_output=True, text=True, cwd=folder)

    made = run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
    if made.returncode != 0:
        pytest.skip(f"PostgreSQL could not be initialised: {made.stderr.strip()[-300:]}")
    options = f"-h 127.0.0.1 -p {port} -k {folder} -F -c max_connections=200"
    started = run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    if started.returncode != 0:
        log = (folder / "log").read_text() if (folder / "log").exists() else started.stderr
        pytest.skip(f"PostgreSQL could not be started: {log.strip()[-300:]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


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
    from db import migrate
    from db.store import make_engine

    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url
