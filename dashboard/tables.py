"""Runs as pandas tables for the dashboard: the leaderboard frame, safe filter expressions,
grouping, and config differences. Pure pandas: no Streamlit, no TensorFlow.

Leaderboard columns have short names (``auc``, ``enhancement``, ``learning_rate``), and every
config field is also there under its dotted name (``model.dropout``), so an expression such as
``auc > 0.9 and enhancement == "clahe"`` or ``model.dropout >= 0.3`` can filter on anything the
table shows; ``"baseline" in tags`` keeps the runs with that tag, ``"lr" in note`` those whose
note mentions it. Expressions are parsed with :mod:`ast` and evaluated node by node against the
columns; nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from db import ExternalSummary, Run

# Short names for the config fields people filter and sort by most; each is also present under
# its dotted name with the rest of the config.
KEY_CONFIG: dict[str, str] = {
    "dataset": "data.path",
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
    "duration_s",
    "tags",
    "note",
    "suite",
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
MAX_EXPRESSION = 500
EXAMPLE = 'auc > 0.9 and enhancement == "clahe"'


class ExpressionError(ValueError):
    """A filter expression was refused; the message says what is wrong and what is allowed."""


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
            "created": pd.Timestamp(run.created_at),
            **{m: getattr(run, m) for m in METRICS},
            "auc_lo": run.auc_lo,
            "auc_hi": run.auc_hi,
            "auc_ci": f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "",
            "who_met": run.who_met,
            **{c: getattr(ext, field) if ext else None for c, field in EXTERNAL.items()},
            "ext_sets": len(ext.datasets) if ext else 0,
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
    out = pd.DataFrame(rows)
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


# Filter expressions --------------------------------------------------------------------------

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_ALLOWED = (
    "column names (auc, enhancement, model.dropout, ...), numbers, quoted text, True, False, "
    'None, comparisons (== != < <= > >=, in [...], "text" in tags or note), and / or / not, '
    "+ - * / and parentheses"
)


def filter_frame(frame: pd.DataFrame, expression: str) -> pd.DataFrame:
    """The rows of ``frame`` where ``expression`` holds; an empty expression keeps every row.

    The expression is Python-like (``auc > 0.9 and enhancement == "clahe"``, ``optimizer in
    ["adam", "sgd"]``, ``not who_met``, ``sensitivity + specificity > 1.6``). Only the nodes
    listed in the error message are allowed, and arithmetic only on numbers, so an expression can
    neither call anything nor build a huge value. A missing value (NaN) fails every comparison.
    Raises :class:`ExpressionError` with a message for the user.
    """
    text = expression.strip()
    if not text:
        return frame
    if len(text) > MAX_EXPRESSION:
        raise ExpressionError(f"the expression is longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ExpressionError(
            f"cannot parse the expression ({err.msg}); write e.g. {EXAMPLE}"
        ) from None
    mask = _Evaluator(frame).condition(tree.body)
    if isinstance(mask, bool):
        return frame if mask else frame.iloc[0:0]
    return frame[mask.to_numpy()]


class _Evaluator:
    """Evaluates a parsed expression against the columns of a frame, node by node."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def condition(self, node: ast.expr) -> pd.Series | bool:
        value = self.value(node)
        if isinstance(value, bool):
            return value
        if isinstance(value, pd.Series) and pd.api.types.is_bool_dtype(value):
            return value
        if isinstance(value, pd.Series) and value.dropna().map(type).eq(bool).all():
            # A yes/no column with gaps (who_met before a run finishes): a gap is not "yes".
            return value.map(lambda v: v is True).astype(bool)
        raise ExpressionError(
            f"{ast.unparse(node)!r} is not a condition; compare it, e.g. {ast.unparse(node)} > 0.5"
        )

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, bool | int | float | str):
                return node.value
        elif isinstance(node, ast.Name | ast.Attribute):
            return self.column(node)
        elif isinstance(node, ast.BoolOp):
            parts = [self.condition(v) for v in node.values]
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            result = parts[0]
            for part in parts[1:]:
                result = combine(result, part)
            return result
        elif isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                cond = self.condition(node.operand)
                return (not cond) if isinstance(cond, bool) else ~cond
            if isinstance(node.op, ast.USub | ast.UAdd):
                operand = self.number(node.operand)
                return -operand if isinstance(node.op, ast.USub) else operand
        elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](self.number(node.left), self.number(node.right))
        elif isinstance(node, ast.Compare):
            return self.compare(node)
        raise ExpressionError(
            f"{ast.unparse(node)!r} is not allowed in a filter; use only {_ALLOWED}"
        )

    def column(self, node: ast.Name | ast.Attribute) -> pd.Series:
        parts = []
        current: ast.expr = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if not isinstance(current, ast.Name):
            raise ExpressionError(f"{ast.unparse(node)!r} is not a column name")
        name = ".".join([current.id, *reversed(parts)])
        if name in ("True", "False", "None"):
            raise ExpressionError(f"{name!r} is not a column name")
        if name not in self.frame.columns:
            known = ", ".join(c for c in self.frame.columns if "." not in c)
            raise ExpressionError(
                f"unknown column {name!r}; columns: {known}, and any config field by its "
                "dotted name (e.g. model.dropout)"
            )
        return self.frame[name]

    def number(self, node: ast.expr) -> Any:
        value = self.value(node)
        numeric = (
            isinstance(value, pd.Series)
            and pd.api.types.is_numeric_dtype(value)
            and not pd.api.types.is_bool_dtype(value)
        ) or (isinstance(value, int | float) and not isinstance(value, bool))
        if not numeric:
            raise ExpressionError(f"arithmetic needs numbers; {ast.unparse(node)!r} is not one")
        return value

    def compare(self, node: ast.Compare) -> pd.Series | bool:
        parts: list[pd.Series | bool] = []
        left = self.value(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn) and isinstance(left, str):
                found = self.contains(left, self.value(right_node), node)
                part = ~found if isinstance(op, ast.NotIn) else found
                right = None
            elif isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right_node, ast.List | ast.Tuple | ast.Set):
                    raise ExpressionError("'in' needs a list of values, e.g. pooling in ['max']")
                options = [self.value(e) for e in right_node.elts]
                if any(isinstance(o, pd.Series) for o in options):
                    raise ExpressionError("the list after 'in' must hold values, not columns")
                if not isinstance(left, pd.Series):
                    raise ExpressionError("the left side of 'in' must be a column")
                found = left.isin(options)
                part = ~found if isinstance(op, ast.NotIn) else found
                right = None
            elif type(op) in _COMPARE:
                right = self.value(right_node)
                part = self._apply(_COMPARE[type(op)], left, right, node)
            else:
                raise ExpressionError(f"comparison {ast.unparse(node)!r} is not allowed")
            parts.append(part)
            left = right
        result = parts[0]
        for part in parts[1:]:
            result = result & part
        return result

    @staticmethod
    def contains(text: str, column: Any, node: ast.Compare) -> pd.Series:
        """``"x" in tags``: runs tagged x; ``"x" in note``: text containing x, any case."""
        if not isinstance(column, pd.Series):
            raise ExpressionError(f"in {ast.unparse(node)!r}, text can be found in a column only")
        if column.map(lambda v: isinstance(v, tuple | list)).all():
            return column.map(lambda tags: text in tags).astype(bool)
        if not column.map(lambda v: isinstance(v, str)).all():
            raise ExpressionError(f"in {ast.unparse(node)!r}, the column does not hold text")
        return column.str.contains(text, case=False, regex=False)

    @staticmethod
    def _apply(fn: Callable[[Any, Any], Any], left: Any, right: Any, node: ast.Compare) -> Any:
        try:
            out = fn(left, right)
        except TypeError:
            raise ExpressionError(
                f"cannot compare in {ast.unparse(node)!r}: a text column with a number, or "
                "the other way round"
            ) from None
        if isinstance(out, pd.Series):
            # Comparisons with a missing value are False, never an error.
            return out.fillna(False).astype(bool)
        return bool(out)
