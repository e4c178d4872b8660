"""Experiment suites: a base config, the factor(s) it varies, and the question it answers.

A suite expands into planned runs (:func:`expand`), which :func:`enqueue` records in the run store
as queued runs for the workers; nothing trains here, and this module never imports TensorFlow (the
dashboard imports it). When the runs have finished, :func:`pipeline.summary.summary` puts one row
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
(:func:`load_suite_file`)::

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

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.config import ENHANCEMENTS, ConfigError, RunConfig, override, preset

if TYPE_CHECKING:
    from db import Run, RunStore, Suite

Mode = Literal["one_at_a_time", "grid", "random", "leave_one_source_out"]
MODES: tuple[str, ...] = ("one_at_a_time", "grid", "random", "leave_one_source_out")
LEAVE_ONE_OUT = "leave_one_source_out"
# What a leave-one-source-out setting changes: the training folders, and the held-out one.
_HELD_OUT = "data.external"
# A grid bigger than this is a typo or a misunderstanding, not an experiment anyone will run.
MAX_GRID = 10_000
# expand() sets these for every run, so a suite or override that set them would be overwritten.
_PER_RUN = ("seed", "name")
_FROM_CALLER = "data.path"
# RunConfig.name's max_length: long setting labels are shortened to fit in run names.
_MAX_NAME = 120


def _flatten(changes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 5}}`` -> ``{"train.epochs": 5}``; dotted keys pass through."""
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
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
    :func:`expand`, which validates every config.
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
            if _HELD_OUT in _flatten(self.base):
                problems.append(f"base.{_HELD_OUT}: set to the held-out folder of each run")
        elif (self.factors is None) == (self.settings is None):
            problems.append("give either factors (field -> values) or settings (a list), not both")
        if self.factors is not None:
            if not self.factors:
                problems.append("factors: name at least one field")
            for field, values in self.factors.items():
                if not values:
                    problems.append(f"factors.{field}: give at least one value")
                if field in _PER_RUN:
                    problems.append(f"factors.{field}: set for every run by the suite (use seeds)")
        if self.settings is not None:
            if not self.settings:
                problems.append("settings: give at least one (an empty {} is the base config)")
            if self.mode == "one_at_a_time":
                problems.append("mode: one_at_a_time needs factors; settings run as listed")
            for i, setting in enumerate(self.settings):
                problems += [
                    f"settings.{i}.{key}: set for every run by the suite (use seeds)"
                    for key in _flatten(setting)
                    if key in _PER_RUN
                ]
        problems += [
            f"base.{key}: set for every run by expand() (data_path, seeds), not by the suite"
            for key in _flatten(self.base)
            if key in (*_PER_RUN, _FROM_CALLER)
        ]
        if self.mode == "random" and self.max_runs is None:
            problems.append("max_runs: required when mode is 'random' (how many settings to draw)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True)
class Planned:
    """One run to enqueue: its setting (dotted field -> value), its seed and its full config."""

    setting: dict[str, Any]
    seed: int
    config: RunConfig

    @property
    def label(self) -> str:
        """The setting as readable text, e.g. ``model.pooling=avg`` (``base`` when empty)."""
        return setting_label(self.setting)


@dataclass(frozen=True)
class Skipped:
    """A grid cell that was not planned: its setting, and why it cannot be built."""

    setting: dict[str, Any]
    reason: str


class Plan(list[Planned]):
    """What :func:`expand` returns: the planned runs, plus what :func:`enqueue` records.

    ``skipped``: grid cells whose values cannot be combined (see the module docstring).
    ``options``: the resolved arguments of the expansion (mode, max_runs, seeds, first seed,
    overrides, data path), so the stored suite says how it was expanded.
    """

    def __init__(
        self,
        runs: Iterable[Planned] = (),
        *,
        skipped: Iterable[Skipped] = (),
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(runs)
        self.skipped = tuple(skipped)
        self.options = dict(options or {})


_AT_128 = {"data.image_size": 128}
# The generalisation suite's external sets (../shared/data, beside the checkout) and its
# appearance augmentation: what a 224-px JPEG copy from a brighter, blurrier machine looks like.
GENERALISATION_EXTERNAL = ("../shared/data/nlm-224", "../shared/data/montgomery")
APPEARANCE = {
    "augment.gamma": 0.3,
    "augment.contrast": 0.3,
    "augment.blur": 1.0,
    "augment.noise": 0.03,
    "augment.resample": 2.0,
    "augment.jpeg": 40,
}

SUITES: dict[str, SuiteSpec] = {
    spec.name: spec
    for spec in (
        SuiteSpec(
            name="baseline",
            question="the reference CNN alone: the yardstick every other suite is read against, "
            "and, over several seeds, how much a result moves by chance",
            base=_AT_128,
            settings=[{}],
        ),
        SuiteSpec(
            name="optimizers",
            question="does the optimiser matter? SGD (momentum 0.9) at lr 1e-2, Adam at 1e-3 and "
            "RMSprop (no momentum) at 1e-3: each at its customary learning rate, because one "
            "shared rate would favour whichever optimiser it happens to suit",
            base=_AT_128,
            settings=[
                {"optim.name": "sgd", "optim.learning_rate": 1e-2, "optim.momentum": 0.9},
                {"optim.name": "adam", "optim.learning_rate": 1e-3},
                {"optim.name": "rmsprop", "optim.learning_rate": 1e-3},
            ],
        ),
        SuiteSpec(
            name="pooling",
            question="max or average pooling between conv blocks: which keeps small, faint "
            "TB lesions visible to the classifier?",
            base=_AT_128,
            factors={"model.pooling": ["max", "avg"]},
        ),
        SuiteSpec(
            name="conv-geometry",
            question="kernel size (3/5/7), padding (same/valid) and stride (1/2): each changed "
            "alone from the baseline (5 settings); mode grid crosses them (12 cells, those with "
            "valid padding and stride 2 cannot fit 128 px and are skipped)",
            base=_AT_128,
            factors={
                "model.kernel_size": [3, 5, 7],
                "model.padding": ["same", "valid"],
                "model.stride": [1, 2],
            },
            mode="one_at_a_time",
        ),
        SuiteSpec(
            name="hyperparams",
            question="which learning rate, Adam epsilon, batch size and epoch budget? a seeded "
            "random draw of 12 of the 180 grid cells, since random search finds good regions "
            "at a fraction of a full grid's cost",
            base=_AT_128,
            factors={
                "optim.learning_rate": [1e-4, 3e-4, 1e-3, 3e-3],
                "optim.epsilon": [1e-8, 1e-7, 1e-6, 1e-5, 1e-4],
                "train.batch_size": [16, 32, 64],
                "train.epochs": [10, 20, 30],
            },
            mode="random",
            max_runs=12,
        ),
        SuiteSpec(
            name="enhancement",
            question="does contrast enhancement before the CNN help: none, contrast stretching, "
            "histogram equalisation or CLAHE?",
            base=_AT_128,
            factors={"data.enhancement": list(ENHANCEMENTS)},
        ),
        SuiteSpec(
            name="width",
            question="how wide must the CNN be: 8-64, 16-128 (baseline) or 32-256 filters; "
            "where does extra capacity stop paying for its compute?",
            base=_AT_128,
            factors={
                "model.filters": [[8, 16, 32, 64], [16, 32, 64, 128], [32, 64, 128, 256]],
            },
        ),
        SuiteSpec(
            name="generalisation",
            question="which change makes the model find TB on X-rays from other hospitals? each "
            "shortcut remedy alone against the baseline (artefacts inpainted or cropped, "
            "intensity standardised, appearance augmentation, lungs only), then all together, "
            "and the two that helped together; read by external AUC and sensitivity on nlm-224 "
            "and Montgomery, over 3 seeds",
            # Each remedy against the whole-film model it was measured against.
            preset="baseline-v1",
            base={**_AT_128, "data.external": list(GENERALISATION_EXTERNAL)},
            settings=[
                {},
                {"data.artefacts": "inpaint"},
                {"data.artefacts": "crop_border"},
                {"data.intensity": "percentile"},
                {"data.intensity": "hist_match"},
                APPEARANCE,
                {"data.roi": "lung_mask"},
                {
                    "data.roi": "lung_mask",
                    "data.artefacts": "inpaint",
                    "data.intensity": "hist_match",
                    **APPEARANCE,
                },
                # The two remedies that each raised the external AUC without costing internal
                # AUC below 0.97, on the first pass of this suite (EXPERIMENTS.md).
                {"data.roi": "lung_mask", "data.intensity": "hist_match"},
            ],
        ),
        SuiteSpec(
            name="input-size",
            question="does resolution matter: 128, 224 or 512 px, at about 3x and 16x the "
            "compute of 128 px?",
            factors={"data.image_size": [128, 224, 512]},
        ),
    )
}


def varied_fields(spec: SuiteSpec) -> list[str]:
    """The dotted config fields the suite varies: its factors, or every field its settings set,
    or, leaving one source out, the held-out folder (``data.path`` follows from it)."""
    if spec.mode == LEAVE_ONE_OUT:
        return [_HELD_OUT]
    if spec.factors is not None:
        return list(spec.factors)
    fields: dict[str, None] = {}
    for setting in spec.settings or []:
        fields.update(dict.fromkeys(_flatten(setting)))
    return list(fields)


def setting_label(setting: dict[str, Any]) -> str:
    """``{"model.pooling": "avg"}`` -> ``"model.pooling=avg"``; the empty setting is ``"base"``.

    Values are written as ``--set`` accepts them (JSON, strings bare).
    """
    return ", ".join(f"{field}={_text(value)}" for field, value in setting.items()) or "base"


def expand(
    spec: SuiteSpec,
    *,
    data_path: str | Sequence[str],
    seeds: int = 1,
    max_runs: int | None = None,
    mode: str | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
) -> Plan:
    """The suite's runs: every setting (see ``mode``), each repeated over ``seeds`` seeds.

    ``mode`` replaces the suite's own; ``spec.max_runs`` applies only in the suite's own mode
    (asking for ``grid`` means the whole grid), ``max_runs`` caps the settings in any mode.
    The cap is a seeded sample taken before seeds multiply; ``one_at_a_time`` always keeps the
    base setting, which every other setting is compared with. Runs get seeds ``seed``,
    ``seed + 1``, ...; ``seed`` also seeds the sample, so one call always plans the same runs.
    ``overrides`` (dotted fields, e.g. ``{"train.epochs": 5}``) apply to every run but may not
    touch a varied field, ``seed``, ``name`` or ``data.path``. Runs are ordered seed by seed, so
    the first pass through the queue gives one result per setting. ``data_path``: one folder or
    several (``data.path``); ``leave_one_source_out`` needs two or more and plans one setting per
    folder: ``data.path`` the others, ``data.external`` that one.

    Raises ConfigError naming the suite, the setting and the field (see the module docstring for
    what is refused and what is skipped).
    """
    where = f"suite {spec.name!r}"
    mode = spec.mode if mode is None else mode
    if max_runs is None and mode == spec.mode:
        max_runs = spec.max_runs
    varied = varied_fields(spec)
    user = _flatten(overrides or {})
    problems = _argument_problems(spec, mode, seeds, max_runs, varied, user)
    if problems:
        raise ConfigError([f"{where}: {p}" for p in problems])

    if not isinstance(data_path, str):
        data_path = list(data_path)
    changes = {**_flatten(spec.base), **user, _FROM_CALLER: data_path}
    if "data.external" in changes:
        # Absolute, like data.path from the CLI and the dashboard: a worker elsewhere finds them.
        changes["data.external"] = [str(Path(f).resolve()) for f in changes["data.external"]]
    base = _build(f"{where}, base and overrides", preset(spec.preset), changes)
    settings, skipped = _settings(spec, mode, base, varied)
    if max_runs is not None and len(settings) > max_runs:
        settings = _sample(settings, max_runs, seed, keep_first=mode == "one_at_a_time")

    plan = Plan(
        skipped=skipped,
        options={
            "mode": mode,
            "max_runs": max_runs,
            "seeds": seeds,
            "first_seed": seed,
            "overrides": user,
            "data_path": data_path,
        },
    )
    for run_seed in range(seed, seed + seeds):
        for setting, cfg in settings:
            label = setting_label(setting)
            changes = {"seed": run_seed, "name": _run_name(spec.name, label, run_seed)}
            config = _build(f"{where}, setting {label}", cfg, changes)
            plan.append(Planned(setting=setting, seed=run_seed, config=config))
    return plan


def missing_folders(plan: Iterable[Planned]) -> list[str]:
    """The planned runs' external folders that are not on this machine, one line each (a run
    would fail on them after its preprocessing; say so before queueing)."""
    missing = {f for p in plan for f in p.config.data.external if not Path(f).is_dir()}
    return [
        f"data.external: no such folder {f}; a suite with external sets needs them on the "
        "workers' machine (../shared/data beside the checkout), or leave them out with "
        "data.external=[]"
        for f in sorted(missing)
    ]


def load_suite_file(path: str | Path) -> SuiteSpec:
    """Read a custom suite from a ``.yaml``/``.yml`` or ``.json`` file (module docstring example).

    The file is checked in full: unknown keys, a factor naming a config field that does not
    exist, a value out of range (by expanding it against the baseline preset). Raises
    ConfigError whose lines name the file, the field and the problem.
    """
    p = Path(path)
    where = f"suite file {p}"
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ConfigError([f"{where}: unknown extension {p.suffix!r}; use .yaml, .yml or .json"])
    try:
        text = p.read_text()
        values = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ConfigError([f"{where}: cannot read it ({err})"]) from None
    if not isinstance(values, dict):
        raise ConfigError(
            [f"{where}: expected a mapping with keys {', '.join(SuiteSpec.model_fields)}"]
        )
    try:
        spec = SuiteSpec.model_validate(values)
    except ValidationError as err:
        raise ConfigError([f"{where}: {problem}" for problem in _spec_problems(err)]) from None
    # Checked against two placeholder folders when it leaves one out (they need not exist).
    check = ["source-a", "source-b"] if spec.mode == LEAVE_ONE_OUT else preset("baseline").data.path
    try:
        expand(spec, data_path=check)
    except ConfigError as err:
        raise ConfigError([f"{where}: {problem}" for problem in err.problems]) from None
    return spec


def enqueue(store: RunStore, spec: SuiteSpec, planned: list[Planned]) -> tuple[Suite, list[Run]]:
    """Record the suite and one queued run per planned run, in one transaction; nothing trains.

    The stored suite spec is ``spec`` as JSON plus ``varied_fields``, the planned ``settings``
    (label and the value of every varied field, which :func:`pipeline.summary.summary` groups
    by), and, when ``planned`` is a :class:`Plan`, ``skipped`` cells and the ``expanded_with``
    options. The
    suite's kind is the preset name when ``spec`` is that preset unchanged, else ``"custom"``.
    """
    if not planned:
        raise ValueError(f"suite {spec.name!r}: nothing to enqueue (no planned runs)")
    varied = varied_fields(spec)
    settings: dict[str, dict[str, Any]] = {}
    for p in planned:
        values = values_at(p.config.model_dump(mode="json"), varied)
        settings.setdefault(key_of(values, varied), {"label": p.label, "values": values})
    skipped = getattr(planned, "skipped", ())
    record = {
        **spec.model_dump(mode="json"),
        "varied_fields": varied,
        "settings": list(settings.values()),
        "skipped": [{"setting": s.setting, "reason": s.reason} for s in skipped],
        "expanded_with": getattr(planned, "options", {}),
    }
    kind = spec.name if SUITES.get(spec.name) == spec else "custom"
    return store.enqueue_suite(
        name=spec.name,
        kind=kind,
        description=spec.question,
        spec=record,
        runs=[(p.config.model_dump(mode="json"), p.config.name) for p in planned],
    )


def _argument_problems(
    spec: SuiteSpec,
    mode: str,
    seeds: int,
    max_runs: int | None,
    varied: list[str],
    user: dict[str, Any],
) -> list[str]:
    """What is wrong with expand()'s arguments, one ``field: problem`` line each."""
    problems = []
    if mode not in MODES:
        problems.append(f"mode: unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "one_at_a_time" and spec.settings is not None:
        problems.append("mode: one_at_a_time needs factors; this suite lists settings (use grid)")
    if mode != LEAVE_ONE_OUT and spec.mode == LEAVE_ONE_OUT:
        problems.append(f"mode: {mode} needs factors or settings; this suite leaves a source out")
    if mode == LEAVE_ONE_OUT and spec.mode != LEAVE_ONE_OUT:
        problems.append(
            "mode: leave_one_source_out varies the training folders only; this suite has "
            f"{'factors' if spec.factors is not None else 'settings'} (use its own mode)"
        )
    if mode == "random" and max_runs is None:
        problems.append("max_runs: required when mode is 'random' (how many settings to draw)")
    if seeds < 1:
        problems.append(f"seeds: must be at least 1 (got {seeds})")
    if max_runs is not None and max_runs < 1:
        problems.append(f"max_runs: must be at least 1 (got {max_runs})")
    for key in user:
        if key in (*_PER_RUN, _FROM_CALLER):
            problems.append(f"overrides: {key} is set for every run (use seed, seeds, data_path)")
        elif key in varied:
            problems.append(
                f"overrides: {key} is what suite {spec.name!r} varies; every setting would "
                "replace the override"
            )
    return problems


def _settings(
    spec: SuiteSpec, mode: str, base: RunConfig, varied: list[str]
) -> tuple[list[tuple[dict[str, Any], RunConfig]], list[Skipped]]:
    """The suite's distinct settings, each with its validated config, and the skipped cells.

    A setting's values are read back from its config, so ``1e-3`` and ``0.001`` are one value
    and labels show what the run will actually use.
    """
    where = f"suite {spec.name!r}"
    skippable = False
    if mode == LEAVE_ONE_OUT:
        folders = base.data.sources
        if len(folders) < 2:
            raise ConfigError(
                [f"{where}: data.path: leave_one_source_out needs two folders or more (got one)"]
            )
        candidates = [
            {_FROM_CALLER: [f for f in folders if f != held], _HELD_OUT: [held]} for held in folders
        ]
    elif spec.settings is not None:
        candidates = [_flatten(s) for s in spec.settings]
    elif mode == "one_at_a_time":
        candidates = [{}, *({f: v} for f, values in spec.factors.items() for v in values)]
    else:
        # A value invalid on its own is a mistake in the suite, never an empty cell: refuse it.
        for field, values in spec.factors.items():
            for value in values:
                _build(f"{where}, setting {setting_label({field: value})}", base, {field: value})
        size = math.prod(len(values) for values in spec.factors.values())
        if size > MAX_GRID:
            raise ConfigError([f"{where}: factors: {size} grid cells; at most {MAX_GRID}"])
        fields = list(spec.factors)
        candidates = [
            dict(zip(fields, cell, strict=True))
            for cell in itertools.product(*spec.factors.values())
        ]
        skippable = True

    base_key = key_of(values_at(base.model_dump(mode="json"), varied), varied)
    seen: dict[str, str] = {}
    settings: list[tuple[dict[str, Any], RunConfig]] = []
    skipped: list[Skipped] = []
    for changes in candidates:
        label = setting_label(changes)
        try:
            cfg = override(base, changes)
        except ConfigError as err:
            if not skippable:
                raise ConfigError(
                    [f"{where}, setting {label}: {problem}" for problem in err.problems]
                ) from None
            skipped.append(Skipped(setting=changes, reason="; ".join(err.problems)))
            continue
        as_json = cfg.model_dump(mode="json")
        # Leaving a source out, the setting is the held-out folder; data.path follows from it.
        setting = values_at(as_json, varied if mode == LEAVE_ONE_OUT else list(changes))
        key = key_of(values_at(as_json, varied), varied)
        # one_at_a_time lists each factor's base value too; that is the base setting again.
        if mode == "one_at_a_time" and changes and key == base_key:
            continue
        if key in seen:
            raise ConfigError(
                [f"{where}, setting {label}: the same run as setting {seen[key]}; drop one"]
            )
        seen[key] = label
        settings.append((setting, cfg))
    if not settings:
        reasons = "; ".join(f"{setting_label(s.setting)}: {s.reason}" for s in skipped)
        raise ConfigError([f"{where}: no setting can be built ({reasons})"])
    return settings, skipped


def _sample(
    settings: list[tuple[dict[str, Any], RunConfig]], k: int, seed: int, *, keep_first: bool
) -> list[tuple[dict[str, Any], RunConfig]]:
    """``k`` of ``settings`` drawn without repeats by ``seed``, kept in their original order."""
    first = 1 if keep_first else 0
    rng = np.random.default_rng(seed)
    drawn = rng.choice(len(settings) - first, size=k - first, replace=False) + first
    return [settings[i] for i in sorted({*range(first), *drawn.tolist()})]


def _build(where: str, cfg: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """``override(cfg, changes)`` whose ConfigError lines start with ``where``."""
    try:
        return override(cfg, changes)
    except ConfigError as err:
        raise ConfigError([f"{where}: {problem}" for problem in err.problems]) from None


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


def _run_name(suite: str, label: str, seed: int) -> str:
    """``"pooling · model.pooling=avg · seed 0"``, the label shortened to fit the name limit."""
    head, tail = f"{suite} · {label}", f" · seed {seed}"
    room = _MAX_NAME - len(tail)
    if len(head) > room:
        head = head[: room - 1] + "…"
    return head + tail


def _spec_problems(err: ValidationError) -> list[str]:
    """pydantic's errors for a SuiteSpec as ``field: problem`` lines."""
    problems = []
    for e in err.errors():
        loc = ".".join(str(part) for part in e["loc"]) or "suite"
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; a suite has {', '.join(SuiteSpec.model_fields)}"
        else:
            msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}")
    return problems
