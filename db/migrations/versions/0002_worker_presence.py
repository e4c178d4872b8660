"""Workers record the runs folder they write to; a stopped worker's row is removed.

Workers on several machines must share one runs folder: a run's artifacts are read from the
path its worker wrote them to. With the folder recorded, a worker whose folder differs from the
live workers' refuses to start, naming both, instead of training runs nobody else can open.
A worker that stops cleanly now deletes its row at once, so ``stopped_at`` goes, and so do the
rows of workers that had stopped.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    workers = sa.table("workers", sa.column("stopped_at"))
    op.execute(sa.delete(workers).where(workers.c.stopped_at.is_not(None)))
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("runs_dir", sa.Text(), nullable=True))
        batch.drop_column("stopped_at")


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_column("runs_dir")
