"""A suite expanded into planned runs (:func:`expand`) and recorded as queued runs
(:func:`enqueue`).

Nothing trains here, and this module never imports TensorFlow (the dashboard imports it). What a
suite is, and how invalid settings are refused or skipped: :mod:`pipeline.experiments.spec`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import ValidationError

from pipeline.config import ConfigError, RunConfig, absolute_paths, override, preset
from pipeline.experiments.spec import (
    FROM_CALLER,
    HELD_OUT,
    LEAVE_ONE_OUT,
    MODES,
    PER_RUN,
    SuiteSpec,
    flatten,
    key_of,
    setting_label,
    values_at,
    varied_fields,
)
from pipeline.experiments.suites import SUITES

if TYPE_CHECKING:
    from db import Run, RunStore, Suite

# A grid bigger than this is a typo or a misunderstanding, not an experiment anyone will run.
MAX_GRID = 10_000
# RunConfig.name's max_length: long setting labels are shortened to fit in run names.
_MAX_NAME = 120


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
    user = flatten(overrides or {})
    problems = _argument_problems(spec, mode, seeds, max_runs, varied, user)
    if problems:
        raise ConfigError([f"{where}: {p}" for p in problems])

    if not isinstance(data_path, str):
        data_path = list(data_path)
    changes = {**flatten(spec.base), **user, FROM_CALLER: data_path}
    if "data.external" in changes:
        # Absolute, like data.path from the CLI and the dashboard: a worker elsewhere finds them.
        changes["data.external"] = absolute_paths(list(changes["data.external"]))
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
    (label and the value of every varied field, which :func:`pipeline.experiments.summary.summary`
    groups by), and, when ``planned`` is a :class:`Plan`, ``skipped`` cells and the
    ``expanded_with`` options. The
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
        if key in (*PER_RUN, FROM_CALLER):
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
            {FROM_CALLER: [f for f in folders if f != held], HELD_OUT: [held]} for held in folders
        ]
    elif spec.settings is not None:
        candidates = [flatten(s) for s in spec.settings]
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
