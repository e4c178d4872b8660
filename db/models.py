"""SQLAlchemy 2 tables of the run store: suites, runs, their epochs, external evaluations and
the evaluation jobs that workers run for the dashboard.

The schema changes only through Alembic revisions (``db/migrations/versions``); a test checks
that the migrated schema equals these classes. These ORM classes are private to ``db``;
everything outside it gets the frozen dataclasses that the store returns. JSON columns are
plain text (``*_json``) so the schema is the same on SQLite and PostgreSQL. Timestamps are
timezone-aware UTC on the way in and out.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

RUN_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
RUN_KINDS: tuple[str, ...] = ("train", "pretrain")

# Named constraints and indexes, so that a later Alembic migration can address them by name.
_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always a timezone-aware UTC ``datetime`` in Python.

    SQLite keeps no offset and hands back naive values; PostgreSQL hands back the session's
    time zone. Both are normalised to UTC here, so callers can compare and subtract freely.
    Naive values are refused on the way in, because their time zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the run store; use UTC-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base holding the store's metadata."""

    metadata = MetaData(naming_convention=_NAMING)


class SuiteRow(Base):
    """An experiment suite: a base config and the factor(s) it varies, as a JSON spec."""

    __tablename__ = "suites"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # preset name, or "custom"
    description: Mapped[str] = mapped_column(Text)
    spec_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RunRow(Base):
    """One training run: its config, lifecycle, and the final metrics the leaderboard sorts on."""

    __tablename__ = "runs"
    __table_args__ = (
        # Rendered with literal values in the DDL; no SQL text is assembled by hand.
        CheckConstraint(literal_column("status").in_(RUN_STATUSES), name="status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    # "train" (a classifier) or "pretrain" (an encoder, python -m pipeline pretrain).
    kind: Mapped[str] = mapped_column(String(16), default="train", server_default=text("'train'"))
    status: Mapped[str] = mapped_column(String(16), index=True)
    suite_id: Mapped[str | None] = mapped_column(
        ForeignKey("suites.id", ondelete="SET NULL"), index=True
    )
    config_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(Text)
    current_epoch: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    data_fingerprint: Mapped[str | None] = mapped_column(Text)
    artifacts_dir: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    versions_json: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)

    auc: Mapped[float | None] = mapped_column(Float)
    auc_lo: Mapped[float | None] = mapped_column(Float)
    auc_hi: Mapped[float | None] = mapped_column(Float)
    sensitivity: Mapped[float | None] = mapped_column(Float)
    sensitivity_lo: Mapped[float | None] = mapped_column(Float)
    sensitivity_hi: Mapped[float | None] = mapped_column(Float)
    specificity: Mapped[float | None] = mapped_column(Float)
    specificity_lo: Mapped[float | None] = mapped_column(Float)
    specificity_hi: Mapped[float | None] = mapped_column(Float)
    f1: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    precision: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    who_met: Mapped[bool | None] = mapped_column()
    metrics_json: Mapped[str | None] = mapped_column(Text)
    # 0005: run management. An archived run is hidden from the leaderboard until restored;
    # tags (a JSON list of text) and a free note are the researcher's own, editable any time.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tags_json: Mapped[str] = mapped_column(Text, default="[]", server_default=text("'[]'"))
    note: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))


class EpochRow(Base):
    """Training history: one row per (run, epoch), written live by the training callback."""

    __tablename__ = "epochs"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    loss: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    auc: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    val_auc: Mapped[float | None] = mapped_column(Float)
    # The mean per-source validation AUC (eval.per_source with several sources), else None.
    val_source_auc: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)


class ExternalEvalRow(Base):
    """A trained run evaluated on another dataset folder (external validation)."""

    __tablename__ = "external_evals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    dataset_path: Mapped[str] = mapped_column(Text)
    data_fingerprint: Mapped[str] = mapped_column(Text)
    n_images: Mapped[int | None] = mapped_column(Integer)
    auc: Mapped[float | None] = mapped_column(Float)
    auc_lo: Mapped[float | None] = mapped_column(Float)
    auc_hi: Mapped[float | None] = mapped_column(Float)
    sensitivity: Mapped[float | None] = mapped_column(Float)
    specificity: Mapped[float | None] = mapped_column(Float)
    f1: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    metrics_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CalibrationRow(Base):
    """A run's operating point for one site: a threshold chosen on part of the site's labelled
    sample and checked on the rest (0003). Never changes the run's own validated threshold."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    site: Mapped[str] = mapped_column(Text)
    dataset_path: Mapped[str] = mapped_column(Text)
    data_fingerprint: Mapped[str] = mapped_column(Text)
    n_images: Mapped[int] = mapped_column(Integer)
    prevalence: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    sensitivity: Mapped[float | None] = mapped_column(Float)
    sensitivity_lo: Mapped[float | None] = mapped_column(Float)
    sensitivity_hi: Mapped[float | None] = mapped_column(Float)
    specificity: Mapped[float | None] = mapped_column(Float)
    specificity_lo: Mapped[float | None] = mapped_column(Float)
    specificity_hi: Mapped[float | None] = mapped_column(Float)
    details_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PromotionRow(Base):
    """A run promoted to be the model the public app serves; the newest promotion wins. With a
    calibration (0003), the public gets that site's threshold instead of the validated one."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    promoted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # 0004: who promoted it (the note says why); empty for promotions made before.
    promoted_by: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    calibration_id: Mapped[int | None] = mapped_column(
        ForeignKey("calibrations.id", ondelete="SET NULL")
    )


class WorkerRow(Base):
    """A queue worker process, heart-beating while it lives (idle or training); removed when it
    stops cleanly, left behind (and soon not alive) when it is killed."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    current_run: Mapped[str | None] = mapped_column(String(32))
    # Where the worker writes run artifacts; every worker of one store must share it (0002).
    runs_dir: Mapped[str | None] = mapped_column(Text)


EVAL_JOB_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed")


class EvalJobRow(Base):
    """An external evaluation asked for from the dashboard, waiting for or done by a worker
    (0006). Progress and heartbeat work as a run's; the result is an ``external_evals`` row."""

    __tablename__ = "eval_jobs"
    __table_args__ = (
        CheckConstraint(literal_column("status").in_(EVAL_JOB_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    dataset_path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(Text)
    n_done: Mapped[int | None] = mapped_column(Integer)
    n_total: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    external_eval_id: Mapped[int | None] = mapped_column(
        ForeignKey("external_evals.id", ondelete="SET NULL")
    )
