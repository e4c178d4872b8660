"""Benchmark: a suite read on the external sets (generalisation, pretraining), with the Grad-CAM
artefact check.

    .venv/bin/python -m bench.generalisation [--name generalisation] [--store bench-runs/NAME]
        [--suite ID] [--gradcam] [--markdown EXPERIMENTS.md]

Reads a finished (or partly finished) ``generalisation`` suite from the run store under
``--store`` (made by ``TBXRAY_RUNS_DIR=bench-runs/generalisation python -m pipeline enqueue
--suite generalisation --seeds 3 --data ../shared/data/tb-cxr`` and a worker) and prints:

1. the suite summary (``python -m pipeline suite``): every setting against the baseline by the
   paired t-test over seeds;
2. one row per setting with internal AUC, the AUC and the sensitivity at the validated threshold
   on each external set (mean ± sd over seeds), the mean and worst external AUC, seconds per
   epoch and per run relative to the baseline; with ``--gradcam``, the share of Grad-CAM energy
   in the bottom fifth of the model input on tb-cxr TB test images that carry an anonymisation
   box (a uniform map puts 0.20 there).

``--markdown FILE`` writes both as the ``## generalisation`` section of FILE (replacing it).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def markers(name: str) -> tuple[str, str]:
    """The comments around a suite's section of EXPERIMENTS.md."""
    return f"<!-- {name}: start -->", f"<!-- {name}: end -->"


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None and not np.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_section(name: str, lines: list[str], markdown: str | None) -> str:
    """``lines`` between the suite's markers; replaces its section of ``markdown`` when given."""
    start, end = markers(name)
    text = "\n".join([start, *lines, end])
    if markdown:
        path = Path(markdown)
        old = path.read_text() if path.exists() else ""
        if start in old:
            old = old[: old.index(start)] + old[old.index(end) + len(end) :].lstrip("\n")
        path.write_text(old.rstrip("\n") + "\n\n" + text + "\n")
    return text


def boxed_band_energy(run: Any) -> float:
    """Mean Grad-CAM energy in the bottom band of the model input, over the run's TB test images
    whose original film carries a bottom anonymisation box."""
    import cv2

    from pipeline.explain import faithfulness, heatmaps
    from pipeline.preprocessing import artefacts
    from pipeline.serving.predictor import Predictor

    predictor = Predictor(run.artifacts_dir)
    root = Path(predictor.config.data.path)
    energies = []
    with (predictor.run_dir / "predictions.csv").open() as f:
        for row in csv.DictReader(f):
            if row["split"] != "test" or row["label"] != "1":
                continue
            image = cv2.imread(str(root / row["path"]), cv2.IMREAD_GRAYSCALE)
            if not artefacts.bottom_boxes(image):
                continue
            heat = heatmaps.gradcam(predictor.model, predictor.prepare(image))
            energies.append(faithfulness.band_energy(heat, artefacts.BAND))
    return float(np.mean(energies)) if energies else float("nan")


def per_setting(store: Any, suite_id: str, gradcam: bool) -> list[str]:
    from pipeline.experiments.summary import settings_of

    settings = settings_of(store, suite_id)
    labels = {key: label for key, (label, _) in settings.items()}
    groups = {
        key: [r for r in runs if r.status == "succeeded"] for key, (_, runs) in settings.items()
    }
    sets = sorted(_sets(store, groups))
    header = ["setting", "seeds", "internal AUC"]
    header += [f"{name} {what}" for name in sets for what in ("AUC", "sens")]
    header += ["ext AUC mean", "ext AUC worst", "s / epoch", "time vs base"]
    if gradcam:
        header.append("Grad-CAM in bottom band (boxed TB)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base_time = None
    for key, runs in groups.items():
        if not runs:
            continue
        per_set = {name: ([], []) for name in sets}
        mean_auc, worst_auc = [], []
        for run in runs:
            newest: dict[str, Any] = {}
            for e in store.external_evals(run.id):
                newest.setdefault(Path(e.dataset_path).name, e)
            for name, e in newest.items():
                per_set[name][0].append(e.auc)
                per_set[name][1].append(e.sensitivity)
            aucs = [e.auc for e in newest.values() if e.auc is not None]
            mean_auc.append(float(np.mean(aucs)))
            worst_auc.append(min(aucs))
        seconds = [e.seconds for r in runs for e in store.epochs(r.id) if e.seconds]
        run_time = statistics.mean(r.duration_s for r in runs)
        base_time = base_time or run_time
        row = [labels[key], str(len(runs)), mean_sd([r.auc for r in runs])]
        for name in sets:
            row += [mean_sd(per_set[name][0]), mean_sd(per_set[name][1])]
        row += [
            mean_sd(mean_auc),
            mean_sd(worst_auc),
            f"{statistics.mean(seconds):.1f}" if seconds else "—",
            f"{run_time / base_time:.2f}×",
        ]
        if gradcam:
            row.append(mean_sd([boxed_band_energy(r) for r in runs]))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _sets(store: Any, groups: dict[str, list[Any]]) -> set[str]:
    return {
        Path(e.dataset_path).name
        for runs in groups.values()
        for r in runs
        for e in store.external_evals(r.id)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="generalisation", help="the suite (generalisation)")
    parser.add_argument("--store", help="its run store (default bench-runs/NAME)")
    parser.add_argument("--suite", help="suite id (default: the newest suite of that name)")
    parser.add_argument("--gradcam", action="store_true", help="add the Grad-CAM artefact check")
    parser.add_argument("--markdown", help="write the section into this file")
    args = parser.parse_args()
    store_dir = Path(args.store or ROOT / "bench-runs" / args.name)

    os.environ["TBXRAY_RUNS_DIR"] = str(store_dir.resolve())
    os.environ.pop("TBXRAY_DB_URL", None)
    from db import RunStore
    from pipeline.experiments import summary

    store = RunStore()
    suites = [s for s in store.list_suites() if s.name == args.name]
    suite_id = args.suite or (suites[0].id if suites else None)
    if suite_id is None:
        raise SystemExit(f"no {args.name} suite in {store_dir}; enqueue one first")
    table = summary.format_summary(summary.summary(store, suite_id))
    rows = per_setting(store, suite_id, args.gradcam)
    command = "`.venv/bin/python -m bench.generalisation"
    command += "" if args.name == "generalisation" else f" --name {args.name}"
    command += " --gradcam" if args.gradcam else ""
    section = [
        f"## {args.name}",
        "",
        store.get_suite(suite_id).description,
        "",
        f"Command: {command} --markdown EXPERIMENTS.md`, {datetime.now(UTC):%Y-%m-%d}, on the "
        "suite enqueued with `--seeds 3 --data ../shared/data/tb-cxr`, 2-core CPU. Sensitivity "
        "is at each run's threshold chosen on its own validation split.",
        "",
        "```",
        table,
        "```",
        "",
        *rows,
    ]
    print(write_section(args.name, section, args.markdown))


if __name__ == "__main__":
    main()
