"""Evaluation jobs: external evaluations that the dashboard queues and workers run.

A job follows the run queue's discipline (:mod:`db.jobs`): it is claimed by one conditional
``UPDATE ... WHERE status = 'queued'`` (on PostgreSQL after ``FOR UPDATE SKIP LOCKED``), so two
workers never both run it; the worker heart-beats it while scoring and reports how many images
are scored; a job whose worker stopped heart-beating is failed (or re-queued) by the next worker
that looks.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.base import StoreBase, not_found
from db.errors import StoreError
from db.jobs import JobTable
from db.models import EvalJobRow, RunRow
from db.records import EvalJob, eval_job_record, utc_now

ACTIVE = ("queued", "running")


def _missing(job_id: int) -> StoreError:
    return StoreError(f"no evaluation job with id {job_id}")


EVAL_JOBS: JobTable[EvalJobRow, EvalJob] = JobTable(
    row=EvalJobRow,
    record=eval_job_record,
    missing=_missing,
    progress=("n_done", "n_total"),
    retry="Evaluate the folder again to retry.",
)


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
            return eval_job_record(EVAL_JOBS.fresh(s, job_id))

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
        """Start the oldest queued job for ``worker``; None when none is queued.

        Safe with many workers on one database, as :meth:`db.queue.QueueMixin.claim_next`.
        """
        return EVAL_JOBS.claim_next(self, worker)

    def eval_progress(self, job_id: int, n_done: int, n_total: int) -> None:
        """Record ``n_done`` of ``n_total`` images scored; also a heartbeat."""
        with self.session() as s:
            EVAL_JOBS.heartbeat(s, job_id, n_done=n_done, n_total=n_total)

    def heartbeat_eval(self, job_id: int) -> None:
        """Mark the job's worker as alive now (while the job is running)."""
        with self.session() as s:
            EVAL_JOBS.heartbeat(s, job_id)

    def finish_eval_job(self, job_id: int, external_eval_id: int) -> EvalJob:
        """The running job succeeded with the stored evaluation ``external_eval_id``."""
        succeeded = {"status": "succeeded", "finished_at": utc_now()}
        with self.session() as s:
            if not EVAL_JOBS.update(
                s, job_id, ("running",), external_eval_id=external_eval_id, **succeeded
            ):
                raise _not_running(s, job_id, "finish")
            return eval_job_record(EVAL_JOBS.fresh(s, job_id))

    def fail_eval_job(self, job_id: int, error: str) -> EvalJob:
        """The running job failed; ``error`` says why, for the run page."""
        return self.release_eval_job(job_id, requeue=False, reason=error)

    def release_eval_job(self, job_id: int, *, requeue: bool, reason: str) -> EvalJob:
        """Give back a running job whose worker was told to stop: re-queued, or failed."""
        with self.session() as s:
            if not EVAL_JOBS.release(s, job_id, requeue=requeue, reason=reason):
                raise _not_running(s, job_id, "release" if requeue else "fail")
            return eval_job_record(EVAL_JOBS.fresh(s, job_id))

    def reap_stale_evals(self, older_than_s: float, *, requeue: bool = False) -> list[EvalJob]:
        """Running jobs without a heartbeat for ``older_than_s``: failed saying why, or
        re-queued. Returns them as they are afterwards."""
        with self.session() as s:
            return EVAL_JOBS.reap_stale(s, older_than_s, requeue=requeue)


def _not_running(s: Session, job_id: int, action: str) -> StoreError:
    """Why the job cannot ``action``: it is not running (StoreError too if it does not exist)."""
    return StoreError(
        f"cannot {action} evaluation job {job_id}: it is {EVAL_JOBS.fresh(s, job_id).status}, "
        "not running (a worker that stopped heart-beating is reaped)"
    )
