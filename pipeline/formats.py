"""How the project writes numbers for people, the same on the command line, in suite summaries
and on the dashboard: a metric (``0.912``), an interval (``[0.880, 0.940]``), a metric with its
interval (``0.912 [0.880, 0.940]``) and a duration (``42 s``, ``3 min 07 s``, ``2 h 05 min``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from numbers import Real

MISSING = "—"


def missing(value: object) -> bool:
    """None or NaN (a Python or NumPy float): nothing to show."""
    return value is None or (isinstance(value, Real) and math.isnan(value))


def number(value: float | None, digits: int = 3) -> str:
    """``0.912``; ``—`` for None or NaN."""
    return MISSING if missing(value) else f"{value:.{digits}f}"


def probability_and_threshold(probability: float, threshold: float) -> tuple[str, str]:
    """P(TB) and the threshold it is read against, with the same number of decimals — three,
    or more (up to six) until the two no longer read the same: ``0.0192`` beside ``0.0186``,
    never ``0.02`` beside ``0.0186`` or ``0.019`` beside ``0.019``."""
    digits = 3
    while digits < 6 and f"{probability:.{digits}f}" == f"{threshold:.{digits}f}":
        digits += 1
    return f"{probability:.{digits}f}", f"{threshold:.{digits}f}"


def interval(bounds: Sequence[float | None] | None, digits: int = 3) -> str:
    """``[0.880, 0.940]``; ``—`` unless both bounds are there."""
    if not bounds or any(missing(b) for b in bounds):
        return MISSING
    lo, hi = bounds
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def with_interval(
    value: float | None, bounds: Sequence[float | None] | None, digits: int = 3
) -> str:
    """``0.912 [0.880, 0.940]``; the value alone without both bounds; ``—`` without a value."""
    if missing(value):
        return MISSING
    if interval(bounds, digits) == MISSING:
        return number(value, digits)
    return f"{number(value, digits)} {interval(bounds, digits)}"


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 07 s``, ``2 h 05 min``; ``—`` when unknown."""
    if missing(seconds):
        return MISSING
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&])")


def plain(text: str) -> str:
    """``text`` shown as it is in Markdown: every character Markdown or HTML could read as
    markup (a link, emphasis, a tag) is escaped. Reasons and errors can quote what a file or
    a user wrote (a DICOM header's fields, a filter expression)."""
    return _MARKDOWN.sub(r"\\\1", text)
