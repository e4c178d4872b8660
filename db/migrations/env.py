"""Alembic's entry point for the run store's migrations (run through :mod:`db.migrate`).

:mod:`db.migrate` hands over an open connection in ``config.attributes["connection"]``, so the
store's engine, with its SQLite pragmas, is the one that migrates; there is no alembic.ini.
"""

from __future__ import annotations

from alembic import context

from db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through db.migrate (python -m pipeline db upgrade)")

# render_as_batch: SQLite can only ALTER a table by copying it, which batch mode does for us.
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
