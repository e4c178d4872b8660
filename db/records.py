"""What the run store hands out: frozen dataclasses, and their conversion from ORM rows and JSON.

Nothing outside ``db`` ever holds an ORM row; these records are plain values, safe to cache and to
pass between threads.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from db.models import (
    CalibrationRow,
    EpochRow,
    EvalJobRow,
    ExternalEvalRow,
    PromotionRow,
    RunRow,
    SuiteRow,
)

# Final metrics copied from the evaluation dict into typed, sortable columns. Metrics with an
# interval read it from "<name>_ci" as [lo, hi] and fill "<name>_lo" / "<name>_hi".
RUN_SCALARS = ("auc", "sensitivity", "specificity", "f1", "accuracy", "precision", "threshold")
RUN_INTERVALS = ("auc", "sensitivity", "specificity")
EXTERNAL_SCALARS = ("auc", "sensitivity", "specificity", "f1", "accuracy")
EXTERNAL_INTERVALS = ("auc",)
# Run fields parsed from a *_json column rather than copied from one of the same name.
RUN_JSON_FIELDS = ("config", "metrics", "versions", "tags")


@dataclass(frozen=True)
class Suite:
    """An experiment suite; ``spec`` is the JSON spec it was created from (base config, factors)."""

    id: str
    name: str
    kind: str
    description: str
    spec: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Run:
    """A snapshot of one run. Timestamps are UTC-aware; metric fields are None until finished.

    ``config``, ``metrics`` (the full evaluation dict, curves included) and ``versions`` are
    parsed JSON, empty when not recorded yet. Non-finite numbers were stored as None.
    ``archived_at`` is set while the run is archived (hidden from the leaderboard); ``tags``
    and ``note`` are the researcher's labels, sorted and free text. ``kind`` is ``"train"``
    (a classifier) or ``"pretrain"`` (an encoder made by ``python -m pipeline pretrain``).
    """

    id: str
    name: str
    kind: str
    status: str
    suite_id: str | None
    config: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    current_epoch: int | None
    cancel_requested: bool
    data_fingerprint: str | None
    artifacts_dir: str | None
    error: str | None
    versions: dict[str, Any]
    duration_s: float | None
    auc: float | None
    auc_lo: float | None
    auc_hi: float | None
    sensitivity: float | None
    sensitivity_lo: float | None
    sensitivity_hi: float | None
    specificity: float | None
    specificity_lo: float | None
    specificity_hi: float | None
    f1: float | None
    accuracy: float | None
    precision: float | None
    threshold: float | None
    who_met: bool | None
    metrics: dict[str, Any]
    archived_at: datetime | None
    tags: tuple[str, ...]
    note: str

    @property
    def auc_ci(self) -> tuple[float, float] | None:
        """The 95% interval of the test AUC as (lo, hi), or None when it was not computed."""
        if self.auc_lo is None or self.auc_hi is None:
            return None
        return (self.auc_lo, self.auc_hi)


@dataclass(frozen=True)
class Epoch:
    """One epoch of training history; a metric the callback did not report is None."""

    run_id: str
    epoch: int
    loss: float | None
    accuracy: float | None
    auc: float | None
    val_loss: float | None
    val_accuracy: float | None
    val_auc: float | None
    learning_rate: float | None
    seconds: float | None
    # The mean per-source validation AUC, for runs checkpointed on it (eval.per_source).
    val_source_auc: float | None = None


@dataclass(frozen=True)
class ExternalEval:
    """A run evaluated on another dataset folder; ``metrics`` is the full evaluation dict."""

    id: int
    run_id: str
    dataset_path: str
    data_fingerprint: str
    n_images: int | None
    auc: float | None
    auc_lo: float | None
    auc_hi: float | None
    sensitivity: float | None
    specificity: float | None
    f1: float | None
    accuracy: float | None
    metrics: dict[str, Any]
    created_at: datetime

    @property
    def auc_ci(self) -> tuple[float, float] | None:
        """The 95% interval of the AUC as (lo, hi), or None when it was not computed."""
        if self.auc_lo is None or self.auc_hi is None:
            return None
        return (self.auc_lo, self.auc_hi)


class Measured(Protocol):
    """What a summary reads of an external evaluation: an :class:`ExternalEval`, or a row of
    just these columns."""

    dataset_path: str
    auc: float | None
    sensitivity: float | None


@dataclass(frozen=True)
class ExternalSummary:
    """A run's external evaluations at a glance: the newest one per dataset folder, summarised.

    AUCs come from folders with both classes, sensitivities from folders with TB images; a mean
    or worst value is None when no folder could measure it.
    """

    run_id: str
    datasets: tuple[str, ...]
    auc_mean: float | None
    auc_worst: float | None
    sensitivity_mean: float | None
    sensitivity_worst: float | None

    @classmethod
    def of(cls, run_id: str, evals: Sequence[Measured]) -> ExternalSummary:
        """Summarise ``evals`` (newest first; older evaluations of the same folder ignored)."""
        newest: dict[str, Measured] = {}
        for e in evals:
            newest.setdefault(e.dataset_path, e)
        aucs = [e.auc for e in newest.values() if e.auc is not None]
        sens = [e.sensitivity for e in newest.values() if e.sensitivity is not None]
        return cls(
            run_id=run_id,
            datasets=tuple(sorted(newest)),
            auc_mean=sum(aucs) / len(aucs) if aucs else None,
            auc_worst=min(aucs) if aucs else None,
            sensitivity_mean=sum(sens) / len(sens) if sens else None,
            sensitivity_worst=min(sens) if sens else None,
        )


@dataclass(frozen=True)
class Promotion:
    """A run promoted to be served by the public app, when, and with which site calibration."""

    id: int
    run_id: str
    note: str
    promoted_at: datetime
    calibration_id: int | None = None
    promoted_by: str = ""


@dataclass(frozen=True)
class Calibration:
    """A run's threshold for one site, chosen on part of the site's sample, checked on the rest.

    ``sensitivity`` / ``specificity`` (and their 95% intervals) are the check part's at
    ``threshold``; ``details`` holds the full result of
    ``pipeline.evaluation.calibration.calibrate_site`` (the threshold table, both parts' sizes, the
    check at the run's validated threshold).
    """

    id: int
    run_id: str
    site: str
    dataset_path: str
    data_fingerprint: str
    n_images: int
    prevalence: float
    threshold: float
    sensitivity: float | None
    sensitivity_lo: float | None
    sensitivity_hi: float | None
    specificity: float | None
    specificity_lo: float | None
    specificity_hi: float | None
    details: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class EvalJob:
    """An external evaluation queued for a worker; ``n_done`` of ``n_total`` images scored while
    it runs, ``external_eval_id`` (the stored result) once it succeeded, ``error`` if it failed."""

    id: int
    run_id: str
    dataset_path: str
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    n_done: int | None
    n_total: int | None
    error: str | None
    external_eval_id: int | None


@dataclass(frozen=True)
class Worker:
    """A queue worker as last reported; ``alive`` means it heart-beat within the asked window."""

    name: str
    started_at: datetime
    heartbeat_at: datetime
    current_run: str | None
    runs_dir: str | None
    alive: bool


def new_id() -> str:
    return uuid.uuid4().hex[:10]


def utc_now() -> datetime:
    return datetime.now(UTC)


def metric_float(value: Any, key: str) -> float | None:
    """A metric as a float column value: None stays None, and so does NaN or an infinity."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"metric {key!r} must be a number, got {value!r}") from err
    return number if math.isfinite(number) else None


def metric_columns(
    metrics: Mapping[str, Any], scalars: tuple[str, ...], intervals: tuple[str, ...]
) -> dict[str, float | None]:
    """The typed metric columns: each scalar, and ``<name>_lo/_hi`` from ``<name>_ci``."""
    columns = {name: metric_float(metrics.get(name), name) for name in scalars}
    for name in intervals:
        ci = metrics.get(f"{name}_ci")
        if ci is None:
            columns[f"{name}_lo"] = columns[f"{name}_hi"] = None
            continue
        if len(ci) != 2:
            raise ValueError(f"metric '{name}_ci' must be [lo, hi], got {ci!r}")
        columns[f"{name}_lo"] = metric_float(ci[0], f"{name}_ci")
        columns[f"{name}_hi"] = metric_float(ci[1], f"{name}_ci")
    return columns


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: numpy values become Python ones, non-finite floats None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    # numpy arrays and scalars; duck-typed so that the store does not import numpy.
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    raise TypeError(f"cannot store {type(value).__name__} value {value!r} as JSON")


def to_json(value: Any) -> str:
    # allow_nan=False: a NaN that slipped through would make the text unreadable elsewhere.
    return json.dumps(_jsonable(value), allow_nan=False)


def from_json(text: str | None) -> dict[str, Any]:
    return {} if text is None else json.loads(text)


def run_record(row: RunRow) -> Run:
    values = {f.name: getattr(row, f.name) for f in fields(Run) if f.name not in RUN_JSON_FIELDS}
    return Run(
        **values,
        config=from_json(row.config_json),
        metrics=from_json(row.metrics_json),
        versions=from_json(row.versions_json),
        tags=tuple(json.loads(row.tags_json or "[]")),
    )


def suite_record(row: SuiteRow) -> Suite:
    return Suite(
        id=row.id,
        name=row.name,
        kind=row.kind,
        description=row.description,
        spec=from_json(row.spec_json),
        created_at=row.created_at,
    )


def epoch_record(row: EpochRow) -> Epoch:
    return Epoch(**{f.name: getattr(row, f.name) for f in fields(Epoch)})


def external_eval_record(row: ExternalEvalRow) -> ExternalEval:
    values = {f.name: getattr(row, f.name) for f in fields(ExternalEval) if f.name != "metrics"}
    return ExternalEval(**values, metrics=from_json(row.metrics_json))


def promotion_record(row: PromotionRow) -> Promotion:
    return Promotion(
        row.id, row.run_id, row.note, row.promoted_at, row.calibration_id, row.promoted_by
    )


def calibration_record(row: CalibrationRow) -> Calibration:
    values = {f.name: getattr(row, f.name) for f in fields(Calibration) if f.name != "details"}
    return Calibration(**values, details=from_json(row.details_json))


def eval_job_record(row: EvalJobRow) -> EvalJob:
    return EvalJob(**{f.name: getattr(row, f.name) for f in fields(EvalJob)})
