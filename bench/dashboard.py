"""Benchmark: each dashboard page's first render over a team-sized run store.

    .venv/bin/python -m bench.dashboard [--runs 200] [--repeats 5] [--keep DIR] [--pages Run,...]

Builds, in a temporary folder, a store of ``--runs`` runs through the store's own API: the nine
preset suites over three seeds plus single runs, each with per-epoch history, test metrics
computed by :func:`pipeline.evaluation.metrics.evaluate` from simulated scores on a phantom dataset,
two external evaluations and the artifacts the pages read (``predictions.csv``, ``metrics.json``,
``history.json``, the log). A few runs failed, one is training, two are queued, one is
promoted. One more run is trained for real (the ``smoke`` preset) so that Explain has a model.

Then each page is opened ``--repeats`` times, each time as a new visitor (a fresh
:class:`streamlit.testing.v1.AppTest`, as a browser opening the page's address), and the table
gives the first render of the process (cold caches), the median of the rest in wall-clock and
CPU time, and the SQL statements one render runs (a page that reads the store once per run
shows hundreds). A page that raises, or shows no page (the login gate), stops the benchmark.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
EPOCHS = 25  # epochs of history per finished run
# Of the runs that are not in the last few (training / queued): one in this many failed.
FAIL_EVERY = 17


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs in the store")
    parser.add_argument("--repeats", type=int, default=5, help="renders per page")
    parser.add_argument("--pages", help="only these pages, by their first word (Leaderboard,Run)")
    parser.add_argument(
        "--keep", help="build the store in this folder and keep it (or reuse the one there)"
    )
    args = parser.parse_args()
    if args.keep:
        measure(Path(args.keep).resolve(), args.runs, args.repeats, args.pages)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as folder:
            measure(Path(folder), args.runs, args.repeats, args.pages)


def measure(folder: Path, n_runs: int, repeats: int, only: str | None = None) -> None:
    """Build the store under ``folder`` (or reuse the one there), then time every page (or those
    ``only`` names, comma-separated) and print the table."""
    os.environ["TBXRAY_RUNS_DIR"] = str(folder / "runs")
    os.environ["TBXRAY_CACHE_DIR"] = str(folder / "cache")
    os.environ.pop("TBXRAY_DB_URL", None)
    built = folder / "pages.json"
    if built.exists():
        ids = json.loads(built.read_text())
        print(f"the store in {folder}, built before", flush=True)
    else:
        started = time.perf_counter()
        ids = build_store(folder, n_runs)
        built.write_text(json.dumps(ids))
        print(f"{n_runs + 1} runs stored in {time.perf_counter() - started:.0f} s", flush=True)
    pages = {
        "Leaderboard": (None, {}),
        "Run (one run)": ("views/run.py", {"run": ids["run"]}),
        "Compare (3 runs)": ("views/compare.py", {"runs": ",".join(ids["compare"])}),
        "Dataset": ("views/dataset.py", {}),
        "Launch": ("views/launch.py", {}),
        "Explain": ("views/explain.py", {"run": ids["model"]}),
        "Publish": ("views/publish.py", {}),
    }
    queries = count_queries()
    print(
        f"\n| page | first render (s) | median of next {repeats - 1} (s) | their median CPU "
        "time (s) | SQL queries |\n|---|---|---|---|---|"
    )
    wanted = {w.lower() for w in only.split(",")} if only else None
    for name, (path, params) in pages.items():
        if wanted and name.split()[0].lower() not in wanted:
            continue
        times = []
        for _ in range(repeats):
            queries.clear()
            times.append(render(path, params))
        wall = statistics.median(t[0] for t in times[1:])
        cpu = statistics.median(t[1] for t in times[1:])
        print(
            f"| {name} | {times[0][0]:.2f} | {wall:.2f} | {cpu:.2f} | {len(queries)} |", flush=True
        )
    store_reads()
    print(f"\nload average (1, 5, 15 min) after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def store_reads(repeats: int = 15) -> None:
    """Print the median CPU time of the whole-store reads the pages make."""
    from db import RunStore

    store = RunStore()
    print("\n| store read | median CPU (ms) |\n|---|---|")
    for name in ("list_runs", "external_summaries", "list_suites"):
        times = []
        for _ in range(repeats):
            started = time.process_time()
            getattr(store, name)()
            times.append(time.process_time() - started)
        print(f"| {name}() | {1000 * statistics.median(times):.0f} |")
    store.engine.dispose()


def count_queries() -> list[str]:
    """A list that every SQL statement run from now on, on any engine, is appended to: a page
    that reads the store once per run shows it here as hundreds of queries."""
    from sqlalchemy import Engine, event

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    return statements


def render(path: str | None, params: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process, every thread) of one visitor's first render of
    the page at ``path`` (the Leaderboard: None). On a busy machine the CPU time is the steadier
    of the two."""
    from streamlit import config, logger
    from streamlit.testing.v1 import AppTest

    # Outside a server every render warns that it has no script-run context: noise here. The
    # config is read first, as reading it would set the log level again.
    config.get_config_options()
    logger.set_log_level("error")

    # As `python -m dashboard` serves by default: on loopback, which needs no login.
    config.set_option("server.address", "127.0.0.1")
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update(params)
    if path is not None:
        at.switch_page(path)
    started, cpu = time.perf_counter(), time.process_time()
    at.run()
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    if at.exception:
        raise RuntimeError(f"{path or 'leaderboard'} raised: {at.exception[0].message}")
    if not at.title:
        raise RuntimeError(f"{path or 'leaderboard'} rendered no page: {at.error}")
    return elapsed


def build_store(folder: Path, n_runs: int) -> dict[str, Any]:
    """A store of ``n_runs`` simulated runs plus one trained smoke run; returns the ids the
    pages are opened with: ``run`` (one with external sets), ``compare`` (three), ``model``."""
    from db import RunStore
    from pipeline.config import preset
    from pipeline.data import synth
    from pipeline.data.scan import scan
    from pipeline.experiments.plan import enqueue, expand
    from pipeline.experiments.suites import SUITES
    from pipeline.training import train

    data, externals = folder / "phantoms", [folder / "ext-a", folder / "ext-b"]
    synth.generate(data, 400, size=64, seed=1)
    for i, ext in enumerate(externals):
        synth.generate(ext, 60, size=64, seed=2 + i)
    index = scan(data)
    labels = np.asarray(index.labels)
    paths = [str(Path(p).relative_to(data)) for p in index.paths]
    ext_labels = [np.asarray(scan(e).labels) for e in externals]

    store = RunStore()
    queued = []
    for spec in SUITES.values():
        if len(queued) >= n_runs:
            break
        plan = expand(spec, data_path=str(data), seeds=3)
        queued += enqueue(store, spec, plan)[1]
    rng = np.random.default_rng(0)
    while len(queued) < n_runs:
        cfg = preset(
            "baseline",
            **{
                "data.path": str(data),
                "data.external": [str(e) for e in externals],
                "optim.learning_rate": float(10 ** rng.uniform(-4, -2)),
                "model.dropout": float(rng.choice([0.2, 0.3, 0.5])),
                "seed": int(rng.integers(0, 5)),
            },
        )
        queued.append(store.create_run(json.loads(cfg.to_json()), name=f"baseline-{len(queued)}"))
    for extra in queued[n_runs:]:  # a small --runs ends inside a suite
        store.delete_run(extra.id)
    queued = queued[:n_runs]
    for i, run in enumerate(queued[:-3]):
        store.start_run(run.id, worker="bench")
        history = simulated_history(store, run.id, rng)
        if i % FAIL_EVERY == FAIL_EVERY - 1:
            store.fail_run(run.id, "Traceback (most recent call last):\nValueError: simulated")
            continue
        finish(store, run, folder, rng, labels, paths, externals, ext_labels, history)
    running = queued[-3]
    store.start_run(running.id, worker="bench")
    simulated_history(store, running.id, rng, epochs=4)

    cfg = preset("smoke", **{"data.path": str(data), "name": "smoke-model"})
    model = train.run(cfg, store)
    done = [r for r in store.list_runs(status="succeeded") if r.id != model.id]
    store.promote(done[0].id, note="bench", promoted_by="bench")
    store.engine.dispose()
    return {"run": done[0].id, "compare": [r.id for r in done[:3]], "model": model.id}


def simulated_history(
    store: Any, run_id: str, rng: np.random.Generator, epochs: int = EPOCHS
) -> dict[str, list[float]]:
    """Log ``epochs`` epochs of a plausible learning curve; returns them as Keras history."""
    history: dict[str, list[float]] = {}
    for epoch in range(1, epochs + 1):
        progress = 1 - np.exp(-epoch / 6)
        values = {
            "loss": 0.7 - 0.5 * progress + rng.normal(0, 0.01),
            "accuracy": 0.55 + 0.4 * progress + rng.normal(0, 0.01),
            "auc": 0.5 + 0.48 * progress + rng.normal(0, 0.005),
            "val_loss": 0.7 - 0.4 * progress + rng.normal(0, 0.03),
            "val_accuracy": 0.55 + 0.35 * progress + rng.normal(0, 0.02),
            "val_auc": 0.5 + 0.42 * progress + rng.normal(0, 0.02),
            "learning_rate": 1e-3,
            "seconds": 4.0 + rng.normal(0, 0.3),
        }
        store.log_epoch(run_id, epoch, values)
        for key, value in values.items():
            history.setdefault(key, []).append(float(value))
    return history


def finish(
    store: Any,
    run: Any,
    folder: Path,
    rng: np.random.Generator,
    labels: np.ndarray,
    paths: list[str],
    externals: list[Path],
    ext_labels: list[np.ndarray],
    history: dict[str, list[float]],
) -> None:
    """Finish ``run`` as the worker would: artifacts written, metrics and external evaluations
    stored in one call. Scores are simulated with a per-run separation between the classes."""
    from pipeline.evaluation import metrics

    order = rng.permutation(len(labels))
    val, test = order[: len(labels) // 10], order[len(labels) // 10 : len(labels) * 3 // 10]
    separation = rng.uniform(0.4, 1.6)

    def scores(y: np.ndarray, separation: float) -> np.ndarray:
        """P(TB) as a logistic of the label, ``separation`` apart, plus unit noise."""
        return 1 / (1 + np.exp(-(separation * (y - 0.5) * 2 + rng.normal(0, 1, len(y)))))

    s_val, s_test = scores(labels[val], separation), scores(labels[test], separation)
    result = metrics.evaluate(labels[val], s_val, labels[test], s_test, n_boot=100)
    result["epochs_trained"] = EPOCHS
    artifacts = folder / "runs" / run.id
    artifacts.mkdir(parents=True)
    (artifacts / "config.json").write_text(json.dumps(run.config))
    (artifacts / "metrics.json").write_text(json.dumps(result))
    (artifacts / "history.json").write_text(json.dumps(history))
    (artifacts / "train.log").write_text(
        "".join(f"epoch {e + 1}: loss {v:.4f}\n" for e, v in enumerate(history["loss"]))
    )
    with (artifacts / "predictions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "path", "label", "score"])
        for part, rows, values in (("val", val, s_val), ("test", test, s_test)):
            for i, score in zip(rows, values, strict=True):
                writer.writerow([part, paths[i], int(labels[i]), repr(float(score))])
    evaluations = []
    for ext, y in zip(externals, ext_labels, strict=True):
        # Other hospitals: a weaker separation, as domain shift gives.
        found = metrics.external(
            y, scores(y, rng.uniform(0.0, 0.8)), result["threshold"], n_boot=100
        )
        evaluations.append((str(ext), f"fp-{ext.name}", found))
    store.finish_run(
        run.id,
        metrics=result,
        artifacts_dir=str(artifacts),
        data_fingerprint="bench",
        versions={"bench": "simulated"},
        duration_s=float(rng.uniform(60, 600)),
        external_evals=evaluations,
    )


if __name__ == "__main__":
    main()
