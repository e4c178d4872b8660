"""External evaluations: how a run scores on datasets other than its own, and their summaries.

A run's external evaluations are stored with it when it finishes (:meth:`db.store.RunStore.
finish_run`) or later, one at a time (an evaluation job, ``pipeline evaluate``); the leaderboard
reads one summary a run (:class:`db.records.ExternalSummary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, select

from db.base import StoreBase, not_found, transition
from db.models import ExternalEvalRow, RunRow
from db.records import (
    EXTERNAL_INTERVALS,
    EXTERNAL_SCALARS,
    ExternalEval,
    ExternalSummary,
    Measured,
    Run,
    external_eval_record,
    from_json,
    metric_columns,
    run_record,
    to_json,
    utc_now,
)


class ExternalsMixin(StoreBase):
    """External-evaluation operations of :class:`db.store.RunStore`."""

    def add_external_eval(
        self, run_id: str, *, dataset_path: str, data_fingerprint: str, metrics: Mapping[str, Any]
    ) -> ExternalEval:
        """Store the run's evaluation on another dataset; typed columns as in finish_run.

        ``metrics["n"]`` is the number of images evaluated. Raises RunNotFound for an unknown
        run.
        """
        with self.session() as s:
            if s.get(RunRow, run_id) is None:
                raise not_found(run_id)
            row = external_row(run_id, dataset_path, data_fingerprint, metrics)
            s.add(row)
            s.flush()
            return external_eval_record(row)

    def external_evals(self, run_id: str) -> list[ExternalEval]:
        """The run's external evaluations, newest first."""
        query = _newest_first(select(ExternalEvalRow).where(ExternalEvalRow.run_id == run_id))
        with self.session() as s:
            return [external_eval_record(row) for row in s.scalars(query)]

    def add_run_figures(self, run_id: str, figures: Mapping[str, Any]) -> Run:
        """Add keys to a succeeded run's metrics: figures measured after it finished, such as its
        recipe left one source out at a time (``leave_one_source_out``). Keys already there are
        replaced; the rest of the metrics stay as they were.

        Raises RunNotFound for an unknown run and StoreError unless the run succeeded.
        """
        with self.session() as s:
            # Locked on PostgreSQL, so two writers cannot drop each other's keys.
            row = s.get(RunRow, run_id, with_for_update=True)
            if row is None:
                raise not_found(run_id)
            metrics = {**from_json(row.metrics_json), **figures}
            return run_record(
                transition(
                    s, run_id, "add figures to", ("succeeded",), metrics_json=to_json(metrics)
                )
            )

    def external_summaries(self) -> dict[str, ExternalSummary]:
        """Every run that has external evaluations -> their :class:`ExternalSummary`, read in
        one query of the few columns a summary needs (the leaderboard shows it for every run,
        so the evaluations' full metrics, curves included, are not read)."""
        columns = select(
            ExternalEvalRow.run_id,
            ExternalEvalRow.dataset_path,
            ExternalEvalRow.auc,
            ExternalEvalRow.sensitivity,
        )
        by_run: dict[str, list[Measured]] = {}
        with self.session() as s:
            for row in s.execute(_newest_first(columns)):
                by_run.setdefault(row.run_id, []).append(row)
        return {run_id: ExternalSummary.of(run_id, rows) for run_id, rows in by_run.items()}


def external_row(
    run_id: str, dataset_path: str, data_fingerprint: str, metrics: Mapping[str, Any]
) -> ExternalEvalRow:
    """The row of one external evaluation, with the typed columns taken from ``metrics``."""
    n = metrics.get("n")
    return ExternalEvalRow(
        run_id=run_id,
        dataset_path=dataset_path,
        data_fingerprint=data_fingerprint,
        n_images=None if n is None else int(n),
        metrics_json=to_json(metrics),
        created_at=utc_now(),
        **metric_columns(metrics, EXTERNAL_SCALARS, EXTERNAL_INTERVALS),
    )


def _newest_first(query: Select[Any]) -> Select[Any]:
    return query.order_by(ExternalEvalRow.created_at.desc(), ExternalEvalRow.id.desc())
