"""Benchmark: the baseline on real X-rays — internal test, external validation, cold vs warm cache.

    .venv/bin/python -m bench.baseline [--data ../shared/data/tb-cxr]
        [--external ../shared/data/nlm-224] [--size 128] [--json out.json]

Trains the baseline twice in a fresh, temporary run store and cache: the first run builds the
preprocessing cache (cold), the second reuses it (warm; same config, so the same numbers are
expected up to CPU nondeterminism). Then evaluates the first run on the external folder. Prints a
table; the figures in BENCHMARKS.md come from this command.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "tb-cxr"))
    parser.add_argument("--external", default=str(SHARED / "nlm-224"))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TBXRAY_RUNS_DIR"] = tmp
        os.environ.pop("TBXRAY_DB_URL", None)
        from db import RunStore
        from pipeline import paths
        from pipeline.config import preset
        from pipeline.data import index_cache
        from pipeline.preprocessing import cache
        from pipeline.runs.external import evaluate_external
        from pipeline.training import train

        store = RunStore()
        cfg = preset("baseline", **{"data.path": args.data, "data.image_size": args.size})

        t0 = time.perf_counter()
        index = index_cache.load_index(args.data, progress=True)
        cache.cached_arrays(index, cfg.data, progress=True)
        cold_prep = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache.cached_arrays(index_cache.load_index(args.data), cfg.data)
        warm_prep = time.perf_counter() - t0

        # The cold run pays for scanning and preprocessing: drop the caches first.
        for sub in ("index", "arrays"):
            for f in (paths.cache_dir() / sub).glob("*"):
                f.unlink()
        runs = [train.run(cfg, store, progress=True) for _ in ("cold", "warm")]
        external = evaluate_external(store, runs[0].id, args.external, progress=True)

    first = runs[0]
    rows = {
        "data": args.data,
        "size": args.size,
        "n_test": first.metrics["n"],
        "test_auc": first.auc,
        "test_auc_ci": first.metrics["auc_ci"],
        "sensitivity": first.sensitivity,
        "specificity": first.specificity,
        "threshold": first.threshold,
        "who_met": first.who_met,
        "epochs_trained": first.metrics["epochs_trained"],
        "external": args.external,
        "external_auc": external.auc,
        "external_auc_ci": [external.auc_lo, external.auc_hi],
        "external_sensitivity": external.sensitivity,
        "external_specificity": external.specificity,
        "run_time_cold_s": runs[0].duration_s,
        "run_time_warm_s": runs[1].duration_s,
        "warm_run_auc": runs[1].auc,
        "scan_and_preprocess_cold_s": cold_prep,
        "scan_and_preprocess_warm_s": warm_prep,
    }
    table = Table("measure", "value", title=f"baseline at {args.size} px on {args.data}")
    for key, value in rows.items():
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        if isinstance(value, list):
            text = f"[{value[0]:.3f}, {value[1]:.3f}]"
        table.add_row(key, text)
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
