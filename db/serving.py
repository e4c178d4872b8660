"""Which run the public app serves (promotions, with a site calibration), and which queue
workers are alive."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from db.base import StoreBase, not_found, upsert
from db.errors import StoreError
from db.models import CalibrationRow, PromotionRow, RunRow, WorkerRow
from db.records import (
    Calibration,
    Promotion,
    Run,
    Worker,
    calibration_record,
    metric_float,
    promotion_record,
    run_record,
    to_json,
    utc_now,
)

# The promotion the public app serves: the newest one whose run still exists and succeeded.
_SERVED_PROMOTION = (
    select(PromotionRow, RunRow)
    .join(RunRow, PromotionRow.run_id == RunRow.id)
    .where(RunRow.status == "succeeded", RunRow.kind == "train")
    .order_by(PromotionRow.promoted_at.desc(), PromotionRow.id.desc())
    .limit(1)
)


class ServingMixin(StoreBase):
    """Promotions and worker presence of :class:`db.store.RunStore`."""

    def promote(
        self,
        run_id: str,
        note: str = "",
        calibration_id: int | None = None,
        promoted_by: str = "",
    ) -> Promotion:
        """Make a succeeded run the one the public app serves (the newest promotion wins).

        ``note`` says why, ``promoted_by`` who (both shown in the history).

        With ``calibration_id`` (one of this run's site calibrations) the public gets that
        site's threshold instead of the run's validated one. Raises StoreError if the run did
        not succeed or the calibration is not the run's, RunNotFound if there is no such run.
        The run is read and the promotion written in one transaction.
        """
        with self.session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise not_found(run_id)
            if run.kind != "train":
                raise StoreError(
                    f"cannot promote run {run.id}: it is a pretraining run, an encoder with no "
                    "classifier to serve; train a classifier from it (--set model.init=...) and "
                    "promote that"
                )
            if run.status != "succeeded":
                raise StoreError(f"cannot promote run {run.id}: it is {run.status}, not succeeded")
            if calibration_id is not None:
                calibration = s.get(CalibrationRow, calibration_id)
                if calibration is None or calibration.run_id != run.id:
                    raise StoreError(
                        f"calibration {calibration_id} is not one of run {run.id}'s; list them "
                        f"with `python -m pipeline calibrations {run.id}`"
                    )
            row = PromotionRow(
                run_id=run.id,
                note=note,
                promoted_at=utc_now(),
                calibration_id=calibration_id,
                promoted_by=promoted_by,
            )
            s.add(row)
            s.flush()
            return promotion_record(row)

    def promotions(self) -> list[Promotion]:
        """Every promotion, newest first (the history shown on the dashboard)."""
        query = select(PromotionRow).order_by(
            PromotionRow.promoted_at.desc(), PromotionRow.id.desc()
        )
        with self.session() as s:
            return [promotion_record(r) for r in s.scalars(query)]

    def served_run(self) -> Run | None:
        """The run the public app serves: that of the newest promotion whose run still exists
        and succeeded. None before any promotion — a run is served only when someone promotes
        it (on the Publish page or with ``python -m pipeline promote``), never for its name.
        """
        with self.session() as s:
            promoted = s.execute(_SERVED_PROMOTION).first()
            return None if promoted is None else run_record(promoted.RunRow)

    def served_calibration(self) -> Calibration | None:
        """The site calibration the public app applies: that of the promotion it serves, if any."""
        with self.session() as s:
            promoted = s.execute(_SERVED_PROMOTION).first()
            if promoted is None or promoted.PromotionRow.calibration_id is None:
                return None
            row = s.get(CalibrationRow, promoted.PromotionRow.calibration_id)
            return None if row is None else calibration_record(row)

    # Site calibrations

    def add_calibration(
        self,
        run_id: str,
        *,
        site: str,
        dataset_path: str,
        data_fingerprint: str,
        result: dict[str, Any],
    ) -> Calibration:
        """Store a site calibration of the run (``result`` from ``calibrate_site``)."""
        check = result["check"]
        sens_ci = check.get("sensitivity_ci") or [None, None]
        spec_ci = check.get("specificity_ci") or [None, None]
        with self.session() as s:
            if s.get(RunRow, run_id) is None:
                raise not_found(run_id)
            row = CalibrationRow(
                run_id=run_id,
                site=site,
                dataset_path=dataset_path,
                data_fingerprint=data_fingerprint,
                n_images=int(result["n_images"]),
                prevalence=float(result["prevalence"]),
                threshold=float(result["threshold"]),
                sensitivity=metric_float(check.get("sensitivity"), "sensitivity"),
                sensitivity_lo=metric_float(sens_ci[0], "sensitivity_ci"),
                sensitivity_hi=metric_float(sens_ci[1], "sensitivity_ci"),
                specificity=metric_float(check.get("specificity"), "specificity"),
                specificity_lo=metric_float(spec_ci[0], "specificity_ci"),
                specificity_hi=metric_float(spec_ci[1], "specificity_ci"),
                details_json=to_json(result),
                created_at=utc_now(),
            )
            s.add(row)
            s.flush()
            return calibration_record(row)

    def calibrations(self, run_id: str) -> list[Calibration]:
        """The run's site calibrations, newest first."""
        query = (
            select(CalibrationRow)
            .where(CalibrationRow.run_id == run_id)
            .order_by(CalibrationRow.created_at.desc(), CalibrationRow.id.desc())
        )
        with self.session() as s:
            return [calibration_record(r) for r in s.scalars(query)]

    def get_calibration(self, calibration_id: int) -> Calibration:
        """One calibration by id; StoreError if there is none."""
        with self.session() as s:
            row = s.get(CalibrationRow, calibration_id)
            if row is None:
                raise StoreError(f"no calibration with id {calibration_id}")
            return calibration_record(row)

    # Workers

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
