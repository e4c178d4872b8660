"""Leave-one-source-out: how a run's recipe does on a hospital it did not train on.

A run trained on several collections has no external set left: every collection it knows is in
its training split. Its honest figure for a new hospital is the recipe's, each source held out in
turn: the same config trained on the other sources (same seed) and read on the held-out one at
the threshold chosen on its own validation split — the held-out source is never used to choose
anything. The folds are ordinary runs in the store (named ``<run> · without <source>``); a fold
already trained with exactly that config (a leave-one-source-out suite's run, an earlier
``loso``) is reused, not trained again. The figures are stored with the run under
``leave_one_source_out`` once every fold has finished, never in part.

A run started from a pretrained encoder (``model.init``) is only honest on a held-out source if
its encoder never saw that source's films either: where an encoder ``<init>-without-<source>``
is shipped (``python -m pipeline pretrain --without SOURCE --install ...``), the fold starts
from it; otherwise the fold keeps the run's encoder and its figures say, from the encoder's
card, whether the encoder had seen the held-out films (not their labels).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db import Run, RunStore
from pipeline import encoder
from pipeline.config import RunConfig, make_config, override

KEY = "leave_one_source_out"


@dataclass(frozen=True)
class Fold:
    """One source held out: the folder and the config trained without it.

    ``encoder_saw_held_out``: whether the fold's pretrained encoder had seen the held-out
    source's films (None when it starts from scratch, or its encoder has no card to say).
    """

    held_out: str
    config: RunConfig
    encoder_saw_held_out: bool | None = None


def fold_encoder(init: str, held_name: str) -> tuple[str, bool | None]:
    """The encoder a fold holding out ``held_name`` starts from, and whether it saw that source.

    ``<init>-without-<held_name>`` when it is shipped, else ``init`` itself; what it saw is read
    from the encoder's card (its ``images`` per folder, and the collections it was made
    ``without``).
    """
    if init == "scratch":
        return init, None
    honest = f"{init}-without-{held_name}"
    chosen = honest if honest in encoder.shipped_names() else init
    try:
        made = encoder.card(chosen)
    except ValueError:
        return chosen, None
    if not made:
        return chosen, None
    saw = held_name in made.get("images", {}) and held_name not in made.get("without", [])
    return chosen, saw


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
        init, saw = fold_encoder(cfg.model.init, Path(held).name)
        changes = {
            "data.path": [f for f in folders if f != held],
            "data.external": [held, *extra],
            "model.init": init,
            "name": f"{cfg.name} · without {Path(held).name}",
        }
        out.append(Fold(held, override(cfg, changes), saw))
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
            "encoder": fold.config.model.init,
            "encoder_saw_held_out": fold.encoder_saw_held_out,
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
