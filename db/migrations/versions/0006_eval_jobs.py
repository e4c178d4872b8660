"""Evaluation jobs: an external evaluation asked for from the dashboard, run by a worker.

The dashboard never scores images itself; it queues a job that a worker claims, heart-beats and
reports progress on (images scored of the total), and that ends with an ``external_evals`` row
or the reason it failed. Existing tables are not touched.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATUSES = ("queued", "running", "succeeded", "failed")


def upgrade() -> None:
    op.create_table(
        "eval_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("dataset_path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *[
            sa.Column(name, sa.DateTime(timezone=True), nullable=True)
            for name in ("started_at", "finished_at", "heartbeat_at")
        ],
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("n_done", sa.Integer(), nullable=True),
        sa.Column("n_total", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("external_eval_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_jobs")),
        sa.CheckConstraint(sa.column("status").in_(STATUSES), name=op.f("ck_eval_jobs_status")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_eval_jobs_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["external_eval_id"],
            ["external_evals.id"],
            name=op.f("fk_eval_jobs_external_eval_id_external_evals"),
            ondelete="SET NULL",
        ),
    )
    op.create_index(op.f("ix_eval_jobs_run_id"), "eval_jobs", ["run_id"])
    op.create_index(op.f("ix_eval_jobs_status"), "eval_jobs", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_eval_jobs_status"), table_name="eval_jobs")
    op.drop_index(op.f("ix_eval_jobs_run_id"), table_name="eval_jobs")
    op.drop_table("eval_jobs")
