"""Evaluation jobs: external evaluations that the dashboard queues and workers run.

A job follows a run's queue discipline (:mod:`db.queue`): it is claimed by one conditional
``UPDATE ... WHERE status = 'queued'``, so two workers never both run it; the worker heart-beats
it while scoring and reports how many images are scored; a job whose worker stopped
heart-beating is failed (or re-queued) by the next worker that looks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.base import StoreBase, not_found
from db.errors import StoreError
from db.models import EvalJobRow, RunRow
from db.records import EvalJob, eval_job_record, utc_now

ACTIVE = ("queued", "running")
_REQUEUED: dict[str, Any] = {
    "status": "queued",
    "started_at": None,
    "heartbeat_at": None,
    "worker": None,
    "n_done": None,
    "n_total": None,
}


class EvalJobMixin(StoreBase):
    """Evaluation-job operations of :class:`db.store.RunStore`."""

    def queue_eval(self, run_id: str, dataset_path: str) -> EvalJob:
        """Queue an external evaluation of a run that succeeded on the folder ``dataset_path``.

        A job already queued or running for the same run and folder is returned instead of a
        second one. Raises RunNotFound for an unknown run, StoreError for one without a model.
        """
        with self.session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise not_found(run_id)
            if run.status != "succeeded":
                raise StoreError(
                    f"cannot evaluate run {run_id}: it is {run.status}, and only a run that "
                    "succeeded has a model to evaluate"
                )
            active = s.scalar(
                select(EvalJobRow).where(
                    EvalJobRow.run_id == run_id,
                    EvalJobRow.dataset_path == dataset_path,
                    EvalJobRow.status.in_(ACTIVE),
                )
            )
            if active is not None:
                return eval_job_record(active)
            row = EvalJobRow(
                run_id=run_id, dataset_path=dataset_path, status="queued", created_at=utc_now()
            )
            s.add(row)
            s.flush()
            return eval_job_record(row)

    def get_eval_job(self, job_id: int) -> EvalJob:
        """The job; StoreError when there is none."""
        with self.session() as s:
            return eval_job_record(_row(s, job_id))

    def eval_jobs(self, run_id: str) -> list[EvalJob]:
        """The run's evaluation jobs, newest first."""
        query = (
            select(EvalJobRow)
            .where(EvalJobRow.run_id == run_id)
            .order_by(EvalJobRow.created_at.desc(), EvalJobRow.id.desc())
        )
        with self.session() as s:
            return [eval_job_record(row) for row in s.scalars(query)]

    def claim_next_eval(self, worker: str) -> EvalJob | None:
        """Start the oldest queued job for ``worker``; None when none is queued."""
        oldest = (
            select(EvalJobRow.id)
            .where(EvalJobRow.status == "queued")
            .order_by(EvalJobRow.created_at, EvalJobRow.id)
            .limit(8)
        )
        while True:
            with self.session() as s:
                candidates = list(s.scalars(oldest))
            if not candidates:
                return None
            now = utc_now()
            for job_id in candidates:
                with self.session() as s:
                    if _update(
                        s,
                        job_id,
                        ("queued",),
                        status="running",
                        started_at=now,
                        heartbeat_at=now,
                        worker=worker,
                    ):
                        return eval_job_record(_row(s, job_id))

    def eval_progress(self, job_id: int, n_done: int, n_total: int) -> None:
        """Record ``n_done`` of ``n_total`` images scored; also a heartbeat."""
        with self.session() as s:
            _update(s, job_id, ("running",), n_done=n_done, n_total=n_total, heartbeat_at=utc_now())

    def heartbeat_eval(self, job_id: int) -> None:
        """Mark the job's worker as alive now."""
        with self.session() as s:
            _update(s, job_id, ("running",), heartbeat_at=utc_now())

    def finish_eval_job(self, job_id: int, external_eval_id: int) -> EvalJob:
        """The running job succeeded with the stored evaluation ``external_eval_id``."""
        values = {"external_eval_id": external_eval_id, "status": "succeeded"}
        return self._end(job_id, "finish", finished_at=utc_now(), **values)

    def fail_eval_job(self, job_id: int, error: str) -> EvalJob:
        """The running job failed; ``error`` says why, for the run page."""
        return self._end(job_id, "fail", status="failed", finished_at=utc_now(), error=error)

    def release_eval_job(self, job_id: int, *, requeue: bool, reason: str) -> EvalJob:
        """Give back a running job whose worker was told to stop: re-queued, or failed."""
        if requeue:
            return self._end(job_id, "release", **_REQUEUED)
        return self.fail_eval_job(job_id, reason)

    def reap_stale_evals(self, older_than_s: float, *, requeue: bool = False) -> list[EvalJob]:
        """Running jobs without a heartbeat for ``older_than_s``: failed saying why, or
        re-queued. Returns them as they are afterwards."""
        cutoff = datetime.fromtimestamp(utc_now().timestamp() - older_than_s, UTC)
        stale = (EvalJobRow.status == "running", EvalJobRow.heartbeat_at < cutoff)
        reaped = []
        with self.session() as s:
            for row in s.scalars(select(EvalJobRow).where(*stale)).all():
                values = (
                    dict(_REQUEUED)
                    if requeue
                    else {
                        "status": "failed",
                        "finished_at": utc_now(),
                        "error": (
                            f"worker {row.worker!r} stopped sending heartbeats (last at "
                            f"{row.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC, more than "
                            f"{older_than_s:.0f} s ago): it was killed or its machine was lost. "
                            "Evaluate the folder again to retry."
                        ),
                    }
                )
                result = s.execute(
                    update(EvalJobRow)
                    .where(EvalJobRow.id == row.id, *stale)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount:
                    reaped.append(row.id)
            return [eval_job_record(_row(s, job_id)) for job_id in reaped]

    def _end(self, job_id: int, action: str, **values: Any) -> EvalJob:
        with self.session() as s:
            if not _update(s, job_id, ("running",), **values):
                raise StoreError(
                    f"cannot {action} evaluation job {job_id}: it is {_row(s, job_id).status}, "
                    "not running (a worker that stopped heart-beating is reaped)"
                )
            return eval_job_record(_row(s, job_id))


def _update(s: Session, job_id: int, allowed: tuple[str, ...], **values: Any) -> bool:
    """Apply ``values`` if the job's status is in ``allowed``; whether it was."""
    result = s.execute(
        update(EvalJobRow)
        .where(EvalJobRow.id == job_id, EvalJobRow.status.in_(allowed))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def _row(s: Session, job_id: int) -> EvalJobRow:
    row = s.get(EvalJobRow, job_id, populate_existing=True)
    if row is None:
        raise StoreError(f"no evaluation job with id {job_id}")
    return row
