"""Benchmark: run the eight preset experiment suites on one dataset and report each summary.

    .venv/bin/python -m bench.suites --data ../shared/data/tb-cxr [--suites pooling,width]
        [--set train.epochs=15] [--max-runs 4] [--store bench-runs] [--markdown EXPERIMENTS.md]

Enqueues every suite (one seed, the suite's own sizes) into a dedicated store, drains the queue
with one in-process worker, and prints each suite's per-setting summary and the total wall time.
With --markdown the same tables are written as a Markdown report; EXPERIMENTS.md comes from this
command. Re-running with the same --store resumes: finished runs are kept, only what is still
queued is trained.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tb-cxr"))
    parser.add_argument("--suites", help="comma-separated suite names (default: all eight)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--max-runs", type=int, help="cap on the random-search suites' settings")
    parser.add_argument("--store", default="bench-runs", help="runs folder for this benchmark")
    parser.add_argument("--markdown", help="write the report here")
    args = parser.parse_args()

    os.environ["TBXRAY_RUNS_DIR"] = str(Path(args.store).resolve())
    os.environ.pop("TBXRAY_DB_URL", None)
    from db import RunStore
    from pipeline.config import parse_overrides
    from pipeline.experiments import summary
    from pipeline.experiments.plan import enqueue, expand
    from pipeline.experiments.spec import varied_fields
    from pipeline.experiments.suites import SUITES
    from pipeline.runs.worker import WorkerOptions, work

    overrides = parse_overrides(args.set)
    names = args.suites.split(",") if args.suites else list(SUITES)
    store = RunStore()
    launched = {s.name: s for s in store.list_suites()}
    for name in names:
        if name not in launched:
            spec = SUITES[name]
            cap = args.max_runs if spec.mode == "random" else None
            # A suite that varies a field keeps its own values for it (hyperparams varies epochs).
            varied = set(varied_fields(spec))
            mine = {k: v for k, v in overrides.items() if k not in varied}
            plan = expand(spec, data_path=args.data, overrides=mine, max_runs=cap)
            launched[name] = enqueue(store, spec, plan)[0]

    started = time.perf_counter()
    work(store, WorkerOptions(name="bench", once=True))
    elapsed = time.perf_counter() - started

    sections = [
        f"# Experiment suites on `{Path(args.data).name}`",
        "",
        f"Command: `.venv/bin/python -m bench.suites --data {args.data}"
        + "".join(f" --set {s}" for s in args.set)
        + (f" --max-runs {args.max_runs}" if args.max_runs else "")
        + f"`, {datetime.now(UTC):%Y-%m-%d}, one seed, 2-core CPU.",
        "",
    ]
    total = 0.0
    for name in names:
        table = summary.summary(store, launched[name].id)
        total += float(table["wall_time_s"].sum())
        text = summary.format_summary(table)
        print(f"\n== {name}: {SUITES[name].question}\n{text}", flush=True)
        sections += [
            f"## {name}",
            "",
            SUITES[name].question,
            "",
            "```",
            text,
            "```",
            "",
        ]
    sections.append(f"Total training wall time: {total / 60:.1f} min ({elapsed / 60:.1f} min now).")
    print(
        f"\ntotal training wall time {total / 60:.1f} min; this invocation {elapsed / 60:.1f} min"
    )
    if args.markdown:
        Path(args.markdown).write_text("\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
