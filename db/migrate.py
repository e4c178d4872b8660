"""Schema versions of the run store (Alembic): inspect, upgrade, downgrade, and the opening rule.

The revisions live in ``db/migrations/versions``; the newest is the *head* this code needs.
Opening a store (:func:`check_on_open`, called by ``RunStore``) follows one rule:

- a local SQLite file that is older than the code is upgraded, after a copy is kept beside it
  (``tbxray.db.bak-<revision>``); a new, empty one is created at the head;
- a server database (PostgreSQL) is never changed implicitly: an empty or older one is refused
  with one line naming ``python -m pipeline db upgrade``;
- a store *newer* than the code is refused, naming its revision and the code's, on any database.

A store made before migrations existed (the six tables, no ``alembic_version``) is recognised as
revision 0001 and stamped, never recreated.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect

from db.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The tables of revision 0001: what a store created before migrations existed holds.
_FIRST_TABLES = frozenset({"suites", "runs", "epochs", "external_evals", "promotions", "workers"})
_FIRST_REVISION = "0001"
UPGRADE_COMMAND = "python -m pipeline db upgrade"


class StoreVersionError(StoreError):
    """The store's schema does not match this code and cannot be used until that is fixed."""


@dataclass(frozen=True)
class SchemaState:
    """Where a store's schema stands against the code.

    ``revision`` is the store's revision (None for an empty store; ``"0001"`` for a store made
    before migrations, with ``unversioned`` set); ``head`` is the revision this code needs.
    """

    revision: str | None
    head: str
    unversioned: bool = False
    known: bool = True

    @property
    def current(self) -> bool:
        """True when the store is at the code's revision and needs nothing."""
        return self.revision == self.head and not self.unversioned

    def describe(self) -> str:
        """One line for ``db current``: the revision and what, if anything, to do."""
        if self.revision is None:
            return f"empty (no tables); this code needs revision {self.head}"
        if not self.known:
            return (
                f"revision {self.revision}, newer than this code (which knows up to "
                f"{self.head}): use newer code with this store"
            )
        if self.unversioned:
            return (
                f"made before migrations (schema of revision {self.revision}, not stamped); "
                f"this code needs {self.head}"
            )
        if self.current:
            return f"revision {self.revision} (current)"
        return f"revision {self.revision}; this code needs {self.head}"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision: the schema this code reads and writes."""
    revision = _scripts().get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return revision


def state(engine: Engine) -> SchemaState:
    """Read the store's revision (no changes made)."""
    with engine.connect() as conn:
        return _state(conn)


def _state(conn: Connection) -> SchemaState:
    tables = set(inspect(conn).get_table_names())
    code_head = head()
    if "alembic_version" in tables:
        revision = MigrationContext.configure(conn).get_current_revision()
        known = revision is None or _is_known(revision)
        return SchemaState(revision, code_head, known=known)
    if not tables & _FIRST_TABLES:
        return SchemaState(None, code_head)
    missing = _FIRST_TABLES - tables
    if missing:
        raise StoreVersionError(
            f"the run store has some of its tables but not {', '.join(sorted(missing))}: it "
            "is not a store this code can recognise; move it aside and start a new one"
        )
    return SchemaState(_FIRST_REVISION, code_head, unversioned=True)


def _is_known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except (RevisionError, CommandError):  # alembic wraps an unknown id in CommandError
        return False


def _is_local_file(engine: Engine) -> bool:
    database = engine.url.database
    return (
        engine.dialect.name == "sqlite"
        and bool(database)
        and database != ":memory:"
        and not str(database).startswith("file:")
    )


def backup(engine: Engine, label: str) -> Path | None:
    """Copy a local SQLite store to ``<file>.bak-<label>`` (a consistent copy, WAL included).

    Returns the copy's path, or None for a store that is not a local file. An existing backup
    of the same label is kept; the new one then gets a time stamp too.
    """
    if not _is_local_file(engine):
        return None
    source = Path(str(engine.url.database))
    if not source.exists():
        return None
    target = source.with_name(f"{source.name}.bak-{label}")
    if target.exists():
        target = source.with_name(f"{target.name}-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return target


def _run(engine: Engine, action: str, target: str) -> None:
    """Run an Alembic command on the engine's own connection (its SQLite pragmas included)."""
    cfg = _config()
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # A batch migration copies a table and drops the old one; with foreign keys on, the
            # drop would cascade to the rows that point at it. Off for the migration, checked
            # after it.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        cfg.attributes["connection"] = conn
        if _state(conn).unversioned:
            command.stamp(cfg, _FIRST_REVISION)
        if action == "upgrade":
            command.upgrade(cfg, target)
        else:
            command.downgrade(cfg, target)
        conn.commit()
        if sqlite:
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            if broken:
                raise StoreVersionError(f"migration left rows with broken references: {broken}")


def upgrade(engine: Engine, target: str = "head") -> Path | None:
    """Bring the store to ``target`` (default: this code's head); returns the backup's path.

    A store made before migrations is stamped 0001 first. A local SQLite file is backed up
    before anything changes. Raises StoreVersionError for a store newer than the code.
    """
    before = state(engine)
    if not before.known:
        raise StoreVersionError(_too_new(engine, before))
    if before.current and target in ("head", before.head):
        return None
    saved = None
    if before.revision is not None:
        saved = backup(engine, "unversioned" if before.unversioned else before.revision)
    _run(engine, "upgrade", target)
    return saved


def downgrade(engine: Engine, target: str) -> Path | None:
    """Take the store back to ``target`` (a revision, or ``base`` for no tables), after a backup."""
    before = state(engine)
    if not before.known:
        raise StoreVersionError(_too_new(engine, before))
    saved = backup(engine, "unversioned" if before.unversioned else str(before.revision))
    _run(engine, "downgrade", target)
    return saved


def check_on_open(engine: Engine, url: str) -> Path | None:
    """Make the store usable by this code, or refuse with one line saying what to run.

    Local SQLite: created or upgraded (after a backup, whose path is returned). Any other
    database: refused unless already current. Newer than the code: refused everywhere.
    """
    now = state(engine)
    if not now.known:
        raise StoreVersionError(_too_new(engine, now, url))
    if now.current:
        return None
    if engine.dialect.name == "sqlite":
        return upgrade(engine)
    if now.revision is None:
        raise StoreVersionError(
            f"the run store at {url} has no tables yet; create them with `{UPGRADE_COMMAND}`"
        )
    raise StoreVersionError(
        f"the run store at {url} is at revision {now.revision}"
        f"{' (unversioned)' if now.unversioned else ''} and this code needs {now.head}; "
        f"back it up, then run `{UPGRADE_COMMAND}` (server databases are never changed "
        "implicitly)"
    )


def _too_new(engine: Engine, now: SchemaState, url: str | None = None) -> str:
    where = url or engine.url.render_as_string(hide_password=True)
    return (
        f"the run store at {where} is at revision {now.revision}, newer than this code "
        f"(which knows up to {now.head}): update the code, or use another store"
    )
