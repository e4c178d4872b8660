"""The run-config form: one widget per :class:`~pipeline.config.RunConfig` field, generated
from the pydantic model, with the model's own validation message under the field it concerns.

Widgets carry no bounds of their own, so the config model stays the single authority on what
is allowed and every refusal reads the same as on the command line.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import streamlit as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.config import ConfigError, RunConfig, dotted_to_nested, make_config

PREFIX = "cfg."
SECTIONS: dict[str, str] = {
    "data": "Data and preprocessing",
    "augment": "Augmentation",
    "model": "Model",
    "optim": "Optimiser",
    "train": "Training",
    "eval": "Evaluation",
}
# Which of the form's three columns holds each section, to even out their heights.
_COLUMN = {"data": 0, "model": 1, "optim": 1, "augment": 2, "train": 2, "eval": 2}
_TOP = ("name", "seed")


def fields() -> dict[str, FieldInfo]:
    """Every leaf field of RunConfig by dotted name, in declaration order."""
    out: dict[str, FieldInfo] = {f: RunConfig.model_fields[f] for f in _TOP}
    for section in SECTIONS:
        model: type[BaseModel] = RunConfig.model_fields[section].annotation  # type: ignore[assignment]
        for name, info in model.model_fields.items():
            out[f"{section}.{name}"] = info
    return out


def to_widget_values(config: dict[str, Any]) -> dict[str, Any]:
    """Widget session-state values (``cfg.<dotted>`` keys) for a config dict."""
    values = {}
    for dotted, info in fields().items():
        node: Any = config
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if _is_folders(info.annotation):
            node = node if isinstance(node, str) else "\n".join(node or ())
        elif _is_tuple(info.annotation):
            node = ", ".join(str(v) for v in node or ())
        elif info.annotation is float and node is not None:
            node = float(node)
        values[PREFIX + dotted] = node
    return values


def load(config: dict[str, Any]) -> None:
    """Put ``config``'s values into the form's widgets (before they are drawn)."""
    for key, value in to_widget_values(config).items():
        st.session_state[key] = value


def is_loaded() -> bool:
    """Whether every field's widget has a value (widgets lose them when their page is left)."""
    return all(PREFIX + dotted in st.session_state for dotted in fields())


def render(
    check: Callable[[dict[str, Any]], list[str]] | None = None,
    choices: dict[str, dict[str, str]] | None = None,
) -> RunConfig | None:
    """Draw the form from the widgets' session state and validate it.

    ``check`` may add problems of its own (``"data.path: no such folder"``) from the dotted
    values. ``choices``: text fields offered as a picker of values (value -> label), in which
    another value can still be typed (e.g. ``model.init``: the encoders there are). Returns the
    validated config, or None after showing every problem at once, each under its field (or its
    section, for a problem across fields).
    """
    all_fields = fields()
    values: dict[str, Any] = {}
    slots: dict[str, Any] = {}
    parse_problems: list[str] = []

    top = st.columns(3)
    for col, dotted in zip(top, _TOP, strict=False):
        with col:
            values[dotted] = _widget(dotted, all_fields[dotted], parse_problems, choices)
            slots[dotted] = st.empty()
    grid = st.columns(3)
    for section, title in SECTIONS.items():
        with grid[_COLUMN[section]].container(border=True):
            st.markdown(f"**{title}**")
            slots[section] = st.empty()
            for dotted, info in all_fields.items():
                if dotted.startswith(section + "."):
                    values[dotted] = _widget(dotted, info, parse_problems, choices)
                    slots[dotted] = st.empty()
    general = st.empty()

    problems = list(parse_problems)
    if check is not None:
        problems += check(values)
    # Every problem at once: a field that did not parse is left out (its default stands in)
    # so that the config model still judges all the others.
    unparsed = {problem.partition(":")[0] for problem in parse_problems}
    config = None
    try:
        config = make_config(
            dotted_to_nested({k: v for k, v in values.items() if k not in unparsed})
        )
    except ConfigError as err:
        problems += err.problems
    if problems:
        config = None
    unplaced = []
    by_slot: dict[str, list[str]] = {}
    for problem in problems:
        slot = _slot_for(problem, slots)
        if slot is None:
            unplaced.append(problem)
        else:
            by_slot.setdefault(slot, []).append(problem)
    for slot, messages in by_slot.items():
        slots[slot].error("\n\n".join(messages), icon=":material/error:")
    if unplaced:
        general.error("\n\n".join(unplaced), icon=":material/error:")
    return config


def _slot_for(problem: str, slots: dict[str, Any]) -> str | None:
    """The field or section a ``field: message`` problem line belongs to."""
    loc, _, message = problem.partition(": ")
    if loc == "config":
        # Cross-section checks name their section first ("model: 4 blocks ... shrink ...").
        loc = message.partition(":")[0]
    while loc and loc not in slots:
        loc = loc.rpartition(".")[0]
    return loc or None


def _is_tuple(annotation: Any) -> bool:
    return typing.get_origin(annotation) is tuple


def _is_folders(annotation: Any) -> bool:
    """Folders, one per line in a text area: ``data.path`` (one or several) and
    ``data.external`` (none or several)."""
    return tuple[str, ...] in (annotation, *typing.get_args(annotation))


def folder_lines(text: str) -> list[str]:
    """The non-empty lines of a text area, stripped: one folder each."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _optional_int(annotation: Any) -> bool:
    return isinstance(annotation, types.UnionType) and set(typing.get_args(annotation)) == {
        int,
        type(None),
    }


def _widget(
    dotted: str,
    info: FieldInfo,
    problems: list[str],
    choices: dict[str, dict[str, str]] | None = None,
) -> Any:
    """One field's widget; its value as the config model expects it (tuples parsed)."""
    key = PREFIX + dotted
    label = dotted.rpartition(".")[2].replace("_", " ")
    annotation = info.annotation
    help_text = _help(info)
    offered = (choices or {}).get(dotted)
    if offered:
        current = st.session_state.get(key)
        options = list(offered) + ([current] if current and current not in offered else [])
        return st.selectbox(
            label,
            options,
            key=key,
            help=help_text,
            format_func=lambda v: offered.get(v, v),
            accept_new_options=True,
        )
    if typing.get_origin(annotation) is Literal:
        return st.selectbox(label, typing.get_args(annotation), key=key, help=help_text)
    if annotation is bool:
        return st.checkbox(label, key=key, help=help_text)
    if annotation is int or _optional_int(annotation):
        placeholder = "off" if _optional_int(annotation) else None
        return st.number_input(label, step=1, key=key, help=help_text, placeholder=placeholder)
    if annotation is float:
        return st.number_input(
            label, step=_step(info.default), format="%g", key=key, help=help_text
        )
    if _is_folders(annotation):
        text = st.text_area(label, key=key, help=f"one folder per line; {help_text}", height=68)
        folders = folder_lines(text)
        # A single folder stays a string, as data.path has always been; data.external is a
        # list whatever its length.
        one = isinstance(annotation, types.UnionType) and str in typing.get_args(annotation)
        return folders[0] if one and len(folders) == 1 else folders
    if _is_tuple(annotation):
        text = st.text_input(label, key=key, help=help_text)
        return _parse_ints(dotted, text, problems)
    return st.text_input(label, key=key, help=help_text)


def _help(info: FieldInfo) -> str | None:
    parts = [info.description] if info.description else []
    bounds = _bounds(info)
    if bounds:
        parts.append(bounds)
    return "; ".join(parts) or None


def _bounds(info: FieldInfo) -> str:
    """The allowed range from the field's constraints, e.g. ``0 ≤ value < 1``."""
    low = high = ""
    for m in info.metadata:
        for attr, text, side in (
            ("ge", "≤", "low"),
            ("gt", "<", "low"),
            ("le", "≤", "high"),
            ("lt", "<", "high"),
        ):
            bound = getattr(m, attr, None)
            if bound is None:
                continue
            if side == "low":
                low = f"{bound} {text} "
            else:
                high = f" {text} {bound}"
    return f"{low}value{high}" if low or high else ""


def _step(default: Any) -> float:
    """A +/- step of the default's order of magnitude (0.1 for 0.3, 1e-4 for 1e-3...)."""
    if not isinstance(default, int | float) or default == 0:
        return 0.01
    return 10.0 ** (math.floor(math.log10(abs(default))) - (1 if abs(default) >= 1 else 0))


def _parse_ints(dotted: str, text: str, problems: list[str]) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        problems.append(f"{dotted}: write whole numbers separated by commas, e.g. 16, 32, 64")
        return None
