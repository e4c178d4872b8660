"""The job-table discipline that the run queue and evaluation jobs share.

A job table (``runs``, ``eval_jobs``) holds rows that wait ``queued`` until a worker claims one,
stay ``running`` while that worker heart-beats them, and leave ``running`` when the worker ends
them, gives them back, or stops heart-beating and is reaped. :class:`JobTable` owns those
transitions, for any table with the job columns (``id``, ``status``, ``created_at``,
``started_at``, ``heartbeat_at``, ``worker``, ``finished_at``, ``error``):

- claim the oldest queued row. On PostgreSQL it is locked with ``SELECT ... FOR UPDATE SKIP
  LOCKED`` and started in the same transaction, so concurrent claimers take different rows
  instead of racing for one; elsewhere (SQLite) each candidate is claimed with a conditional
  ``UPDATE ... WHERE status = 'queued'``, and a claimer that loses the race tries the next one;
- heartbeat, release (re-queue, or fail with a reason) and reap the rows whose heartbeat is
  older than a cutoff: each one conditional ``UPDATE``, so a row that has moved on meanwhile
  (cancelled, reaped, claimed elsewhere) is left alone and the caller is told.

What a job means beyond that (its results, how it ends, who may cancel it) is its mixin's:
:mod:`db.queue` for runs, :mod:`db.evaljobs` for evaluation jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from db.base import StoreBase
from db.errors import StoreError
from db.models import EvalJobRow, RunRow
from db.records import utc_now

Row = TypeVar("Row", RunRow, EvalJobRow)
Record = TypeVar("Record")

# How many queued rows a claimer reads at a time where it cannot lock one (SQLite).
_CANDIDATES = 8


def _nothing_else(s: Session, job_id: Any) -> None:
    """A job that takes nothing else with it when it is re-queued."""


@dataclass(frozen=True)
class JobTable(Generic[Row, Record]):
    """The queue discipline of one table of jobs, and what sets its rows apart.

    The methods that take a session work in the caller's transaction, so a mixin can read or
    refuse in the same one; :meth:`claim_next` opens its own, as many as a claim takes.
    """

    row: type[Row]
    # The frozen dataclass that the store returns for a row.
    record: Callable[[Row], Record]
    # The error for an id that has no row.
    missing: Callable[[Any], StoreError]
    # The columns in which a worker reports its progress (a run's epoch), cleared with the
    # claim's when the job goes back to the queue.
    progress: tuple[str, ...]
    # The sentence that ends a reaped job's error: how to try it again.
    retry: str
    # What goes with a job that is re-queued (a run's epochs), in the same transaction.
    on_requeue: Callable[[Session, Any], None] = _nothing_else
    # Column values of the jobs a worker may claim (runs: only a classifier's training; a
    # pretraining runs in the command that started it). Others are never claimed or re-queued.
    claimable: tuple[tuple[str, Any], ...] = ()

    def _claimable(self) -> list[ColumnElement[bool]]:
        return [getattr(self.row, column) == value for column, value in self.claimable]

    def requeued(self) -> dict[str, Any]:
        """The columns of a job given back to the queue: a fresh start for the next worker."""
        cleared = ("started_at", "heartbeat_at", "worker", *self.progress)
        return {"status": "queued", **dict.fromkeys(cleared)}

    def started(self, worker: str) -> dict[str, Any]:
        """The columns of a job that ``worker`` claims now."""
        now = utc_now()
        return {"status": "running", "started_at": now, "heartbeat_at": now, "worker": worker}

    def claim_next(self, store: StoreBase, worker: str) -> Record | None:
        """Start the oldest queued job for ``worker``; None when none is queued.

        Safe with many workers on one database: each job is claimed by exactly one of them.
        """
        oldest = (
            select(self.row.id)
            .where(self.row.status == "queued", *self._claimable())
            .order_by(self.row.created_at, self.row.id)
        )
        if store.engine.dialect.name == "postgresql":
            with store.session() as s:
                job_id = s.scalar(oldest.limit(1).with_for_update(skip_locked=True))
                # Queued and locked by this transaction: no other claimer can take it first.
                return None if job_id is None else self._claim(s, job_id, worker)
        while True:
            with store.session() as s:
                candidates = list(s.scalars(oldest.limit(_CANDIDATES)))
            if not candidates:
                return None
            for job_id in candidates:
                with store.session() as s:
                    claimed = self._claim(s, job_id, worker)
                if claimed is not None:
                    return claimed

    def update(self, s: Session, job_id: Any, statuses: Collection[str], **values: Any) -> bool:
        """Set ``values`` on the job if its status is one of ``statuses``; whether it was.

        The status test is part of the UPDATE itself, so it is atomic across processes.
        """
        return self._set(s, job_id, self.row.status.in_(statuses), **values)

    def heartbeat(
        self, s: Session, job_id: Any, statuses: Collection[str] = ("running",), **values: Any
    ) -> bool:
        """Mark the job's worker alive now, also setting ``values`` (e.g. progress), if the
        job's status is one of ``statuses``; whether it was."""
        return self.update(s, job_id, statuses, heartbeat_at=utc_now(), **values)

    def release(
        self, s: Session, job_id: Any, *, requeue: bool, reason: str, worker: str | None = None
    ) -> bool:
        """Give back a running job: re-queued (``requeue``), else failed with ``reason``.

        Only while it runs (on ``worker``, when one is named); whether it did.
        """
        running = [self.row.status == "running"]
        if worker is not None:
            running.append(self.row.worker == worker)
        return self._give_back(s, job_id, running, requeue, reason)

    def reap_stale(self, s: Session, older_than_s: float, *, requeue: bool) -> list[Record]:
        """Running jobs without a heartbeat for ``older_than_s``: failed saying why, or
        re-queued. Returns them as they are afterwards."""
        cutoff = datetime.fromtimestamp(utc_now().timestamp() - older_than_s, UTC)
        stale = [self.row.status == "running", self.row.heartbeat_at < cutoff]
        reaped = []
        for row in s.scalars(select(self.row).where(*stale)).all():
            reason = (
                f"worker {row.worker!r} stopped sending heartbeats (last at "
                f"{row.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC, more than "
                f"{older_than_s:.0f} s ago): it was killed or its machine was lost. {self.retry}"
            )
            claimable = all(getattr(row, c) == v for c, v in self.claimable)
            if self._give_back(s, row.id, stale, requeue and claimable, reason):
                reaped.append(row.id)
        return [self.record(self.fresh(s, job_id)) for job_id in reaped]

    def fresh(self, s: Session, job_id: Any) -> Row:
        """The job's row as stored now, not as this session last saw it."""
        row = s.get(self.row, job_id, populate_existing=True)
        if row is None:
            raise self.missing(job_id)
        return row

    def _claim(self, s: Session, job_id: Any, worker: str) -> Record | None:
        """The job, now running on ``worker``; None if it is not queued any more."""
        if not self.update(s, job_id, ("queued",), **self.started(worker)):
            return None
        return self.record(self.fresh(s, job_id))

    def _give_back(
        self,
        s: Session,
        job_id: Any,
        where: list[ColumnElement[bool]],
        requeue: bool,
        reason: str,
    ) -> bool:
        """Re-queue the job, or fail it with ``reason``, if it matches ``where``; whether so."""
        values = (
            self.requeued()
            if requeue
            else {"status": "failed", "finished_at": utc_now(), "error": reason}
        )
        if not self._set(s, job_id, *where, **values):
            return False
        if requeue:
            self.on_requeue(s, job_id)
        return True

    def _set(self, s: Session, job_id: Any, *where: ColumnElement[bool], **values: Any) -> bool:
        result = s.execute(
            update(self.row)
            .where(self.row.id == job_id, *where)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)
