"""The run queue: claiming, heart-beating, releasing, reaping and cancelling runs.

Claims, heartbeats, releases and reaping follow the job-table discipline of :mod:`db.jobs`
(one conditional ``UPDATE`` a transition, ``FOR UPDATE SKIP LOCKED`` claims on PostgreSQL), so
two workers can never both claim a run. Cancelling is the run queue's own.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.base import StoreBase, not_found, suite_row, transition
from db.errors import StoreError
from db.jobs import JobTable
from db.models import RUN_STATUSES, EpochRow, RunRow
from db.records import Run, run_record, utc_now


def _delete_epochs(s: Session, run_id: str) -> None:
    """A re-queued run starts over: the history of the attempt that was given back goes."""
    s.execute(delete(EpochRow).where(EpochRow.run_id == run_id))


RUNS: JobTable[RunRow, Run] = JobTable(
    row=RunRow,
    record=run_record,
    missing=not_found,
    progress=("current_epoch",),
    retry="Re-queue the run to train it again.",
    on_requeue=_delete_epochs,
    claimable=(("kind", "train"),),
)


class QueueMixin(StoreBase):
    """Queue operations of :class:`db.store.RunStore`."""

    def start_run(self, run_id: str, worker: str) -> Run:
        """Claim a queued run for ``worker``: status ``running``, started and heartbeat now.

        Atomic: of several workers racing for one run, exactly one succeeds; the others get
        StoreError (the run is no longer queued) and should try the next one.
        """
        with self.session() as s:
            return run_record(transition(s, run_id, "start", ("queued",), **RUNS.started(worker)))

    def claim_next(self, worker: str) -> Run | None:
        """Start the oldest queued run for ``worker``; None when the queue is empty.

        Safe with many workers on one database (:meth:`db.jobs.JobTable.claim_next`):
        PostgreSQL locks the oldest queued run that no other transaction holds (``FOR UPDATE
        SKIP LOCKED``) and starts it in one transaction; elsewhere each candidate is claimed
        with a conditional UPDATE, and a worker that loses a race tries the next one.
        """
        return RUNS.claim_next(self, worker)

    def release_run(self, run_id: str, worker: str, *, requeue: bool, reason: str) -> Run:
        """Give back a run that ``worker`` is running because the worker was told to stop.

        ``requeue``: the run goes back to the queue with its epochs deleted, for the next
        worker; else it is ``failed`` with ``reason`` as its error. Raises StoreError when the
        run is not running on this worker any more (cancelled, reaped, or claimed elsewhere).
        """
        with self.session() as s:
            if not RUNS.release(s, run_id, requeue=requeue, reason=reason, worker=worker):
                raise StoreError(f"run {run_id} is not running on worker {worker!r} any more")
            return run_record(RUNS.fresh(s, run_id))

    def reap_stale(self, older_than_s: float, *, requeue: bool = False) -> list[Run]:
        """Runs whose worker stopped heart-beating ``older_than_s`` ago: failed, or re-queued.

        A failed run records why in ``error``. A re-queued run starts over: its epochs are
        deleted and it waits for the next worker. Returns the runs as they are afterwards.
        """
        with self.session() as s:
            return RUNS.reap_stale(s, older_than_s, requeue=requeue)

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
        """Mark the run's worker as alive now, whatever the run's status (as its epochs are
        written); a stale heartbeat means the worker died. RunNotFound for an unknown run."""
        with self.session() as s:
            if not RUNS.heartbeat(s, run_id, RUN_STATUSES):
                raise not_found(run_id)
