"""Benchmark: label-free site adaptation (AdaBN, ``python -m pipeline adapt``) on the external
sets, paired with the same runs unadapted.

    .venv/bin/python -m bench.adaptation [--store bench-runs/pretraining] [--suite ID]
        [--setting LABEL ...] [--markdown EXPERIMENTS.md]

For every succeeded run of the newest ``pretraining`` suite in ``--store`` (or ``--suite``) and
every external set the run was evaluated on, adapts the run to that set's images (their labels
are not read) unless that was done before, and reads the set's AUC and sensitivity — at the
adapted run's threshold, chosen on its own validation split — beside the run's own. One row per
setting and set: mean ± sd over seeds, and the paired t-test over seeds of adapted minus not.
``--markdown FILE`` writes the table as the ``## adaptation`` section of FILE.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.generalisation import mean_sd, write_section

ROOT = Path(__file__).resolve().parents[1]


def _external(store: Any, run_id: str, folder: str) -> Any:
    evals = [e for e in store.external_evals(run_id) if Path(e.dataset_path) == Path(folder)]
    return evals[0] if evals else None


def adapted_runs(store: Any, run: Any) -> dict[str, Any]:
    """The run adapted to each of its external sets: found in the store, else made now."""
    from pipeline.runs.adapt import adapt

    done = {
        r.metrics["adaptation"]["site"]: r
        for r in store.list_runs(status="succeeded")
        if r.metrics.get("adaptation", {}).get("parent") == run.id
    }
    for e in store.external_evals(run.id):
        site = str(Path(e.dataset_path).resolve())
        if site not in done:
            done[site] = adapt(store, run.id, site)
    return done


def table(store: Any, suite_id: str, only: list[str] | None = None) -> list[str]:
    from pipeline.evaluation.compare import paired_seeds
    from pipeline.experiments.summary import settings_of

    lines = [
        "| setting | site | seeds | AUC | AUC adapted | sens | sens adapted | Δ AUC (paired t) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, runs in settings_of(store, suite_id).values():
        if only and label not in only:
            continue
        runs = [r for r in runs if r.status == "succeeded"]
        rows: dict[str, dict[str, dict[int, float]]] = {}
        for run in runs:
            for site, adapted in adapted_runs(store, run).items():
                before, after = _external(store, run.id, site), _external(store, adapted.id, site)
                if before is None or after is None:
                    continue
                cells = rows.setdefault(Path(site).name, {k: {} for k in ("a", "A", "s", "S")})
                cells["a"][run.config["seed"]] = before.auc
                cells["A"][run.config["seed"]] = after.auc
                cells["s"][run.config["seed"]] = before.sensitivity
                cells["S"][run.config["seed"]] = after.sensitivity
        for site, c in sorted(rows.items()):
            paired = paired_seeds(c["A"], c["a"])
            delta = "—" if paired is None else f"{paired.mean_difference:+.3f} (p = {paired.p:.2f})"
            lines.append(
                f"| {label} | {site} | {len(c['a'])} | {mean_sd(list(c['a'].values()))} | "
                f"{mean_sd(list(c['A'].values()))} | {mean_sd(list(c['s'].values()))} | "
                f"{mean_sd(list(c['S'].values()))} | {delta} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(ROOT / "bench-runs" / "pretraining"))
    parser.add_argument("--suite", help="suite id (default: the newest pretraining suite)")
    parser.add_argument(
        "--setting", action="append", help="only this setting's runs, by label (repeatable)"
    )
    parser.add_argument("--markdown", help="write the section into this file")
    args = parser.parse_args()
    os.environ["TBXRAY_RUNS_DIR"] = str(Path(args.store).resolve())
    os.environ.pop("TBXRAY_DB_URL", None)
    from db import RunStore

    store = RunStore()
    suites = [s for s in store.list_suites() if s.name == "pretraining"]
    suite_id = args.suite or (suites[0].id if suites else None)
    if suite_id is None:
        raise SystemExit(f"no pretraining suite in {args.store}; enqueue one first")
    settings = "".join(f' --setting "{label}"' for label in args.setting or ())
    section = [
        "## adaptation",
        "",
        "Each succeeded run of the pretraining suite adapted by AdaBN to each external set's "
        "images (labels unused), read on that set at the adapted run's validated threshold.",
        "",
        f"Command: `.venv/bin/python -m bench.adaptation{settings} --markdown EXPERIMENTS.md`, "
        f"{datetime.now(UTC):%Y-%m-%d}, 2-core CPU.",
        "",
        *table(store, suite_id, args.setting),
    ]
    text = write_section("adaptation", section, args.markdown)
    print(text)


if __name__ == "__main__":
    main()
