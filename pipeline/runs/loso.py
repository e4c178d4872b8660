"""Leave-one-source-out: how a run's recipe does on a hospital it did not train on.

A run trained on several collections has no external set left: every collection it knows is in
its training split. Its honest figure for a new hospital is the recipe's, each source held out in
turn: the same config trained on the other sources (same seed) and read on the held-out one at
the threshold chosen on its own validation split — the held-out source is never used to choose
anything. The folds are ordinary runs in the store (named ``<run> · without <source>``); a fold
already trained with exactly that config (a leave-one-source-out suite's run, an earlier
``loso``) is reused, not trained again. The figures are stored with the run under
``leave_one_source_out`` once every fold has finished, never in part.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db import Run, RunStore
from pipeline.config import RunConfig, make_config, override

KEY = "leave_one_source_out"


@dataclass(frozen=True)
class Fold:
    """One source held out: the folder and the config trained without it."""

    held_out: str
    config: RunConfig


def folds(cfg: RunConfig) -> list[Fold]:
    """One fold per ``data.path`` folder, in order. Raises ValueError for a single folder."""
    folders = list(cfg.data.sources)
    if len(folders) < 2:
        raise ValueError(
            f"this run trained on one folder ({folders[0]}); leave-one-source-out needs a run "
            "trained on two or more (e.g. `python -m pipeline train --preset screening`); for a "
            "one-folder run, its external sets are the figure for other hospitals"
        )
    out = []
    for held in folders:
        extra = [e for e in cfg.data.external if e not in folders]
        changes = {
            "data.path": [f for f in folders if f != held],
            "data.external": [held, *extra],
            "name": f"{cfg.name} · without {Path(held).name}",
        }
        out.append(Fold(held, override(cfg, changes)))
    return out


def _same_recipe(a: dict[str, Any], b: RunConfig) -> bool:
    """Whether a stored config is ``b`` but for the name."""
    try:
        stored = make_config(a).model_dump(mode="json")
    except ValueError:
        return False
    wanted = b.model_dump(mode="json")
    stored.pop("name"), wanted.pop("name")
    return stored == wanted


def trained_fold(store: RunStore, fold: Fold) -> Run | None:
    """A succeeded run of the store trained with exactly ``fold``'s config (name aside)."""
    for run in store.list_runs(status="succeeded"):
        if _same_recipe(run.config, fold.config):
            return run
    return None


def figures(store: RunStore, pairs: list[tuple[Fold, Run]]) -> dict[str, Any]:
    """The held-out sources' figures: per fold AUC, sensitivity and specificity (with their 95 %
    intervals) at the fold's validated threshold, and their mean and worst."""
    per: dict[str, dict[str, Any]] = {}
    for fold, run in pairs:
        held = os.path.realpath(fold.held_out)
        # The newest evaluation on the held-out folder (a later `evaluate` may have added one).
        ev = next(
            e for e in store.external_evals(run.id) if os.path.realpath(e.dataset_path) == held
        )
        m = ev.metrics
        per[Path(fold.held_out).name] = {
            "folder": fold.held_out,
            "run_id": run.id,
            "n": ev.n_images,
            "auc": ev.auc,
            "auc_ci": m.get("auc_ci"),
            "sensitivity": ev.sensitivity,
            "sensitivity_ci": m.get("sensitivity_ci"),
            "specificity": ev.specificity,
            "specificity_ci": m.get("specificity_ci"),
            "threshold": run.threshold,
        }

    def summary(key: str) -> tuple[float | None, float | None]:
        values = [f[key] for f in per.values() if f[key] is not None]
        return (statistics.mean(values), min(values)) if values else (None, None)

    auc_mean, auc_worst = summary("auc")
    sens_mean, sens_worst = summary("sensitivity")
    return {
        "folds": per,
        "auc_mean": auc_mean,
        "auc_worst": auc_worst,
        "sensitivity_mean": sens_mean,
        "sensitivity_worst": sens_worst,
    }


Trainer = Callable[[RunConfig, dict[str, Any]], Run]


def leave_one_source_out(
    store: RunStore, run_id: str, train: Trainer, *, reuse: bool = True
) -> tuple[Run, list[tuple[Fold, Run, bool]]]:
    """Train (or reuse) every fold of the run's recipe and store the figures with the run.

    ``train(config, notes)`` trains one fold and returns its finished run. Returns the run with
    its new figures, and each fold with its run and whether it was reused. Raises ValueError for
    a run that is not a succeeded classifier trained on two folders or more; a fold that fails
    raises, and the run keeps the figures it had (the folds that finished stay in the store and
    are reused next time).
    """
    run = store.get_run(run_id)
    if run.kind != "train" or run.status != "succeeded":
        raise ValueError(
            f"run {run.id} is a {run.status} {run.kind} run; leave-one-source-out needs a "
            "classifier that trained to the end"
        )
    done = []
    for fold in folds(make_config(run.config)):
        found = trained_fold(store, fold) if reuse else None
        fold_run = found or train(fold.config, {"loso_of": run.id, "held_out": fold.held_out})
        done.append((fold, fold_run, found is not None))
    result = figures(store, [(f, r) for f, r, _ in done])
    return store.add_run_figures(run.id, {KEY: result}), done
