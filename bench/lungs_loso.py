"""Benchmark: the lung segmenter at hospitals it never saw — leave-one-source-out by recipe.

    .venv/bin/python -m bench.lungs_loso [--masks ../shared/data/lung-masks]
        [--recipe basic --recipe strong ...] [--epochs 15] [--seed 0] [--markdown BENCHMARKS.md]

For each recipe of :data:`pipeline.lungs.train.RECIPES` (appearance augmentation, opacities,
input standardisation) and each source of ``--masks``, a U-Net is trained on the other sources
(``--epochs``, as ``python -m pipeline lungs train`` does for its card) and scored on the source
it never saw: Dice and IoU per source, a paired Wilcoxon test over the held-out images of each
recipe against the first, and the per-mask quality score (:mod:`pipeline.lungs.quality`)
against the true Dice — how many poor masks it flags and how many good ones it refuses. Fold
models are kept under ``bench-runs/lungs-loso/<recipe>/<source>.keras``, so a second call only
scores (delete the folder to retrain). Prints markdown; ``--markdown`` replaces its section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.generalisation import write_section

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench-runs" / "lungs-loso"
POOR = 0.90  # a mask under this Dice is one a reader should not trust


def fold(pairs: Any, recipe: str, source: str, epochs: int, seed: int) -> Any:
    """The U-Net of ``recipe`` trained without ``source`` (loaded when already trained)."""
    import keras

    from pipeline.lungs.train import fit

    path = OUT / recipe / f"{source}.keras"
    if path.is_file():
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    keep = np.array(pairs.sources) != source
    print(f"training {recipe} without {source} ({int(keep.sum())} pairs) …", flush=True)
    t0 = time.perf_counter()
    model = fit(pairs.subset(keep), epochs=epochs, seed=seed, recipe=recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    meta = {"epochs": epochs, "seed": seed, "train_seconds": round(time.perf_counter() - t0, 1)}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return model


def held_out(model: Any, pairs: Any, source: str, recipe: str) -> dict[str, np.ndarray]:
    """Per-image Dice, IoU and quality of ``model`` (trained by ``recipe``) on ``source``."""
    from pipeline.lungs.masks import dice, iou, postprocess
    from pipeline.lungs.quality import mask_quality
    from pipeline.lungs.segmenter import normalise
    from pipeline.lungs.train import recipe_named

    standardisation = recipe_named(recipe).standardisation

    part = pairs.subset(np.array(pairs.sources) == source)
    d, j, q, missed, extra, low = [], [], [], [], [], []
    for start in range(0, len(part.names), 16):
        x = normalise(part.images[start : start + 16], standardisation)
        for k, prob in enumerate(np.asarray(model.predict_on_batch(x))[..., 0]):
            mask = postprocess(prob >= 0.5)
            truth = part.masks[start + k]
            d.append(dice(mask, truth))
            j.append(iou(mask, truth))
            q.append(mask_quality(prob, mask).score)
            # Where the two outlines disagree: lung drawn but not found, found but not drawn,
            # and how much of the first lies in the lowest quarter of the drawn lungs' height
            # (behind the diaphragm domes, where outline conventions differ).
            rows = np.flatnonzero(truth.any(axis=1))
            cut = int(rows[0] + 0.75 * (rows[-1] - rows[0])) if rows.size else 0
            lost = truth & ~mask
            missed.append(int(lost.sum()))
            extra.append(int((mask & ~truth).sum()))
            low.append(int(lost[cut:].sum()))
    return {
        "dice": np.array(d),
        "iou": np.array(j),
        "quality": np.array(q),
        "missed": np.array(missed),
        "extra": np.array(extra),
        "missed_low": np.array(low),
    }


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    return float(wilcoxon(a, b).pvalue) if np.any(a != b) else 1.0


def tables(results: dict[str, dict[str, dict[str, np.ndarray]]], seconds: dict) -> list[str]:
    from pipeline.lungs.quality import MIN_QUALITY

    recipes = list(results)
    sources = list(results[recipes[0]])
    lines = [
        "| recipe | held out | images | Dice | IoU | Dice 5th pct | Δ Dice vs "
        f"{recipes[0]} (Wilcoxon) | training s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in recipes:
        for s in sources:
            x, ref = results[r][s], results[recipes[0]][s]
            delta = (
                "ref"
                if r == recipes[0]
                else f"{x['dice'].mean() - ref['dice'].mean():+.4f} "
                f"(p = {wilcoxon_p(x['dice'], ref['dice']):.2g})"
            )
            lines.append(
                f"| {r} | {s} | {x['dice'].size} | {x['dice'].mean():.4f} | "
                f"{x['iou'].mean():.4f} | {np.percentile(x['dice'], 5):.3f} | {delta} | "
                f"{seconds[r][s]:.0f} |"
            )
        means = [results[r][s]["dice"].mean() for s in sources]
        lines.append(
            f"| {r} | **mean of sources** | | **{statistics.mean(means):.4f}** | "
            f"{statistics.mean(results[r][s]['iou'].mean() for s in sources):.4f} | | | |"
        )
    cuts = sorted({0.2, 0.3, 0.4, 0.5, MIN_QUALITY})
    lines += [
        "",
        f"Mask quality (`pipeline/lungs/quality.py`) against the true Dice of every held-out "
        f"mask; poor = Dice < {POOR}. Each cell: poor masks flagged, good masks flagged (a good "
        f"film refused) with the score under that cut; the shipped cut is {MIN_QUALITY}.",
        "",
        "| recipe | masks | poor | "
        + " | ".join(f"cut {c:.1f}" for c in cuts)
        + " | Spearman ρ (quality, Dice) |",
        "|---|---|---|" + "---|" * len(cuts) + "---|",
    ]
    from scipy.stats import spearmanr

    for r in recipes:
        d = np.concatenate([results[r][s]["dice"] for s in sources])
        q = np.concatenate([results[r][s]["quality"] for s in sources])
        poor = d < POOR
        cells = [
            f"{int((poor & (q < c)).sum())} of {int(poor.sum())}, "
            f"{int((~poor & (q < c)).sum())} of {int((~poor).sum())}"
            for c in cuts
        ]
        lines.append(
            f"| {r} | {d.size} | {int(poor.sum())} | "
            + " | ".join(cells)
            + f" | {spearmanr(q, d).statistic:.2f} |"
        )
    lines += [
        "",
        f"Where the outlines disagree ({recipes[0]}, pixels per image at 256 px): lung drawn by "
        "hand but not found, found but not drawn, and the share of the first in the lowest "
        "quarter of the drawn lungs' height (behind the diaphragm domes).",
        "",
        "| held out | drawn, not found | found, not drawn | of the first, in the lowest quarter |",
        "|---|---|---|---|",
    ]
    for s in sources:
        x = results[recipes[0]][s]
        lines.append(
            f"| {s} | {x['missed'].mean():.0f} | {x['extra'].mean():.0f} | "
            f"{x['missed_low'].sum() / max(x['missed'].sum(), 1):.0%} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", default=str(SHARED / "lung-masks"))
    parser.add_argument("--recipe", action="append", default=[])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    from pipeline.lungs.data import load_pairs
    from pipeline.lungs.unet import SIZE

    recipes = args.recipe or ["basic", "strong"]
    pairs = load_pairs(args.masks, SIZE)
    sources = sorted(set(pairs.sources))
    results: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for r in recipes:
        results[r], seconds[r] = {}, {}
        for s in sources:
            model = fold(pairs, r, s, args.epochs, args.seed)
            results[r][s] = held_out(model, pairs, s, r)
            meta = json.loads((OUT / r / f"{s}.json").read_text())
            seconds[r][s] = meta["train_seconds"]
            print(f"{r} held out {s}: Dice {results[r][s]['dice'].mean():.4f}", flush=True)
    lines = [
        "## Lung segmenter, leave-one-source-out by recipe (`bench/lungs_loso.py`, issue 25)",
        "",
        "Command: `.venv/bin/python -m bench.lungs_loso "
        + " ".join(f"--recipe {r}" for r in recipes)
        + f" --epochs {args.epochs} --markdown BENCHMARKS.md`, {date.today()}, 2-core CPU. "
        f"Each row: a U-Net trained on the other sources of lung-masks ({len(pairs.names)} pairs, "
        f"{args.epochs} epochs, seed {args.seed}) and scored on the source it never saw.",
        "",
        *tables(results, seconds),
    ]
    print(write_section("lungs-loso", lines, args.markdown))


if __name__ == "__main__":
    main()
