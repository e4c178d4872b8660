"""Promotions record who promoted the run (the note already says why).

Serving a model to the public is a decision someone answers for; the dashboard asks for a name
and a reason, and the history shows both. Rows from before have an empty name.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("promotions") as batch:
        batch.add_column(
            sa.Column("promoted_by", sa.Text(), nullable=False, server_default=sa.text("''"))
        )


def downgrade() -> None:
    with op.batch_alter_table("promotions") as batch:
        batch.drop_column("promoted_by")
