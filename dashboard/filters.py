"""The leaderboard's filter expressions: parsing, validating and evaluating them against a
frame, and :class:`ExpressionError`, the message a refused one gets. Pure pandas: no Streamlit.

An expression such as ``auc > 0.9 and enhancement == "clahe"`` or ``model.dropout >= 0.3`` can
filter on any column of the leaderboard (see :func:`dashboard.tables.leaderboard`);
``"baseline" in tags`` keeps the runs with that tag, ``"lr" in note`` those whose note mentions
it. Expressions are parsed with :mod:`ast` and evaluated node by node against the columns;
nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

import pandas as pd

MAX_EXPRESSION = 500
EXAMPLE = 'auc > 0.9 and enhancement == "clahe"'


class ExpressionError(ValueError):
    """A filter expression was refused; the message says what is wrong and what is allowed."""


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
