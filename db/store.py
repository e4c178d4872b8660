"""The run store: every run, its live training history, results and external evaluations.

``RunStore`` is the only way in; it returns frozen dataclasses and never hands out ORM rows, so
the dashboard, the CLI and the worker never hold a session. The default database is the SQLite
file ``runs/tbxray.db``; ``TBXRAY_DB_URL`` points the whole team at one PostgreSQL database
instead, unchanged (:mod:`db.engine`). This module holds suites, runs and their epochs; the
other parts of the store are its mixins (:mod:`db.queue`, :mod:`db.evaljobs`,
:mod:`db.externals`, :mod:`db.manage`, :mod:`db.serving`).

Lifecycle: ``queued -> running -> succeeded | failed | cancelled``. Every transition is a single
conditional ``UPDATE ... WHERE status IN (...)``, so two workers can never both claim a run, and a
run that is finished (succeeded, failed or cancelled) is never silently rewritten: a late
``finish_run`` on a run that was cancelled or reaped meanwhile raises :class:`StoreError`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import sessionmaker

from db import migrate
from db.base import not_found, suite_row, touch, transition, upsert
from db.engine import default_url, make_engine
from db.errors import RunNotFound
from db.evaljobs import EvalJobMixin
from db.externals import ExternalsMixin, external_row
from db.manage import ManageMixin
from db.models import RUN_KINDS, RUN_STATUSES, EpochRow, RunRow, SuiteRow
from db.queue import QueueMixin
from db.records import (
    RUN_INTERVALS,
    RUN_SCALARS,
    Epoch,
    Run,
    Suite,
    epoch_record,
    metric_columns,
    metric_float,
    new_id,
    run_record,
    suite_record,
    to_json,
    utc_now,
)
from db.serving import ServingMixin

EPOCH_METRICS: tuple[str, ...] = (
    "loss",
    "accuracy",
    "auc",
    "val_loss",
    "val_accuracy",
    "val_auc",
    "val_source_auc",
    "learning_rate",
    "seconds",
)
# How many candidates an ambiguous-prefix error names before it stops listing.
_MAX_LISTED = 10


class RunStore(QueueMixin, ManageMixin, EvalJobMixin, ExternalsMixin, ServingMixin):
    """Read and write runs, suites, epochs and external evaluations in one database.

    Opening a store checks its schema revision (:func:`db.migrate.check_on_open`): a local
    SQLite file is created or upgraded (after a backup, kept in ``backup_path``); a server
    database must already be current, else :class:`db.migrate.StoreVersionError` says which
    command to run. Several stores (threads, processes, machines) may share one database;
    SQLite waits up to 30 s for a lock instead of failing at once.
    """

    def __init__(self, url: str | None = None) -> None:
        url = url or default_url()
        self.engine: Engine = make_engine(url)
        # For display (dashboard footer, CLI); never leak a password.
        self.url = self.engine.url.render_as_string(hide_password=True)
        self.backup_path = migrate.check_on_open(self.engine, self.url)
        if self.backup_path is not None:
            print(
                f"upgraded the run store at {self.url} to revision {migrate.head()}; the "
                f"previous file is kept at {self.backup_path}",
                file=sys.stderr,
            )
        self._sessions = sessionmaker(self.engine)

    # Suites

    def create_suite(self, name: str, kind: str, description: str, spec: dict[str, Any]) -> Suite:
        """Record a new experiment suite; ``kind`` is a preset name or ``"custom"``."""
        row = _suite_row(name, kind, description, spec)
        with self.session() as s:
            s.add(row)
            return suite_record(row)

    def enqueue_suite(
        self,
        name: str,
        kind: str,
        description: str,
        spec: dict[str, Any],
        runs: Sequence[tuple[dict[str, Any], str]],
    ) -> tuple[Suite, list[Run]]:
        """Record a suite and queue its runs (``(config, name)`` pairs) in one transaction.

        Either the suite and every run are stored, or nothing is: a crash half-way cannot
        leave a partial suite for the workers.
        """
        suite = _suite_row(name, kind, description, spec)
        rows = [_queued_row(config, run_name, suite.id) for config, run_name in runs]
        with self.session() as s:
            s.add(suite)
            s.flush()
            s.add_all(rows)
            s.flush()
            return suite_record(suite), [run_record(row) for row in rows]

    def get_suite(self, suite_id: str) -> Suite:
        """The suite with this exact id; raises StoreError if there is none."""
        with self.session() as s:
            return suite_record(suite_row(s, suite_id))

    def list_suites(self) -> list[Suite]:
        """All suites, newest first."""
        query = select(SuiteRow).order_by(SuiteRow.created_at.desc(), SuiteRow.id)
        with self.session() as s:
            return [suite_record(row) for row in s.scalars(query)]

    # Runs: creation and lookup

    def create_run(
        self,
        config: dict[str, Any],
        name: str,
        suite_id: str | None = None,
        kind: str = "train",
    ) -> Run:
        """Enqueue a run (status ``queued``); a worker picks it up with :meth:`start_run`.

        ``config`` is the resolved run config as a JSON-able dict. ``kind``: ``"train"`` (a
        classifier) or ``"pretrain"`` (an encoder; started by the command that made it, never
        claimed by a worker). Raises StoreError if ``suite_id`` names no suite.
        """
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}; expected one of {RUN_KINDS}")
        with self.session() as s:
            if suite_id is not None:
                suite_row(s, suite_id)
            row = _queued_row(config, name, suite_id)
            row.kind = kind
            s.add(row)
            s.flush()
            return run_record(row)

    def get_run(self, run_id: str) -> Run:
        """The run with this id, or with the only id that starts with this prefix.

        Raises RunNotFound when nothing matches or when the prefix is ambiguous; the message
        then lists the matching ids and names.
        """
        if not run_id:
            raise RunNotFound("empty run id", run_id)
        with self.session() as s:
            row = s.get(RunRow, run_id)
            if row is not None:
                return run_record(row)
            query = (
                select(RunRow)
                .where(RunRow.id.startswith(run_id, autoescape=True))
                .order_by(RunRow.created_at.desc())
                .limit(_MAX_LISTED + 1)
            )
            rows = s.scalars(query).all()
            if not rows:
                raise RunNotFound(f"no run with id or id prefix {run_id!r}", run_id)
            if len(rows) > 1:
                listed = ", ".join(f"{r.id} ({r.name})" for r in rows[:_MAX_LISTED])
                more = ", and more" if len(rows) > _MAX_LISTED else ""
                raise RunNotFound(
                    f"run id prefix {run_id!r} is ambiguous; it matches {listed}{more}",
                    run_id,
                    [r.id for r in rows],
                )
            return run_record(rows[0])

    def list_runs(
        self,
        status: str | None = None,
        suite_id: str | None = None,
        limit: int | None = None,
        kind: str | None = "train",
    ) -> list[Run]:
        """Runs newest first, optionally only those with this status and/or in this suite.

        ``kind``: classifier runs (``"train"``, the default), pretraining runs
        (``"pretrain"``), or all (None).
        """
        query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id)
        if kind is not None:
            if kind not in RUN_KINDS:
                raise ValueError(f"unknown run kind {kind!r}; expected one of {RUN_KINDS}")
            query = query.where(RunRow.kind == kind)
        if status is not None:
            if status not in RUN_STATUSES:
                raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
            query = query.where(RunRow.status == status)
        if suite_id is not None:
            query = query.where(RunRow.suite_id == suite_id)
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be at least 1, got {limit}")
            query = query.limit(limit)
        with self.session() as s:
            return [run_record(row) for row in s.scalars(query)]

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        """Write (or overwrite) one epoch of history; also a heartbeat.

        Keys other than those in ``EPOCH_METRICS`` (e.g. extra Keras metrics) are ignored;
        non-finite values are stored as None.
        """
        values = {key: metric_float(metrics[key], key) for key in EPOCH_METRICS if key in metrics}
        with self.session() as s:
            touch(s, run_id, current_epoch=epoch, heartbeat_at=utc_now())
            # An upsert, because a re-sent epoch (the same number again) overwrites its row.
            upsert(
                s,
                EpochRow.__table__,
                {"run_id": run_id, "epoch": epoch, **values},
                ("run_id", "epoch"),
                values or {"epoch": epoch},
            )

    def epochs(self, run_id: str) -> list[Epoch]:
        """The run's training history, in epoch order (empty before the first epoch)."""
        query = select(EpochRow).where(EpochRow.run_id == run_id).order_by(EpochRow.epoch)
        with self.session() as s:
            return [epoch_record(row) for row in s.scalars(query)]

    def finish_run(
        self,
        run_id: str,
        *,
        metrics: Mapping[str, Any],
        artifacts_dir: str,
        data_fingerprint: str,
        versions: Mapping[str, Any],
        duration_s: float,
        external_evals: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
    ) -> Run:
        """Record a successful run's results in one transaction: status ``succeeded``.

        ``external_evals``: the run's evaluations on its external sets, as ``(dataset_path,
        data_fingerprint, metrics)`` (see :meth:`add_external_eval`), stored in the same
        transaction, so a run is never shown finished with only some of them.

        The leaderboard columns come from ``metrics`` keys ``auc``, ``auc_ci`` ([lo, hi]),
        ``sensitivity``, ``sensitivity_ci``, ``specificity``, ``specificity_ci``, ``f1``,
        ``accuracy``, ``precision``, ``threshold`` and ``who_met``; a missing key leaves its
        column None. The whole dict (lists, nested dicts, numpy values) is kept as JSON with
        NaN and infinities stored as null. Raises StoreError unless the run is running.
        """
        with self.session() as s:
            finished = run_record(
                transition(
                    s,
                    run_id,
                    "finish",
                    ("running",),
                    status="succeeded",
                    finished_at=utc_now(),
                    artifacts_dir=artifacts_dir,
                    data_fingerprint=data_fingerprint,
                    versions_json=to_json(versions),
                    duration_s=duration_s,
                    metrics_json=to_json(metrics),
                    who_met=None if metrics.get("who_met") is None else bool(metrics["who_met"]),
                    **metric_columns(metrics, RUN_SCALARS, RUN_INTERVALS),
                )
            )
            s.add_all(external_row(run_id, *e) for e in external_evals)
            return finished

    def fail_run(self, run_id: str, error: str, duration_s: float | None = None) -> Run:
        """Mark a queued or running run ``failed``, keeping ``error`` (the traceback) for display.

        Raises StoreError if the run already finished (e.g. it was cancelled meanwhile).
        """
        with self.session() as s:
            return run_record(
                transition(
                    s,
                    run_id,
                    "fail",
                    ("queued", "running"),
                    status="failed",
                    finished_at=utc_now(),
                    error=error,
                    duration_s=duration_s,
                )
            )

    def delete_run(self, run_id: str) -> None:
        """Delete the run, its epochs and its external evaluations (not its artifact files)."""
        with self.session() as s:
            result = s.execute(
                delete(RunRow).where(RunRow.id == run_id),
                execution_options={"synchronize_session": False},
            )
            if result.rowcount == 0:
                raise not_found(run_id)


def _queued_row(config: dict[str, Any], name: str, suite_id: str | None) -> RunRow:
    return RunRow(
        id=new_id(),
        name=name,
        status="queued",
        suite_id=suite_id,
        config_json=to_json(config),
        created_at=utc_now(),
        cancel_requested=False,
    )


def _suite_row(name: str, kind: str, description: str, spec: dict[str, Any]) -> SuiteRow:
    return SuiteRow(
        id=new_id(),
        name=name,
        kind=kind,
        description=description,
        spec_json=to_json(spec),
        created_at=utc_now(),
    )
