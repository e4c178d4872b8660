"""Benchmark: the lung segmenter, and what a lung ROI does to the TB classifier.

    .venv/bin/python -m bench.lungs [--masks ../shared/data/lung-masks]
        [--data ../shared/data/tb-cxr] [--external nlm-224,montgomery]
        [--rois full,lung_crop,lung_mask] [--seeds 0,1,2] [--images 20]
        [--skip seg,auc,energy] [--json out.json]

Runs in a run store of its own under ``bench-runs/lungs`` (kept, so a second call reuses the
trained classifiers; delete the folder to retrain):

1. ``seg``: the shipped segmenter's card (Dice / IoU per held-out source and training time, as
   measured by ``python -m pipeline lungs train``), its Dice / IoU on the card's test part, ms
   per image at 256 px, the spread of the hand-drawn masks that the plausibility limits come
   from, and how many real X-rays of each folder get an implausible mask.
2. ``auc``: the baseline trained on ``--data`` with each ``data.roi``, over ``--seeds``: internal
   test AUC and external AUC on each ``--external`` folder, and a paired t-test over seeds of
   each ROI against ``full``.
3. ``energy``: on ``--images`` TB test images of ``--data``, the share of each heatmap's energy
   (Grad-CAM, LIME, SHAP) inside the lungs, for roi=full and roi=lung_crop among ``--rois``
   (seed 0 runs), next to the lungs' share of the input (what a uniform heatmap would score).

Prints markdown tables; BENCHMARKS.md records them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench-runs" / "lungs"
OPTIONS: dict[str, dict[str, int]] = {"lime": {"num_samples": 500}, "shap": {"max_evals": 300}}


def mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "—"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def segmenter_section(masks_dir: Path, folders: list[Path]) -> dict[str, Any]:
    from pipeline.imaging import decode
    from pipeline.lungs import masks
    from pipeline.lungs.data import load_pairs
    from pipeline.lungs.segmenter import audit, normalise, shipped
    from pipeline.lungs.train import score

    seg = shipped()
    card = seg.card
    print("\n| held-out source | pairs | Dice | IoU | training s |\n|---|---|---|---|---|")
    for s, r in card["held_out_source"].items():
        print(f"| {s} | {r['n']} | {r['dice']:.4f} | {r['iou']:.4f} | {r['train_seconds']:.0f} |")
    out: dict[str, Any] = {"card": card}
    pairs = load_pairs(masks_dir, seg.size)
    test = set(card["test_part"]["names"])
    part = pairs.subset(np.array([n in test for n in pairs.names]))
    sc = score(seg.model, part)
    print("\n| shipped model, test part | pairs | Dice | IoU |\n|---|---|---|---|")
    for s in sc.dice:
        print(f"| {s} | {sc.n[s]} | {sc.dice[s]:.4f} | {sc.iou[s]:.4f} |")
    out["test_part"] = sc.as_dict()

    x = normalise(pairs.images[:1])
    for _ in range(5):
        seg.model.predict_on_batch(x)
    net = []
    for _ in range(50):
        t0 = time.perf_counter()
        seg.model.predict_on_batch(x)
        net.append(1000 * (time.perf_counter() - t0))
    full = decode.read_image(next((SHARED / "montgomery").rglob("*.png")))
    whole = []
    for _ in range(10):
        t0 = time.perf_counter()
        seg.segment(full)
        whole.append(1000 * (time.perf_counter() - t0))
    out["ms_network"], out["ms_segment"] = statistics.median(net), statistics.median(whole)
    print(
        f"\nms per image: network at {seg.size} px {out['ms_network']:.1f} (median of 50); "
        f"segment() of a {full.shape[1]}×{full.shape[0]} film incl. resize and clean-up "
        f"{out['ms_segment']:.1f} (median of 10)"
    )

    judged = [masks.plausibility(m) for m in pairs.masks]
    area = np.array([p.area for p in judged])
    balance = np.array([p.balance for p in judged])
    print(
        f"\nhand-drawn masks ({len(judged)}): lung share 1st/50th/99th percentile "
        f"{np.percentile(area, 1):.3f}/{np.median(area):.3f}/{np.percentile(area, 99):.3f} "
        f"(min {area.min():.3f}, max {area.max():.3f}); balance min {balance.min():.2f}, "
        f"1st percentile {np.percentile(balance, 1):.2f}; judged implausible: "
        f"{sum(not p.ok for p in judged)}"
    )
    out["truth_implausible"] = sum(not p.ok for p in judged)
    print("\n| real X-rays | images | implausible mask | share |\n|---|---|---|---|")
    out["real"] = {}
    for folder in folders:
        paths = sorted(
            str(p) for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}
        )
        bad = sum(not p.ok for p in audit(seg, paths))
        out["real"][folder.name] = {"n": len(paths), "implausible": bad}
        print(f"| {folder.name} | {len(paths)} | {bad} | {bad / len(paths):.1%} |")
    return out


def trained(store: Any, name: str, cfg: Any) -> Any:
    """The newest succeeded run called ``name`` in the bench store, training it if missing."""
    from pipeline.config import override
    from pipeline.training import train

    for run in store.list_runs(status="succeeded"):
        if run.name == name:
            return run
    print(f"training {name} …", flush=True)
    return train.run(override(cfg, {"name": name}), store, progress=False)


def external_auc(store: Any, run: Any, folder: Path) -> float:
    from pipeline.runs.external import evaluate_external

    for ev in store.external_evals(run.id):
        if Path(ev.dataset_path) == folder.resolve():
            return float(ev.auc)
    return float(evaluate_external(store, run.id, str(folder)).auc)


def auc_section(
    store: Any, data: Path, externals: list[Path], rois: list[str], seeds: list[int]
) -> dict[str, Any]:
    from scipy.stats import ttest_rel

    from pipeline.config import preset

    results: dict[str, dict[str, list[float]]] = {}
    for roi in rois:
        cols: dict[str, list[float]] = {"internal": []} | {f.name: [] for f in externals}
        for seed in seeds:
            cfg = preset("baseline", **{"data.path": str(data), "data.roi": roi, "seed": seed})
            run = trained(store, f"{roi}-s{seed}", cfg)
            cols["internal"].append(float(run.auc))
            for f in externals:
                cols[f.name].append(external_auc(store, run, f))
        results[roi] = cols
    names = ["internal", *(f.name for f in externals)]
    print(f"\n| data.roi | {' | '.join(f'{n} AUC' for n in names)} |\n|---|" + "---|" * len(names))
    for roi, cols in results.items():
        print(f"| {roi} | " + " | ".join(mean_sd(cols[n]) for n in names) + " |")
    tests: dict[str, dict[str, float]] = {}
    if "full" in results and len(results) > 1 and len(seeds) > 1:
        print("\n| vs full (paired t over seeds) | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for roi in (r for r in results if r != "full"):
            tests[roi] = {}
            cells = []
            for n in names:
                diff = np.subtract(results[roi][n], results["full"][n])
                p = float(ttest_rel(results[roi][n], results["full"][n]).pvalue)
                tests[roi][n] = p
                cells.append(f"Δ {diff.mean():+.3f}, p = {p:.2f}")
            print(f"| {roi} | " + " | ".join(cells) + " |")
    return {"auc": results, "paired_t_p": tests, "seeds": seeds}


def energy_section(store: Any, data: Path, n_images: int, rois: list[str]) -> dict[str, Any]:
    from pipeline.explain import heatmaps
    from pipeline.explain.faithfulness import energy_inside
    from pipeline.imaging import decode
    from pipeline.serving.predictor import Predictor

    out: dict[str, Any] = {}
    print(
        "\n| data.roi | images | lungs' share of the input | Grad-CAM | LIME | SHAP |"
        "\n|---|---|---|---|---|---|"
    )
    for roi in rois:
        run = next(r for r in store.list_runs(status="succeeded") if r.name == f"{roi}-s0")
        predictor = Predictor(run.artifacts_dir)
        with (predictor.run_dir / "predictions.csv").open() as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "test" and r["label"] == "1"]
        shares: dict[str, list[float]] = {m: [] for m in heatmaps.METHODS}
        area = []
        for row in rows[:n_images]:
            found = predictor.prepare_with_lungs(decode.read_image(data / row["path"]))
            area.append(float(found.lungs.mean()))
            for m in heatmaps.METHODS:
                heat = heatmaps.explain(predictor.model, found.image, m, **OPTIONS.get(m, {}))
                shares[m].append(energy_inside(heat.heatmap, found.lungs))
        out[roi] = {"lung_area": area, **shares}
        cells = " | ".join(mean_sd(shares[m]) for m in heatmaps.METHODS)
        print(f"| {roi} | {len(area)} | {mean_sd(area)} | {cells} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", default=str(SHARED / "lung-masks"))
    parser.add_argument("--data", default=str(SHARED / "tb-cxr"))
    parser.add_argument("--external", default="nlm-224,montgomery")
    parser.add_argument("--rois", default="full,lung_crop,lung_mask")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--skip", default="", help="comma-separated: seg, auc, energy")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    os.environ["TBXRAY_RUNS_DIR"] = str(OUT)
    os.environ.pop("TBXRAY_DB_URL", None)
    from db import RunStore

    skip = set(filter(None, args.skip.split(",")))
    data = Path(args.data)
    externals = [
        SHARED / name if "/" not in name else Path(name) for name in args.external.split(",")
    ]
    results: dict[str, Any] = {}
    if "seg" not in skip:
        results["seg"] = segmenter_section(Path(args.masks), [data, *externals])
    store = RunStore()
    if "auc" not in skip:
        seeds = [int(s) for s in args.seeds.split(",")]
        results["auc"] = auc_section(store, data, externals, args.rois.split(","), seeds)
    if "energy" not in skip:
        rois = [r for r in args.rois.split(",") if r in ("full", "lung_crop")]
        results["energy"] = energy_section(store, data, args.images, rois)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
