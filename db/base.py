"""What every part of the run store shares: the session, status transitions and upserts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from db.errors import RunNotFound, StoreError
from db.models import RunRow, SuiteRow


class StoreBase:
    """The engine and the one-transaction session that the store's parts build on."""

    engine: Engine
    _sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commits when the block ends, rolls back if it raises, then closes.

        For the store's own methods and for tests; other code should use the methods, which
        return dataclasses instead of rows bound to this session.
        """
        with self._sessions.begin() as session:
            yield session


def upsert(
    s: Session, table: Table, values: dict[str, Any], key: str, update_: dict[str, Any]
) -> None:
    """Insert a row, or update it when one with the same ``key`` exists, in one statement.

    ``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL: two writers registering the
    same key at the same moment both succeed, where a read-then-insert would fail one of them.
    """
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(table)
    elif dialect == "sqlite":
        statement = sqlite.insert(table)
    else:
        raise StoreError(f"the run store supports SQLite and PostgreSQL, not {dialect}")
    keys = [key] if isinstance(key, str) else list(key)
    s.execute(statement.values(**values).on_conflict_do_update(index_elements=keys, set_=update_))


def transition(
    s: Session, run_id: str, action: str, allowed: tuple[str, ...], **values: Any
) -> RunRow:
    """Apply ``values`` to the run only if its status is in ``allowed``; return the fresh row.

    The status test is part of the UPDATE itself, so it is atomic across processes.
    """
    result = s.execute(
        update(RunRow)
        .where(RunRow.id == run_id, RunRow.status.in_(allowed))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        status = s.scalar(select(RunRow.status).where(RunRow.id == run_id))
        if status is None:
            raise not_found(run_id)
        raise StoreError(
            f"cannot {action} run {run_id}: it is {status}, and {action} needs it to be "
            + " or ".join(allowed)
        )
    return s.get_one(RunRow, run_id, populate_existing=True)


def touch(s: Session, run_id: str, **values: Any) -> None:
    """Update columns of the run whatever its status; RunNotFound if it does not exist."""
    result = s.execute(
        update(RunRow)
        .where(RunRow.id == run_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        raise not_found(run_id)


def suite_row(s: Session, suite_id: str) -> SuiteRow:
    """The suite's row; StoreError if there is none."""
    row = s.get(SuiteRow, suite_id)
    if row is None:
        raise StoreError(f"no suite with id {suite_id!r}")
    return row


def not_found(run_id: str) -> RunNotFound:
    """The error for an unknown run id."""
    return RunNotFound(f"no run with id {run_id!r}", run_id)
