"""Runs can be archived, tagged and annotated.

An archived run is hidden from the leaderboard until it is restored (``archived_at``); tags (a
JSON list) and a free note are the researcher's own labels. Runs from before are not archived,
have no tags and an empty note.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("tags_json", sa.Text(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch.add_column(sa.Column("note", sa.Text(), nullable=False, server_default=sa.text("''")))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("note")
        batch.drop_column("tags_json")
        batch.drop_column("archived_at")
