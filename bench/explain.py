"""Benchmark: explanation speed, and whether the heatmaps are faithful.

    .venv/bin/python -m bench.explain [--data ../shared/data/tb-cxr] [--size 224]
        [--epochs 15] [--images 30] [--repeats 5] [--skip speed,phantoms,real]

Runs in a run store of its own under ``bench-runs/explain`` (kept, so a second call reuses the
trained models; delete the folder to retrain):

1. Speed, on a ``--size`` px baseline trained on ``--data``: predict one image, Grad-CAM, LIME
   (1000 samples), SHAP (500 evaluations); median of ``--repeats`` after a warm-up.
2. Phantoms: a baseline (128 px) trained on 600 balanced phantoms; on its TB test images, for each
   method, the pointing game (3 px tolerance) and the heatmap energy inside the lesion masks,
   next to what chance would score.
3. Real images, ``--images`` TB test images of ``--data``: deletion curves (the most important
   8-px squares replaced by a blur first) against a random order, area under each; and the
   artefact check: heatmap energy in the bottom fifth of the image for TB images with and
   without an anonymisation box, with the model's mean P(TB) for each group.

Prints markdown tables; BENCHMARKS.md records them.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench-runs" / "explain"
METHODS = ("gradcam", "lime", "shap")
OPTIONS: dict[str, dict[str, int]] = {"lime": {"num_samples": 1000}, "shap": {"max_evals": 500}}


def trained(store: Any, name: str, cfg: Any) -> Any:
    """The newest succeeded run called ``name`` in the bench store, training it if missing."""
    from pipeline.config import override
    from pipeline.training import train

    for run in store.list_runs(status="succeeded"):
        if run.name == name:
            return run
    print(f"training {name} …", flush=True)
    return train.run(override(cfg, {"name": name}), store, progress=True)


def tb_test_images(predictor: Any, data: Path) -> list[tuple[Path, np.ndarray]]:
    """(file, model input) for the TB images of the run's test split, in order."""
    import cv2

    out = []
    with (predictor.run_dir / "predictions.csv").open() as f:
        for row in csv.DictReader(f):
            if row["split"] == "test" and row["label"] == "1":
                path = data / row["path"]
                out.append((path, predictor.prepare(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))))
    return out


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(predictor: Any, image: np.ndarray, repeats: int) -> None:
    from pipeline.explain import heatmaps

    model = predictor.model
    rows = [
        ("predict one image", lambda: predictor.predict_prepared(image[np.newaxis])),
        ("Grad-CAM", lambda: heatmaps.gradcam(model, image)),
        ("LIME, 1000 samples", lambda: heatmaps.lime(model, image, num_samples=1000)),
        ("SHAP, 500 evaluations", lambda: heatmaps.shap(model, image, max_evals=500)),
    ]
    print(f"\n### Speed ({image.shape[0]} px, median of {repeats}, load {_load()})\n")
    print("| step | median | target |\n|---|---:|---:|")
    targets = {
        "Grad-CAM": "≤ 100 ms",
        "LIME, 1000 samples": "≤ 2 s",
        "SHAP, 500 evaluations": "≤ 3 s",
    }
    for name, fn in rows:
        seconds = median_seconds(fn, repeats)
        shown = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
        print(f"| {name} | {shown} | {targets.get(name, '')} |", flush=True)


def phantoms(store: Any) -> None:
    import cv2

    from pipeline.config import preset
    from pipeline.data import synth
    from pipeline.explain import faithfulness, heatmaps
    from pipeline.serving.predictor import Predictor

    data = OUT / "phantoms"
    if not (data / "manifest.csv").exists():
        synth.generate(data, 600, tb_ratio=1, size=256, seed=0)
    cfg = preset("baseline", **{"data.path": str(data)})
    run = trained(store, "phantom-baseline", cfg)
    predictor = Predictor(run.artifacts_dir)
    side = cfg.data.image_size
    scores: dict[str, list[tuple[bool, float]]] = {m: [] for m in METHODS}
    chance, share = [], []
    for path, image in tb_test_images(predictor, data):
        mask = cv2.imread(str(data / "masks" / path.name), cv2.IMREAD_GRAYSCALE)
        mask = cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST) > 0
        chance.append(faithfulness.chance_pointing(mask, 3))
        share.append(mask.mean())
        for m in METHODS:
            heat = heatmaps.explain(predictor.model, image, m, **OPTIONS.get(m, {})).heatmap
            scores[m].append(
                (faithfulness.pointing_hit(heat, mask, 3), faithfulness.energy_inside(heat, mask))
            )
    n = len(chance)
    print(
        f"\n### Phantoms: {n} TB test images, model test AUC {run.auc:.3f} ({side} px)\n\n"
        "| method | pointing game | energy in lesion |\n|---|---:|---:|"
    )
    for m in METHODS:
        hits, energy = zip(*scores[m], strict=True)
        print(f"| {m} | {np.mean(hits):.2f} | {np.mean(energy):.3f} |")
    print(f"| chance (random point / uniform map) | {np.mean(chance):.2f} | {np.mean(share):.3f} |")


def real(predictor: Any, data: Path, n_images: int) -> None:
    from pipeline.explain import faithfulness, heatmaps
    from pipeline.preprocessing import artefacts

    cases = tb_test_images(predictor, data)
    boxed = {
        path: bool(artefacts.bottom_boxes(_read(path)))
        for path, _ in cases  # detected on the original image, where the detector was tuned
    }
    probs = dict(
        zip(
            [p for p, _ in cases],
            predictor.predict_prepared(np.stack([im for _, im in cases])),
            strict=True,
        )
    )
    # Half with a box, half without, so both groups are represented in the subset.
    with_box = [c for c in cases if boxed[c[0]]][: n_images // 2]
    without = [c for c in cases if not boxed[c[0]]][: n_images - len(with_box)]
    subset = with_box + without
    area: dict[str, list[float]] = {m: [] for m in (*METHODS, "random")}
    band: dict[str, dict[bool, list[float]]] = {m: {True: [], False: []} for m in METHODS}
    for path, image in subset:
        for m in METHODS:
            heat = heatmaps.explain(predictor.model, image, m, **OPTIONS.get(m, {})).heatmap
            area[m].append(
                faithfulness.curve_area(*faithfulness.deletion_curve(predictor.model, image, heat))
            )
            band[m][boxed[path]].append(faithfulness.band_energy(heat, artefacts.BAND))
        area["random"].append(
            faithfulness.curve_area(
                *faithfulness.deletion_curve(predictor.model, image, np.zeros(image.shape), seed=1)
            )
        )
    print(
        f"\n### Deletion curves: {len(subset)} TB test images of {data.name} "
        f"({image.shape[0]} px)\n\n| order | area under P(TB) curve (lower = more faithful) |\n"
        "|---|---:|"
    )
    for m in (*METHODS, "random"):
        print(f"| {m} | {np.mean(area[m]):.3f} |")
    n_box = sum(boxed.values())
    print(
        f"\n### Artefact check: heatmap energy in the bottom {artefacts.BAND:.0%} of the image\n\n"
        f"TB test images with a detected anonymisation box: {n_box} of {len(cases)}; mean P(TB) "
        f"{np.mean([probs[p] for p in boxed if boxed[p]]):.3f} with a box vs "
        f"{np.mean([probs[p] for p in boxed if not boxed[p]]):.3f} without. A uniform map puts "
        f"{artefacts.BAND:.0%} of its energy in the band.\n\n"
        "| method | TB with box | TB without box |\n|---|---:|---:|"
    )
    for m in METHODS:
        print(f"| {m} | {np.mean(band[m][True]):.3f} | {np.mean(band[m][False]):.3f} |")
    cams = {
        has: [
            faithfulness.band_energy(heatmaps.gradcam(predictor.model, im), artefacts.BAND)
            for p, im in cases
            if boxed[p] == has
        ]
        for has in (True, False)
    }
    print(
        f"| gradcam, all {len(cases)} TB test images | {np.mean(cams[True]):.3f} "
        f"| {np.mean(cams[False]):.3f} |"
    )


def _read(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "tb-cxr"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip", default="", help="comma-separated: speed, phantoms, real")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    os.environ["TBXRAY_RUNS_DIR"] = str(OUT)
    os.environ.pop("TBXRAY_DB_URL", None)
    from db import RunStore
    from pipeline.config import preset
    from pipeline.serving.predictor import Predictor

    store = RunStore()
    print(f"load average at start (1/5/15 min): {_load()} on {os.cpu_count()} cores")
    data = Path(args.data)
    if not skip >= {"speed", "real"}:
        cfg = preset(
            "baseline",
            **{"data.path": str(data), "data.image_size": args.size, "train.epochs": args.epochs},
        )
        run = trained(store, f"{data.name}-baseline-{args.size}", cfg)
        predictor = Predictor(run.artifacts_dir)
        print(f"real-data model: run {run.id}, test AUC {run.auc:.3f}")
        if "speed" not in skip:
            speed(predictor, tb_test_images(predictor, data)[0][1], args.repeats)
    if "phantoms" not in skip:
        phantoms(store)
    if "real" not in skip:
        real(predictor, data, args.images)
    print(f"\nload average at end: {_load()}")


if __name__ == "__main__":
    main()
