"""The run store: every run, its live training history, results and external evaluations.

``RunStore`` is the only way in; it returns frozen dataclasses and never hands out ORM rows, so
the dashboard, the CLI and the worker never hold a session. The default database is the SQLite
file ``runs/tbxray.db``; ``TBXRAY_DB_URL`` points the whole team at one PostgreSQL database
instead, unchanged.

Lifecycle: ``queued -> running -> succeeded | failed | cancelled``. Every transition is a single
conditional ``UPDATE ... WHERE status IN (...)``, so two workers can never both claim a run, and a
run that is finished (succeeded, failed or cancelled) is never silently rewritten: a late
``finish_run`` on a run that was cancelled or reaped meanwhile raises :class:`StoreError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import (
    RUN_STATUSES,
    Base,
    EpochRow,
    ExternalEvalRow,
    PromotionRow,
    RunRow,
    SuiteRow,
    WorkerRow,
)
from db.records import (
    EXTERNAL_INTERVALS,
    EXTERNAL_SCALARS,
    RUN_INTERVALS,
    RUN_SCALARS,
    Epoch,
    ExternalEval,
    Promotion,
    Run,
    Suite,
    Worker,
    epoch_record,
    external_eval_record,
    metric_columns,
    metric_float,
    new_id,
    run_record,
    suite_record,
    to_json,
    utc_now,
)

EPOCH_METRICS: tuple[str, ...] = (
    "loss",
    "accuracy",
    "auc",
    "val_loss",
    "val_accuracy",
    "val_auc",
    "learning_rate",
    "seconds",
)
# How many candidates an ambiguous-prefix error names before it stops listing.
_MAX_LISTED = 10


class StoreError(RuntimeError):
    """The store refused an operation, e.g. starting a run that is not queued."""


class RunNotFound(StoreError):  # noqa: N818 -- the name is part of the public API
    """No run has this id, or an id prefix matches several runs (listed in ``matches``)."""

    def __init__(self, message: str, run_id: str, matches: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.matches = tuple(matches)


def default_url() -> str:
    """The database URL to use when none is given.

    ``TBXRAY_DB_URL`` if set (any SQLAlchemy URL, e.g. PostgreSQL for a team); otherwise the
    SQLite file ``<runs_dir>/tbxray.db``, where runs_dir is ``TBXRAY_RUNS_DIR`` or ``runs``
    relative to the current directory. That folder is created if missing.
    """
    url = os.environ.get("TBXRAY_DB_URL")
    if url:
        return url
    runs_dir = Path(os.environ.get("TBXRAY_RUNS_DIR") or "runs")
    runs_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs_dir / 'tbxray.db'}"


class RunStore:
    """Read and write runs, suites, epochs and external evaluations in one database.

    Creating a store creates any missing tables. Several stores (threads, processes, machines)
    may share one database; SQLite waits up to 30 s for a lock instead of failing at once.
    """

    def __init__(self, url: str | None = None) -> None:
        url = url or default_url()
        self.engine: Engine = create_engine(url)
        # For display (dashboard footer, CLI); never leak a password.
        self.url = self.engine.url.render_as_string(hide_password=True)
        if self.engine.dialect.name == "sqlite":
            _prepare_sqlite(self.engine)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commits when the block ends, rolls back if it raises, then closes.

        For the store's own methods and for tests; other code should use the methods, which
        return dataclasses instead of rows bound to this session.
        """
        with self._sessions.begin() as session:
            yield session

    # Suites

    def create_suite(self, name: str, kind: str, description: str, spec: dict[str, Any]) -> Suite:
        """Record a new experiment suite; ``kind`` is a preset name or ``"custom"``."""
        row = SuiteRow(
            id=new_id(),
            name=name,
            kind=kind,
            description=description,
            spec_json=to_json(spec),
            created_at=utc_now(),
        )
        with self.session() as s:
            s.add(row)
            return suite_record(row)

    def get_suite(self, suite_id: str) -> Suite:
        """The suite with this exact id; raises StoreError if there is none."""
        with self.session() as s:
            return suite_record(_suite_row(s, suite_id))

    def list_suites(self) -> list[Suite]:
        """All suites, newest first."""
        query = select(SuiteRow).order_by(SuiteRow.created_at.desc(), SuiteRow.id)
        with self.session() as s:
            return [suite_record(row) for row in s.scalars(query)]

    # Runs: creation and lookup

    def create_run(self, config: dict[str, Any], name: str, suite_id: str | None = None) -> Run:
        """Enqueue a run (status ``queued``); a worker picks it up with :meth:`start_run`.

        ``config`` is the resolved run config as a JSON-able dict. Raises StoreError if
        ``suite_id`` names no suite.
        """
        with self.session() as s:
            if suite_id is not None:
                _suite_row(s, suite_id)
            row = RunRow(
                id=new_id(),
                name=name,
                status="queued",
                suite_id=suite_id,
                config_json=to_json(config),
                created_at=utc_now(),
                cancel_requested=False,
            )
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
        self, status: str | None = None, suite_id: str | None = None, limit: int | None = None
    ) -> list[Run]:
        """Runs newest first, optionally only those with this status and/or in this suite."""
        query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id)
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

    # Runs: lifecycle

    def start_run(self, run_id: str, worker: str) -> Run:
        """Claim a queued run for ``worker``: status ``running``, started and heartbeat now.

        Atomic: of several workers racing for one run, exactly one succeeds; the others get
        StoreError (the run is no longer queued) and should try the next one.
        """
        now = utc_now()
        with self.session() as s:
            return run_record(
                _transition(
                    s,
                    run_id,
                    "start",
                    ("queued",),
                    status="running",
                    started_at=now,
                    heartbeat_at=now,
                    worker=worker,
                )
            )

    def claim_next(self, worker: str) -> Run | None:
        """Start the oldest queued run for ``worker``; None when the queue is empty.

        Safe with many workers on one database: each candidate is claimed with the atomic
        :meth:`start_run`, and a worker that loses a race simply tries the next candidate.
        """
        while True:
            query = (
                select(RunRow.id)
                .where(RunRow.status == "queued")
                .order_by(RunRow.created_at, RunRow.id)
                .limit(8)
            )
            with self.session() as s:
                candidates = list(s.scalars(query))
            if not candidates:
                return None
            for run_id in candidates:
                try:
                    return self.start_run(run_id, worker)
                except StoreError:
                    continue

    def reap_stale(self, older_than_s: float, *, requeue: bool = False) -> list[Run]:
        """Runs whose worker stopped heart-beating ``older_than_s`` ago: failed, or re-queued.

        A failed run records why in ``error``. A re-queued run starts over: its epochs are
        deleted and it waits for the next worker. Returns the runs as they are afterwards.
        """
        cutoff = datetime.fromtimestamp(utc_now().timestamp() - older_than_s, UTC)
        stale_query = select(RunRow).where(RunRow.status == "running", RunRow.heartbeat_at < cutoff)
        reaped = []
        with self.session() as s:
            for row in s.scalars(stale_query).all():
                if requeue:
                    values: dict[str, Any] = {
                        "status": "queued",
                        "started_at": None,
                        "heartbeat_at": None,
                        "worker": None,
                        "current_epoch": None,
                    }
                else:
                    values = {
                        "status": "failed",
                        "finished_at": utc_now(),
                        "error": (
                            f"worker {row.worker!r} stopped sending heartbeats (last at "
                            f"{row.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC, more than "
                            f"{older_than_s:.0f} s ago): it was killed or its machine was lost. "
                            "Re-queue the run to train it again."
                        ),
                    }
                result = s.execute(
                    update(RunRow)
                    .where(
                        RunRow.id == row.id,
                        RunRow.status == "running",
                        RunRow.heartbeat_at < cutoff,
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount and requeue:
                    s.execute(delete(EpochRow).where(EpochRow.run_id == row.id))
                if result.rowcount:
                    reaped.append(row.id)
        return [self.get_run(run_id) for run_id in reaped]

    def cancel_suite(self, suite_id: str) -> list[Run]:
        """Cancel every queued or running run of the suite; returns those cancelled."""
        with self.session() as s:
            _suite_row(s, suite_id)
        active = [r for r in self.list_runs(suite_id=suite_id) if r.status in ("queued", "running")]
        return [self.cancel_run(r.id) for r in active]

    def heartbeat(self, run_id: str) -> None:
        """Mark the run's worker as alive now; a stale heartbeat means the worker died."""
        with self.session() as s:
            _touch(s, run_id, heartbeat_at=utc_now())

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        """Write (or overwrite) one epoch of history; also a heartbeat.

        Keys other than those in ``EPOCH_METRICS`` (e.g. extra Keras metrics) are ignored;
        non-finite values are stored as None.
        """
        with self.session() as s:
            _touch(s, run_id, current_epoch=epoch, heartbeat_at=utc_now())
            row = s.get(EpochRow, (run_id, epoch))
            if row is None:
                row = EpochRow(run_id=run_id, epoch=epoch)
                s.add(row)
            for key in EPOCH_METRICS:
                if key in metrics:
                    setattr(row, key, metric_float(metrics[key], key))

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
    ) -> Run:
        """Record a successful run's results in one transaction: status ``succeeded``.

        The leaderboard columns come from ``metrics`` keys ``auc``, ``auc_ci`` ([lo, hi]),
        ``sensitivity``, ``sensitivity_ci``, ``specificity``, ``specificity_ci``, ``f1``,
        ``accuracy``, ``precision``, ``threshold`` and ``who_met``; a missing key leaves its
        column None. The whole dict (lists, nested dicts, numpy values) is kept as JSON with
        NaN and infinities stored as null. Raises StoreError unless the run is running.
        """
        with self.session() as s:
            return run_record(
                _transition(
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

    def fail_run(self, run_id: str, error: str, duration_s: float | None = None) -> Run:
        """Mark a queued or running run ``failed``, keeping ``error`` (the traceback) for display.

        Raises StoreError if the run already finished (e.g. it was cancelled meanwhile).
        """
        with self.session() as s:
            return run_record(
                _transition(
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

    def cancel_run(self, run_id: str) -> Run:
        """Cancel a queued or running run: status ``cancelled`` and ``cancel_requested`` set.

        A queued run is never started. A running run's worker sees ``cancel_requested`` (via
        :meth:`get_run`) and stops; its later ``finish_run`` / ``fail_run`` raise StoreError.
        Cancelling a cancelled run returns it unchanged; a succeeded or failed run raises.
        """
        with self.session() as s:
            row = s.get(RunRow, run_id)
            if row is not None and row.status == "cancelled":
                return run_record(row)
            return run_record(
                _transition(
                    s,
                    run_id,
                    "cancel",
                    ("queued", "running"),
                    status="cancelled",
                    cancel_requested=True,
                    finished_at=utc_now(),
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
                raise _not_found(run_id)

    # External validation

    def add_external_eval(
        self, run_id: str, *, dataset_path: str, data_fingerprint: str, metrics: Mapping[str, Any]
    ) -> ExternalEval:
        """Store the run's evaluation on another dataset; typed columns as in finish_run.

        ``metrics["n"]`` is the number of images evaluated. Raises RunNotFound for an unknown
        run.
        """
        with self.session() as s:
            if s.get(RunRow, run_id) is None:
                raise _not_found(run_id)
            n = metrics.get("n")
            row = ExternalEvalRow(
                run_id=run_id,
                dataset_path=dataset_path,
                data_fingerprint=data_fingerprint,
                n_images=None if n is None else int(n),
                metrics_json=to_json(metrics),
                created_at=utc_now(),
                **metric_columns(metrics, EXTERNAL_SCALARS, EXTERNAL_INTERVALS),
            )
            s.add(row)
            s.flush()
            return external_eval_record(row)

    def external_evals(self, run_id: str) -> list[ExternalEval]:
        """The run's external evaluations, newest first."""
        query = (
            select(ExternalEvalRow)
            .where(ExternalEvalRow.run_id == run_id)
            .order_by(ExternalEvalRow.created_at.desc(), ExternalEvalRow.id.desc())
        )
        with self.session() as s:
            return [external_eval_record(row) for row in s.scalars(query)]

    # Serving: which run the public app uses

    def promote(self, run_id: str, note: str = "") -> Promotion:
        """Make a succeeded run the one the public app serves (the newest promotion wins).

        Raises StoreError if the run did not succeed, RunNotFound if there is no such run.
        """
        run = self.get_run(run_id)
        if run.status != "succeeded":
            raise StoreError(f"cannot promote run {run.id}: it is {run.status}, not succeeded")
        row = PromotionRow(run_id=run.id, note=note, promoted_at=utc_now())
        with self.session() as s:
            s.add(row)
            s.flush()
            return Promotion(row.id, row.run_id, row.note, row.promoted_at)

    def promotions(self) -> list[Promotion]:
        """Every promotion, newest first (the history shown on the dashboard)."""
        query = select(PromotionRow).order_by(
            PromotionRow.promoted_at.desc(), PromotionRow.id.desc()
        )
        with self.session() as s:
            return [Promotion(r.id, r.run_id, r.note, r.promoted_at) for r in s.scalars(query)]

    def served_run(self) -> Run | None:
        """The run the public app should serve, or None when no model is available yet.

        The newest promotion whose run still exists and succeeded; before any promotion, the
        newest succeeded run named (or configured) as a baseline.
        """
        with self.session() as s:
            promoted = s.scalars(
                select(RunRow)
                .join(PromotionRow, PromotionRow.run_id == RunRow.id)
                .where(RunRow.status == "succeeded")
                .order_by(PromotionRow.promoted_at.desc(), PromotionRow.id.desc())
                .limit(1)
            ).first()
            if promoted is not None:
                return run_record(promoted)
        for run in self.list_runs(status="succeeded"):
            if "baseline" in run.name.lower() or run.config.get("name") == "baseline":
                return run
        return None

    # Workers

    def worker_alive(self, name: str, current_run: str | None = None) -> None:
        """Record that worker ``name`` is alive now (registering it the first time)."""
        now = utc_now()
        with self.session() as s:
            row = s.get(WorkerRow, name)
            if row is None:
                s.add(
                    WorkerRow(name=name, started_at=now, heartbeat_at=now, current_run=current_run)
                )
            else:
                row.heartbeat_at = now
                row.current_run = current_run
                row.stopped_at = None

    def worker_stopped(self, name: str) -> None:
        """Record that worker ``name`` exited cleanly."""
        with self.session() as s:
            s.execute(
                update(WorkerRow)
                .where(WorkerRow.name == name)
                .values(stopped_at=utc_now(), current_run=None)
            )

    def workers(self, alive_within_s: float = 60.0) -> list[Worker]:
        """Known workers, last seen first; ``alive``: beat within the window and not stopped."""
        now = utc_now()
        query = select(WorkerRow).order_by(WorkerRow.heartbeat_at.desc())
        with self.session() as s:
            return [
                Worker(
                    name=r.name,
                    started_at=r.started_at,
                    heartbeat_at=r.heartbeat_at,
                    current_run=r.current_run,
                    stopped_at=r.stopped_at,
                    alive=r.stopped_at is None
                    and (now - r.heartbeat_at).total_seconds() <= alive_within_s,
                )
                for r in s.scalars(query)
            ]


def _prepare_sqlite(engine: Engine) -> None:
    """Create the database's folder and set the pragmas every SQLite connection needs."""
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the dashboard read while a worker writes; foreign keys are off by default in
        # SQLite and the cascades depend on them; the busy timeout makes concurrent writers wait.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def _transition(
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
            raise _not_found(run_id)
        raise StoreError(
            f"cannot {action} run {run_id}: it is {status}, and {action} needs it to be "
            + " or ".join(allowed)
        )
    return s.get_one(RunRow, run_id, populate_existing=True)


def _touch(s: Session, run_id: str, **values: Any) -> None:
    """Update columns of the run whatever its status; RunNotFound if it does not exist."""
    result = s.execute(
        update(RunRow)
        .where(RunRow.id == run_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        raise _not_found(run_id)


def _suite_row(s: Session, suite_id: str) -> SuiteRow:
    row = s.get(SuiteRow, suite_id)
    if row is None:
        raise StoreError(f"no suite with id {suite_id!r}")
    return row


def _not_found(run_id: str) -> RunNotFound:
    return RunNotFound(f"no run with id {run_id!r}", run_id)
