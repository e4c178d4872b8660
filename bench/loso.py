"""Benchmark: one source against several, pooled against per-source-balanced validation, each read
on a collection the model never trained on (leave-one-source-out).

    .venv/bin/python -m bench.loso --store bench-runs/loso [--store bench-runs/loso-screening]
        [--markdown EXPERIMENTS.md]

Reads every succeeded run of the stores named. A run of a ``leave_one_source_out`` suite is
trained on all of tb-cxr, nlm-224 and Montgomery but one and read on that one; a run trained on
one folder is read on each of its external sets. Recipes are named by their suite (or, outside
one, by the run name up to `` · ``). Prints, and with ``--markdown FILE`` writes as the
``## leave-one-source-out`` section of FILE:

1. per held-out collection and recipe: AUC, sensitivity and specificity at the threshold chosen on
   the run's own validation split (mean ± sd over seeds), and the paired t-test over seeds
   against the first recipe listed for that collection;
2. why the recipes differ, from each run's validation predictions and history: the pooled and the
   per-source validation AUC at the checkpoint kept, how well the score tells the training
   sources apart among *normal* films (AUC of one source's normals against the other's; 0.50 =
   not at all), and how much the validation AUC swings from epoch to epoch (sd of its change
   between epochs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.generalisation import mean_sd, write_section

ROOT = Path(__file__).resolve().parents[1]


def recipe(run: Any, suites: dict[str, str]) -> str:
    if run.suite_id:
        return suites[run.suite_id]
    return run.name.split(" · ")[0]


def held_out_reads(store: Any, run: Any) -> dict[str, Any]:
    """Collection name -> the run's newest evaluation there, for folders it did not train on."""
    trained = (
        {Path(p).name for p in run.config["data"]["path"]}
        if isinstance(run.config["data"]["path"], list)
        else {Path(run.config["data"]["path"]).name}
    )
    out: dict[str, Any] = {}
    for e in store.external_evals(run.id):
        name = Path(e.dataset_path).name
        if name not in trained and name not in out:
            out[name] = e
    return out


def validation_reading(run: Any) -> dict[str, float]:
    """Pooled and per-source validation AUC, the source-telling AUC among normals, the swing."""
    from sklearn.metrics import roc_auc_score

    from pipeline.evaluation import by_source

    folder = Path(run.artifacts_dir)
    with (folder / "predictions.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "val"]
    source_names = sorted({r["path"].split("/")[0] for r in rows})
    y = np.array([int(r["label"]) for r in rows])
    s = np.array([float(r["score"]) for r in rows])
    src = np.array([source_names.index(r["path"].split("/")[0]) for r in rows])
    out = {"pooled": float(roc_auc_score(y, s)), "per_source": float("nan"), "tell": float("nan")}
    if len(source_names) == 2:
        out["per_source"] = by_source.balanced_auc(y, s, src)
        normal = y == 0
        out["tell"] = float(roc_auc_score(src[normal], s[normal]))
    history = json.loads((folder / "history.json").read_text())
    out["swing"] = float(np.std(np.diff(history.get("val_auc", [np.nan, np.nan]))))
    return out


# Fields that say where a run's data came from, not what its recipe is.
_WHERE = ("name", "seed", "data.path", "data.external")


def recipe_changes(run: Any) -> str:
    """What the run's config changes from the ``baseline`` preset (data folders aside)."""
    from pipeline.config import preset
    from pipeline.experiments.spec import flatten

    base = flatten(preset("baseline").model_dump(mode="json"))
    mine = flatten(run.config)
    changed = [
        f"`{k}={json.dumps(v)}`" for k, v in mine.items() if k not in _WHERE and base.get(k) != v
    ]
    return ", ".join(changed) or "none"


def collect(urls: list[str]) -> tuple[dict, dict, dict]:
    from db import RunStore

    reads: dict[tuple[str, str], dict[int, Any]] = defaultdict(dict)
    why: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    legend: dict[str, str] = {}
    for url in urls:
        store = RunStore(url)
        suites = {s.id: s.name for s in store.list_suites()}
        for run in store.list_runs(status="succeeded"):
            name = recipe(run, suites)
            sources = run.config["data"]["path"]
            trained = (
                "one source" if isinstance(sources, str) or len(sources) == 1 else "two sources"
            )
            legend.setdefault(name, f"trained on {trained}; changes {recipe_changes(run)}")
            for held, e in held_out_reads(store, run).items():
                reads[(held, name)][run.config["seed"]] = e
                if run.suite_id:
                    reading = validation_reading(run)
                    seconds = [e.seconds for e in store.epochs(run.id) if e.seconds]
                    reading["seconds"] = float(np.median(seconds)) if seconds else float("nan")
                    why[(name, held)].append(reading)
    return reads, why, legend


def tables(reads: dict, why: dict) -> list[str]:
    from pipeline.evaluation.compare import paired_seeds

    lines = [
        "| held out | recipe | seeds | AUC | sensitivity | specificity | Δ AUC vs first (paired t) "
        "| Δ sens vs first (paired t) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first: dict[str, dict[int, Any]] = {}
    for held, name in sorted(reads, key=lambda k: (k[0], k[1] != "one-source", k[1])):
        by_seed = reads[(held, name)]
        ref = first.setdefault(held, by_seed)

        def delta(field: str, by_seed: dict[int, Any] = by_seed, ref: dict[int, Any] = ref) -> str:
            if ref is by_seed:
                return "ref"
            paired = paired_seeds(
                {k: getattr(v, field) for k, v in by_seed.items()},
                {k: getattr(v, field) for k, v in ref.items()},
            )
            return "—" if paired is None else f"{paired.mean_difference:+.3f} (p = {paired.p:.2f})"

        cells = [
            mean_sd([getattr(e, f) for e in by_seed.values()])
            for f in ("auc", "sensitivity", "specificity")
        ]
        lines.append(
            f"| {held} | {name} | {len(by_seed)} | {' | '.join(cells)} | {delta('auc')} | "
            f"{delta('sensitivity')} |"
        )
    lines += [
        "",
        "| recipe | held out | val AUC pooled | val AUC per source | sources told apart among "
        "normals (AUC) | val AUC swing (sd of change per epoch) | s / epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = ("pooled", "per_source", "tell", "swing", "seconds")
    for (name, held), readings in sorted(why.items()):
        cells = [mean_sd([r[k] for r in readings]) for k in keys]
        lines.append(f"| {name} | {held} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", required=True, help="a runs folder")
    parser.add_argument("--markdown", help="write the section into this file (EXPERIMENTS.md)")
    args = parser.parse_args()
    urls = [f"sqlite:///{(Path(s) / 'tbxray.db').resolve()}" for s in args.store]
    reads, why, legend = collect(urls)
    stores = " ".join(f"--store {s}" for s in args.store)
    lines = [
        "## leave-one-source-out",
        "",
        "Each held-out collection read by runs that never trained on it, at the threshold chosen "
        "on their own validation split (3 seeds, each its own split). A `loso-*` recipe trained "
        "on the other two of tb-cxr, nlm-224 and Montgomery; the others on tb-cxr alone. Each "
        "recipe against the `baseline` preset:",
        "",
        *(f"- `{name}`: {text}" for name, text in sorted(legend.items())),
        "",
        f"Command: `.venv/bin/python -m bench.loso {stores} --markdown EXPERIMENTS.md`, "
        f"{datetime.now(UTC):%Y-%m-%d}, 2-core CPU.",
        "",
        *tables(reads, why),
    ]
    print(write_section("leave-one-source-out", lines, args.markdown))


if __name__ == "__main__":
    main()
