"""Benchmark: what site calibration and probability calibration do for a run on other hospitals.

    .venv/bin/python -m bench.calibration [--run RUN_ID | --data ../shared/data/tb-cxr]
        [--sites ../shared/data/nlm-224,../shared/data/montgomery] [--calibration platt]
        [--store bench-runs/calibration] [--json F]

Without --run, trains the baseline preset (128 px, seed 0) on --data with
``eval.calibration=--calibration`` into its own store. Then, for each site folder, calibrates the
run as ``python -m pipeline calibrate`` does (threshold chosen on half of the site's images,
groups kept together, checked on the other half) and reports, on the check half: sensitivity and
specificity at the run's validated threshold and at the site threshold, with 95 % intervals.
Also reports the internal test split's ECE and Brier score before and after probability
calibration, and each site's ECE.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _ci(value: float, ci: list[float] | None) -> str:
    if ci is None or ci[0] is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing succeeded run (default: train the baseline)")
    parser.add_argument("--data", default=str(SHARED / "tb-cxr"))
    parser.add_argument("--sites", default=f"{SHARED / 'nlm-224'},{SHARED / 'montgomery'}")
    parser.add_argument("--calibration", default="platt", choices=["none", "platt", "isotonic"])
    parser.add_argument("--prevalence", type=float, default=0.05)
    parser.add_argument("--store", default="bench-runs/calibration")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    if args.run is None:
        os.environ["TBXRAY_RUNS_DIR"] = str(Path(args.store).resolve())
        os.environ.pop("TBXRAY_DB_URL", None)
    from db import RunStore
    from pipeline.config import preset
    from pipeline.runs.external import site_calibration
    from pipeline.serving.predictor import Predictor
    from pipeline.training import train

    store = RunStore()
    if args.run is None:
        cfg = preset(
            "baseline",
            **{
                "data.path": args.data,
                "data.image_size": 128,
                "eval.calibration": args.calibration,
                "name": f"baseline-{args.calibration}",
            },
        )
        run = train.run(cfg, store, progress=True)
    else:
        run = store.get_run(args.run)
    m = run.metrics
    report: dict = {"run": run.id, "internal": {"auc": run.auc}}
    if "calibration_before" in m:
        report["internal"]["before"] = m["calibration_before"]
    report["internal"]["served"] = m.get("calibration")
    predictor = Predictor(run.artifacts_dir)
    report["sites"] = {}
    for folder in args.sites.split(","):
        _, result = site_calibration(predictor, folder, prevalence=args.prevalence)
        report["sites"][Path(folder).name] = result

    print(f"run {run.id}: internal test AUC {run.auc:.3f}")
    internal = report["internal"]
    if "before" in internal:
        print(
            f"internal test ECE {internal['before']['ece']:.3f} → {internal['served']['ece']:.3f} "
            f"after {args.calibration} scaling; Brier {internal['before']['brier']:.3f} → "
            f"{internal['served']['brier']:.3f}"
        )
    elif internal["served"]:
        print(f"internal test ECE {internal['served']['ece']:.3f} (no calibration)")
    print(
        "| site | check images | AUC (check) | validated thr. | sens | spec "
        "| site thr. | sens | spec | site ECE |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in report["sites"].items():
        at_run, at_site = r["check_at_run_threshold"], r["check"]
        print(
            f"| {name} | {r['n_check']} | {_ci(at_site['auc'], at_site['auc_ci'])} "
            f"| {at_run['threshold']:.3f} | {_ci(at_run['sensitivity'], at_run['sensitivity_ci'])} "
            f"| {_ci(at_run['specificity'], at_run['specificity_ci'])} | {r['threshold']:.3f} "
            f"| {_ci(at_site['sensitivity'], at_site['sensitivity_ci'])} "
            f"| {_ci(at_site['specificity'], at_site['specificity_ci'])} "
            f"| {r['calibration']['ece']:.3f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
