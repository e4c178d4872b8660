"""Where the run store lives and how it is connected to: the default URL and the engine.

The default database is the SQLite file ``<runs_dir>/tbxray.db``; ``TBXRAY_DB_URL`` names any
SQLAlchemy URL instead (PostgreSQL for a team). Every SQLite connection gets the pragmas the
store depends on (WAL, foreign keys, a busy timeout).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event


def default_url() -> str:
    """The database URL to use when none is given.

    ``TBXRAY_DB_URL`` if set (any SQLAlchemy URL, e.g. PostgreSQL for a team); otherwise the
    SQLite file ``<runs_dir>/tbxray.db``, where runs_dir is ``TBXRAY_RUNS_DIR`` or ``runs``
    relative to the current directory. That folder is created if missing.
    """
    url = os.environ.get("TBXRAY_DB_URL")
    if url:
        return url
    runs_dir = Path(os.environ.get("TBXRAY_RUNS_DIR") or "runs")
    runs_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs_dir / 'tbxray.db'}"


def make_engine(url: str) -> Engine:
    """An engine for the store at ``url``, with the settings every SQLite connection needs."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        _prepare_sqlite(engine)
    return engine


def _prepare_sqlite(engine: Engine) -> None:
    """Create the database's folder and set the pragmas every SQLite connection needs."""
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the dashboard read while a worker writes; foreign keys are off by default in
        # SQLite and the cascades depend on them; the busy timeout makes concurrent writers wait.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
