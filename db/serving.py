"""Which run the public app serves (promotions), and which queue workers are alive."""

from __future__ import annotations

from sqlalchemy import delete, select

from db.base import StoreBase, not_found, upsert
from db.errors import StoreError
from db.models import PromotionRow, RunRow, WorkerRow
from db.records import Promotion, Run, Worker, run_record, utc_now


class ServingMixin(StoreBase):
    """Promotions and worker presence of :class:`db.store.RunStore`."""

    def promote(self, run_id: str, note: str = "") -> Promotion:
        """Make a succeeded run the one the public app serves (the newest promotion wins).

        Raises StoreError if the run did not succeed, RunNotFound if there is no such run.
        The run is read and the promotion written in one transaction.
        """
        with self.session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise not_found(run_id)
            if run.status != "succeeded":
                raise StoreError(f"cannot promote run {run.id}: it is {run.status}, not succeeded")
            row = PromotionRow(run_id=run.id, note=note, promoted_at=utc_now())
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
            succeeded = s.scalars(
                select(RunRow)
                .where(RunRow.status == "succeeded")
                .order_by(RunRow.created_at.desc(), RunRow.id)
            )
            for row in succeeded:
                run = run_record(row)
                if "baseline" in run.name.lower() or run.config.get("name") == "baseline":
                    return run
        return None

    def worker_alive(
        self, name: str, current_run: str | None = None, runs_dir: str | None = None
    ) -> None:
        """Record that worker ``name`` is alive now, registering it the first time.

        One upsert, so the worker's presence thread and its main thread may both call it at
        the same moment. ``runs_dir``: the folder the worker writes artifacts to (kept when
        None).
        """
        now = utc_now()
        changes: dict[str, object] = {"heartbeat_at": now, "current_run": current_run}
        if runs_dir is not None:
            changes["runs_dir"] = runs_dir
        with self.session() as s:
            upsert(
                s,
                WorkerRow.__table__,
                {"name": name, "started_at": now, **changes},
                "name",
                changes,
            )

    def worker_stopped(self, name: str) -> None:
        """Remove worker ``name`` from the live workers at once (it exited or was told to stop)."""
        with self.session() as s:
            s.execute(delete(WorkerRow).where(WorkerRow.name == name))

    def workers(self, alive_within_s: float = 60.0) -> list[Worker]:
        """Registered workers, last seen first; ``alive``: beat within the window.

        A worker that stopped cleanly is gone; one that was killed stays, not alive, until its
        row is removed by hand or the same name registers again.
        """
        now = utc_now()
        query = select(WorkerRow).order_by(WorkerRow.heartbeat_at.desc())
        with self.session() as s:
            return [
                Worker(
                    name=r.name,
                    started_at=r.started_at,
                    heartbeat_at=r.heartbeat_at,
                    current_run=r.current_run,
                    runs_dir=r.runs_dir,
                    alive=(now - r.heartbeat_at).total_seconds() <= alive_within_s,
                )
                for r in s.scalars(query)
            ]
