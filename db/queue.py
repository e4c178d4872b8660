"""The run queue: claiming, heart-beating, releasing, reaping and cancelling runs.

Every transition is one conditional ``UPDATE ... WHERE status IN (...)``, so two workers can never
both claim a run. On PostgreSQL the next queued run is also locked with ``FOR UPDATE SKIP
LOCKED``, so concurrent claimers take different rows instead of racing for the same one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from db.base import StoreBase, suite_row, touch, transition
from db.errors import StoreError
from db.models import EpochRow, RunRow
from db.records import Run, run_record, utc_now

# What a run looks like again once it is back in the queue: a fresh start for the next worker.
_REQUEUED: dict[str, Any] = {
    "status": "queued",
    "started_at": None,
    "heartbeat_at": None,
    "worker": None,
    "current_epoch": None,
}


class QueueMixin(StoreBase):
    """Queue operations of :class:`db.store.RunStore`."""

    def start_run(self, run_id: str, worker: str) -> Run:
        """Claim a queued run for ``worker``: status ``running``, started and heartbeat now.

        Atomic: of several workers racing for one run, exactly one succeeds; the others get
        StoreError (the run is no longer queued) and should try the next one.
        """
        with self.session() as s:
            return run_record(_start(s, run_id, worker))

    def claim_next(self, worker: str) -> Run | None:
        """Start the oldest queued run for ``worker``; None when the queue is empty.

        Safe with many workers on one database. PostgreSQL: the oldest queued row that no other
        transaction holds is locked (``FOR UPDATE SKIP LOCKED``) and started in one transaction.
        Elsewhere: each candidate is claimed with the atomic :meth:`start_run`, and a worker that
        loses a race tries the next one.
        """
        oldest = (
            select(RunRow.id)
            .where(RunRow.status == "queued")
            .order_by(RunRow.created_at, RunRow.id)
        )
        if self.engine.dialect.name == "postgresql":
            with self.session() as s:
                run_id = s.scalar(oldest.limit(1).with_for_update(skip_locked=True))
                return None if run_id is None else run_record(_start(s, run_id, worker))
        while True:
            with self.session() as s:
                candidates = list(s.scalars(oldest.limit(8)))
            if not candidates:
                return None
            for run_id in candidates:
                try:
                    return self.start_run(run_id, worker)
                except StoreError:
                    continue

    def release_run(self, run_id: str, worker: str, *, requeue: bool, reason: str) -> Run:
        """Give back a run that ``worker`` is running because the worker was told to stop.

        ``requeue``: the run goes back to the queue with its epochs deleted, for the next
        worker; else it is ``failed`` with ``reason`` as its error. Raises StoreError when the
        run is not running on this worker any more (cancelled, reaped, or claimed elsewhere).
        """
        values = dict(_REQUEUED) if requeue else {"status": "failed", "error": reason}
        if not requeue:
            values["finished_at"] = utc_now()
        with self.session() as s:
            result = s.execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == "running", RunRow.worker == worker)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 0:
                raise StoreError(f"run {run_id} is not running on worker {worker!r} any more")
            if requeue:
                s.execute(delete(EpochRow).where(EpochRow.run_id == run_id))
            return run_record(s.get_one(RunRow, run_id, populate_existing=True))

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
                    values = dict(_REQUEUED)
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
            return [run_record(s.get_one(RunRow, run_id)) for run_id in reaped]

    def cancel_run(self, run_id: str) -> Run:
        """Cancel a queued or running run: status ``cancelled`` and ``cancel_requested`` set.

        A queued run is never started. A running run's worker sees ``cancel_requested`` (via
        :meth:`get_run`) and stops; its later ``finish_run`` / ``fail_run`` raise StoreError.
        Cancelling a cancelled run returns it unchanged (also when two cancels race); a
        succeeded or failed run raises.
        """
        with self.session() as s:
            try:
                row = transition(
                    s,
                    run_id,
                    "cancel",
                    ("queued", "running"),
                    status="cancelled",
                    cancel_requested=True,
                    finished_at=utc_now(),
                )
            except StoreError:
                row = s.get(RunRow, run_id)
                if row is None or row.status != "cancelled":
                    raise
            return run_record(row)

    def cancel_suite(self, suite_id: str) -> list[Run]:
        """Cancel every queued or running run of the suite; returns those cancelled."""
        with self.session() as s:
            suite_row(s, suite_id)
            active = list(
                s.scalars(
                    select(RunRow.id)
                    .where(RunRow.suite_id == suite_id, RunRow.status.in_(("queued", "running")))
                    .order_by(RunRow.created_at.desc(), RunRow.id)
                )
            )
        return [self.cancel_run(run_id) for run_id in active]

    def heartbeat(self, run_id: str) -> None:
        """Mark the run's worker as alive now; a stale heartbeat means the worker died."""
        with self.session() as s:
            touch(s, run_id, heartbeat_at=utc_now())


def _start(s: Session, run_id: str, worker: str) -> RunRow:
    """The queued run, now running on ``worker`` (StoreError if it is not queued any more)."""
    now = utc_now()
    return transition(
        s,
        run_id,
        "start",
        ("queued",),
        status="running",
        started_at=now,
        heartbeat_at=now,
        worker=worker,
    )
