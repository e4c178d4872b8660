"""Site calibrations, and promotions that serve one.

A calibration is a run's threshold for one site, chosen on part of the site's labelled sample and
checked on the rest; a promotion may name one, and the public app then uses its threshold.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("dataset_path", sa.Text(), nullable=False),
        sa.Column("data_fingerprint", sa.Text(), nullable=False),
        sa.Column("n_images", sa.Integer(), nullable=False),
        sa.Column("prevalence", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        *[
            sa.Column(name, sa.Float(), nullable=True)
            for name in (
                "sensitivity",
                "sensitivity_lo",
                "sensitivity_hi",
                "specificity",
                "specificity_lo",
                "specificity_hi",
            )
        ],
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_calibrations_run_id_runs"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_calibrations_run_id"), "calibrations", ["run_id"])
    with op.batch_alter_table("promotions") as batch:
        batch.add_column(sa.Column("calibration_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_promotions_calibration_id_calibrations"),
            "calibrations",
            ["calibration_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("promotions") as batch:
        batch.drop_constraint(op.f("fk_promotions_calibration_id_calibrations"), type_="foreignkey")
        batch.drop_column("calibration_id")
    op.drop_index(op.f("ix_calibrations_run_id"), table_name="calibrations")
    op.drop_table("calibrations")
