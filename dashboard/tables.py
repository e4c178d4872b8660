"""Runs as pandas tables for the dashboard: the leaderboard frame, grouping, and config
differences. Pure pandas: no Streamlit, no TensorFlow.

Leaderboard columns have short names (``auc``, ``enhancement``, ``learning_rate``), and every
config field is also there under its dotted name (``model.dropout``), so that the filter
expressions of :mod:`dashboard.filters` can reach anything the table shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from db import ExternalSummary, Run
from pipeline import formats
from pipeline.runs import loso

# Short names for the config fields people filter and sort by most; each is also present under
# its dotted name with the rest of the config.
KEY_CONFIG: dict[str, str] = {
    "dataset": "data.path",
    "roi": "data.roi",
    "init": "model.init",
    "image_size": "data.image_size",
    "enhancement": "data.enhancement",
    "optimizer": "optim.name",
    "learning_rate": "optim.learning_rate",
    "batch_size": "train.batch_size",
    "epochs": "train.epochs",
    "imbalance": "train.imbalance",
    "filters": "model.filters",
    "kernel_size": "model.kernel_size",
    "pooling": "model.pooling",
    "dropout": "model.dropout",
    "seed": "seed",
}
METRICS: tuple[str, ...] = (
    "auc",
    "sensitivity",
    "specificity",
    "f1",
    "accuracy",
    "precision",
    "threshold",
)
# A run's external evaluations, summarised (see db.ExternalSummary): rankable like the metrics.
EXTERNAL: dict[str, str] = {
    "ext_auc_mean": "auc_mean",
    "ext_auc_worst": "auc_worst",
    "ext_sens_mean": "sensitivity_mean",
    "ext_sens_worst": "sensitivity_worst",
}
# A run's figures with each of its sources held out in turn (pipeline.runs.loso), from its
# metrics: the honest figure for hospitals a multi-source run did not train on.
LOSO: dict[str, str] = {
    "loso_auc_mean": "auc_mean",
    "loso_auc_worst": "auc_worst",
    "loso_sens_mean": "sensitivity_mean",
    "loso_sens_worst": "sensitivity_worst",
}
# The leaderboard's default columns, in order (the rest can be added in the page).
DEFAULT_COLUMNS: tuple[str, ...] = (
    "name",
    "status",
    "progress",
    "auc",
    "auc_ci",
    "sensitivity",
    "specificity",
    "f1",
    "accuracy",
    "who_met",
    "ext_auc_mean",
    "ext_auc_worst",
    "ext_sens_worst",
    "loso_auc_worst",
    "loso_sens_worst",
    "duration_s",
    "tags",
    "note",
    "suite",
    "dataset",
    "roi",
    "init",
    "image_size",
    "enhancement",
    "optimizer",
    "learning_rate",
    "batch_size",
    "epochs",
    "pooling",
    "filters",
    "seed",
    "created",
)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted fields; lists become text (``[16, 32]`` -> ``"16-32"``)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list | tuple):
            flat[f"{prefix}{key}"] = "-".join(str(v) for v in value)
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def progress(run: Run) -> str:
    """What a run is doing, for a table cell: ``epoch 3/20`` while it trains."""
    total = run.config.get("train", {}).get("epochs")
    if run.status == "running":
        return f"epoch {run.current_epoch or 0}/{total}" if total else "running"
    if run.status == "succeeded":
        trained = run.metrics.get("epochs_trained")
        return f"{trained} epochs" if trained is not None else "done"
    if run.status == "cancelled" and run.current_epoch:
        return f"stopped at epoch {run.current_epoch}/{total}"
    return run.status


def leaderboard(
    runs: Iterable[Run],
    suites: dict[str, str] | None = None,
    externals: dict[str, ExternalSummary] | None = None,
) -> pd.DataFrame:
    """One row per run: id, name, status, progress, suite, metrics, key config, dotted config.

    ``suites`` maps suite ids to names; ``externals`` maps run ids to the summary of their
    external evaluations (columns :data:`EXTERNAL`: mean and worst external AUC and sensitivity,
    and ``ext_sets``, the number of external folders). Metric columns are float (NaN until a run
    has them); ``auc_ci`` is the interval as text; ``created`` is a timezone-aware timestamp.
    """
    suites = suites or {}
    externals = externals or {}
    rows = []
    for run in runs:
        flat = flatten(run.config)
        ext = externals.get(run.id)
        ci = run.auc_ci
        row: dict[str, Any] = {
            "id": run.id,
            "name": run.name,
            "status": run.status,
            "progress": progress(run),
            "epoch": run.current_epoch,
            "suite": suites.get(run.suite_id, "") if run.suite_id else "",
            "suite_id": run.suite_id or "",
            "data_id": (run.data_fingerprint or "")[:10],
            "created": pd.Timestamp(run.created_at),
            **{m: getattr(run, m) for m in METRICS},
            "auc_lo": run.auc_lo,
            "auc_hi": run.auc_hi,
            "auc_ci": formats.interval(ci),
            "who_met": run.who_met,
            **{c: getattr(ext, field) if ext else None for c, field in EXTERNAL.items()},
            "ext_sets": len(ext.datasets) if ext else 0,
            **{c: (run.metrics.get(loso.KEY) or {}).get(key) for c, key in LOSO.items()},
            "duration_s": run.duration_s,
            "tags": run.tags,
            "note": run.note,
            "archived": run.archived_at is not None,
            "error": (run.error or "").strip().splitlines()[-1] if run.error else "",
        }
        for short, dotted in KEY_CONFIG.items():
            value = flat.get(dotted)
            row[short] = dataset_name(value) if short == "dataset" and value else value
        row.update(flat)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column in (*METRICS, *EXTERNAL, "auc_lo", "auc_hi", "duration_s", "epoch"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def dataset_scopes(frame: pd.DataFrame) -> pd.Series:
    """Each run's dataset as a reader picks it: ``tb-cxr · 3fa2c19d0b``, the folder's name and
    the identity of its contents (a run's data fingerprint: the same images and labels give the
    same one wherever the folder lies; a changed folder another). A run not finished yet has
    none: it goes with the finished runs of its folder's name, or reads ``… · not scanned yet``."""
    known = frame.loc[frame["data_id"] != "", ["dataset", "data_id"]]
    usual = known.groupby("dataset")["data_id"].agg(lambda ids: ids.value_counts().index[0])
    ids = frame["data_id"].where(frame["data_id"] != "", frame["dataset"].map(usual))
    return pd.Series(
        [
            f"{name} · {data_id}" if isinstance(data_id, str) else f"{name} · not scanned yet"
            for name, data_id in zip(frame["dataset"], ids, strict=True)
        ],
        index=frame.index,
    )


def dataset_name(path: str | list[str]) -> str:
    """A run's ``data.path`` in short: ``tb-cxr``, or ``tb-cxr + montgomery`` for several."""
    return " + ".join(Path(p).name for p in ([path] if isinstance(path, str) else path))


def config_columns(frame: pd.DataFrame) -> list[str]:
    """The config columns of ``frame``: short names first, then the other dotted fields."""
    short = [c for c in KEY_CONFIG if c in frame.columns]
    aliased = set(KEY_CONFIG.values())
    dotted = [c for c in frame.columns if "." in c and c not in aliased]
    return short + dotted


def group_summary(
    frame: pd.DataFrame, by: str, metrics: Iterable[str] = METRICS[:5]
) -> pd.DataFrame:
    """Mean ± std of each metric per value of ``by``, over runs that have the metric.

    Columns: ``by``, ``runs`` (all runs in the group), ``succeeded``, then ``<metric>`` as
    ``"0.912 ± 0.010"`` text (the mean alone for one run, ``—`` for none) and ``<metric>_mean``
    for sorting. Sorted by mean AUC, best first.
    """
    key = frame[by].map(_hashable)
    rows = []
    for value, group in frame.groupby(key, dropna=False, sort=False):
        row: dict[str, Any] = {
            by: value,
            "runs": len(group),
            "succeeded": int((group["status"] == "succeeded").sum()),
        }
        for metric in metrics:
            values = group[metric].dropna()
            mean = values.mean() if len(values) else np.nan
            std = values.std() if len(values) > 1 else np.nan
            row[f"{metric}_mean"] = mean
            row[metric] = mean_std(mean, std)
        rows.append(row)
    columns = [by, "runs", "succeeded", *(c for m in metrics for c in (f"{m}_mean", m))]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values("auc_mean", ascending=False, na_position="last", kind="stable")


def config_diff(runs: list[Run]) -> pd.DataFrame:
    """The config fields whose values differ between ``runs``: one row per field, one column
    per run (named by its name and short id). Empty when the configs are identical."""
    flats = [flatten(r.config) for r in runs]
    fields = sorted({f for flat in flats for f in flat})
    rows = {}
    for field in fields:
        values = [flat.get(field) for flat in flats]
        if len({json.dumps(v, sort_keys=True) for v in values}) > 1:
            rows[field] = ["—" if v is None else str(v) for v in values]
    columns = run_labels(runs)
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def run_labels(runs: list[Run]) -> list[str]:
    """Distinct, readable labels for runs: ``name · id[:6]``."""
    return [f"{r.name} · {r.id[:6]}" for r in runs]


def _hashable(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def mean_std(mean: float, std: float) -> str:
    """``0.912 ± 0.010``; the mean alone without a std, ``—`` without a mean."""
    if pd.isna(mean):
        return "—"
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"
