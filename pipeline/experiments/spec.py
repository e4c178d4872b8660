"""What an experiment suite is: a base config, the factor(s) it varies, and the question it answers.

A suite expands into planned runs (:func:`pipeline.experiments.plan.expand`), which
:func:`~pipeline.experiments.plan.enqueue` records in the run store as queued runs for the
workers. When the runs have finished, :func:`pipeline.experiments.summary.summary` puts one row
per setting, compared with the suite's reference setting by a paired test.

Every run's config is the suite's ``preset`` (``baseline`` unless it names another) + its ``base``
+ the caller's overrides +
``data.path`` + the setting + the run's seed, validated like any other run config.

Invalid settings — refused or skipped:

* A value that is invalid on its own (``model.pooling: median``, ``data.image_size: 16``, an
  unknown field) is a mistake in the suite: :class:`~pipeline.config.ConfigError`, naming the
  suite, the setting and the field.
* So is any invalid setting the suite asks for by name: an explicit ``settings`` entry, or a value
  changed alone in ``one_at_a_time`` mode.
* In ``grid`` and ``random`` mode, a cell whose values are each valid but cannot be built
  together (``padding: valid`` with ``stride: 2`` shrinks 128 px to nothing through 4 blocks) is
  an empty corner of the grid, not a typo: it is skipped, and the reason is recorded in
  ``Plan.skipped`` and in the stored suite. A grid where every cell is impossible is refused.

A custom suite is a small YAML or JSON file with the :class:`SuiteSpec` fields
(:func:`~pipeline.experiments.plan.load_suite_file`)::

    name: dropout
    question: does more dropout help the baseline generalise to unseen patients?
    base: {train.epochs: 20}          # dotted overrides on the baseline preset
    factors:
      model.dropout: [0.1, 0.3, 0.5]
    mode: grid                        # one_at_a_time | grid | random (random needs max_runs)

Where the question is whether a model carries over to a collection it never saw, leave each
source out in turn (no factors, no settings; ``data.path`` must list two folders or more)::

    name: unseen-collection
    question: does a model trained on the other collections work on the one it never saw?
    base: {train.balance_sources: true}
    mode: leave_one_source_out        # one run per folder: trained on the others, tested on it

Each of its runs trains on every listed folder but one and names that one in ``data.external``,
so the run is evaluated on it at the end, at the threshold chosen on validation.

Where one setting must change several fields together, list ``settings`` instead of ``factors``::

    settings:
      - {optim.name: sgd, optim.learning_rate: 0.01}
      - {optim.name: adam, optim.learning_rate: 0.001}
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Mode = Literal["one_at_a_time", "grid", "random", "leave_one_source_out"]
MODES: tuple[str, ...] = ("one_at_a_time", "grid", "random", "leave_one_source_out")
LEAVE_ONE_OUT = "leave_one_source_out"
# What a leave-one-source-out setting changes: the training folders, and the held-out one.
HELD_OUT = "data.external"
# expand() sets these for every run, so a suite or override that set them would be overwritten.
PER_RUN = ("seed", "name")
FROM_CALLER = "data.path"


def flatten(changes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 5}}`` -> ``{"train.epochs": 5}``; dotted keys pass through."""
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class SuiteSpec(BaseModel):
    """A suite: a base config and the factors it varies (or explicit settings), and why.

    ``base``, ``factors`` and ``settings`` use dotted config fields (``"model.pooling"``); nested
    dicts are accepted too. Give either ``factors`` (field -> values, combined by ``mode``) or
    ``settings`` (a list of dotted-override dicts, each one setting; for settings that change
    several fields together). ``max_runs`` caps the number of settings and belongs to ``mode``:
    it is required for ``random``. Structure is checked here; values are checked by
    :func:`~pipeline.experiments.plan.expand`, which validates every config.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=60)
    question: str = Field(min_length=1, description="the question the suite answers, and why")
    preset: str = Field("baseline", description="the preset every run starts from")
    base: dict[str, Any] = Field(default_factory=dict)
    factors: dict[str, list[Any]] | None = None
    settings: list[dict[str, Any]] | None = None
    mode: Mode = "grid"
    max_runs: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> SuiteSpec:
        problems = []
        if self.mode == LEAVE_ONE_OUT:
            if self.factors is not None or self.settings is not None:
                problems.append(
                    "mode: leave_one_source_out varies the training folders only; put other "
                    "changes in base and drop factors and settings"
                )
            if HELD_OUT in flatten(self.base):
                problems.append(f"base.{HELD_OUT}: set to the held-out folder of each run")
        elif (self.factors is None) == (self.settings is None):
            problems.append("give either factors (field -> values) or settings (a list), not both")
        if self.factors is not None:
            if not self.factors:
                problems.append("factors: name at least one field")
            for field, values in self.factors.items():
                if not values:
                    problems.append(f"factors.{field}: give at least one value")
                if field in PER_RUN:
                    problems.append(f"factors.{field}: set for every run by the suite (use seeds)")
        if self.settings is not None:
            if not self.settings:
                problems.append("settings: give at least one (an empty {} is the base config)")
            if self.mode == "one_at_a_time":
                problems.append("mode: one_at_a_time needs factors; settings run as listed")
            for i, setting in enumerate(self.settings):
                problems += [
                    f"settings.{i}.{key}: set for every run by the suite (use seeds)"
                    for key in flatten(setting)
                    if key in PER_RUN
                ]
        problems += [
            f"base.{key}: set for every run by expand() (data_path, seeds), not by the suite"
            for key in flatten(self.base)
            if key in (*PER_RUN, FROM_CALLER)
        ]
        if self.mode == "random" and self.max_runs is None:
            problems.append("max_runs: required when mode is 'random' (how many settings to draw)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def varied_fields(spec: SuiteSpec) -> list[str]:
    """The dotted config fields the suite varies: its factors, or every field its settings set,
    or, leaving one source out, the held-out folder (``data.path`` follows from it)."""
    if spec.mode == LEAVE_ONE_OUT:
        return [HELD_OUT]
    if spec.factors is not None:
        return list(spec.factors)
    fields: dict[str, None] = {}
    for setting in spec.settings or []:
        fields.update(dict.fromkeys(flatten(setting)))
    return list(fields)


def setting_label(setting: dict[str, Any]) -> str:
    """``{"model.pooling": "avg"}`` -> ``"model.pooling=avg"``; the empty setting is ``"base"``.

    Values are written as ``--set`` accepts them (JSON, strings bare).
    """
    return ", ".join(f"{field}={_text(value)}" for field, value in setting.items()) or "base"


def values_at(config: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The value of each dotted field in a JSON config dict (None where the field is absent)."""
    values = {}
    for field in fields:
        node: Any = config
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[field] = node
    return values


def key_of(values: dict[str, Any], fields: list[str]) -> str:
    """A hashable identity of a setting: its varied fields' values as JSON, in field order."""
    return json.dumps([values.get(field) for field in fields])


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
