"""The run store's schema as it was before migrations existed (suites to workers).

A store created by ``create_all`` before Alembic arrived has exactly these tables and is stamped
with this revision instead of being recreated (see db.migrate).

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "suites",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suites"),
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("heartbeat_at", _utc(), nullable=False),
        sa.Column("current_run", sa.String(32), nullable=True),
        sa.Column("stopped_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_workers"),
    )
    metrics = [
        sa.Column(name, sa.Float(), nullable=True)
        for name in (
            "auc",
            "auc_lo",
            "auc_hi",
            "sensitivity",
            "sensitivity_lo",
            "sensitivity_hi",
            "specificity",
            "specificity_lo",
            "specificity_hi",
            "f1",
            "accuracy",
            "precision",
            "threshold",
        )
    ]
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("suite_id", sa.String(32), nullable=True),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("heartbeat_at", _utc(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("current_epoch", sa.Integer(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("data_fingerprint", sa.Text(), nullable=True),
        sa.Column("artifacts_dir", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("versions_json", sa.Text(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        *metrics,
        sa.Column("who_met", sa.Boolean(), nullable=True),
        sa.Column("metrics_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.CheckConstraint(sa.column("status").in_(STATUSES), name=op.f("ck_runs_status")),
        sa.ForeignKeyConstraint(
            ["suite_id"], ["suites.id"], name="fk_runs_suite_id_suites", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_runs_suite_id", "runs", ["suite_id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "epochs",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("epoch", sa.Integer(), autoincrement=False, nullable=False),
        *[
            sa.Column(name, sa.Float(), nullable=True)
            for name in (
                "loss",
                "accuracy",
                "auc",
                "val_loss",
                "val_accuracy",
                "val_auc",
                "learning_rate",
                "seconds",
            )
        ],
        sa.PrimaryKeyConstraint("run_id", "epoch", name="pk_epochs"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_epochs_run_id_runs", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "external_evals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("dataset_path", sa.Text(), nullable=False),
        sa.Column("data_fingerprint", sa.Text(), nullable=False),
        sa.Column("n_images", sa.Integer(), nullable=True),
        *[
            sa.Column(name, sa.Float(), nullable=True)
            for name in (
                "auc",
                "auc_lo",
                "auc_hi",
                "sensitivity",
                "specificity",
                "f1",
                "accuracy",
            )
        ],
        sa.Column("metrics_json", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_external_evals"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_external_evals_run_id_runs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_external_evals_run_id", "external_evals", ["run_id"])
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("promoted_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_promotions"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_promotions_run_id_runs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_promotions_run_id", "promotions", ["run_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_promotions_run_id", "promotions"),
        ("ix_external_evals_run_id", "external_evals"),
        ("ix_runs_status", "runs"),
        ("ix_runs_suite_id", "runs"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("promotions", "external_evals", "epochs", "runs", "workers", "suites"):
        op.drop_table(table)
