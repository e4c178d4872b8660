"""``python -m pipeline``: make data, inspect it, train, list runs, evaluate, predict, explain,
and the lung segmenter (``lungs``, in :mod:`pipeline.lungs.cli`).

Heavy modules (TensorFlow) are imported inside the commands that need them, so ``--help`` and the
store commands answer at once. Errors in what the user typed or pointed at are printed as one
clear line (exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Column, Table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# soft_wrap: messages stay on one line when piped, so they can be grepped and copied whole.
# Tables get at least 120 columns when piped (rich would assume 80 and squash them).
_WIDTH = max(shutil.get_terminal_size((160, 24)).columns, 120)
console = Console(soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, soft_wrap=True, width=_WIDTH)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.{digits}f}"
    return str(value)


def _ci(point: float | None, ci: Sequence[float] | None) -> str:
    if point is None:
        return "—"
    if not ci or ci[0] is None:
        return _fmt(point)
    return f"{point:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _store():
    from db import RunStore

    return RunStore()


# ---------------------------------------------------------------------------------------- synth
def cmd_synth(args: argparse.Namespace) -> int:
    from pipeline import synth

    summary = synth.generate(
        args.out, args.n, tb_ratio=args.tb_ratio, size=args.size, seed=args.seed, progress=True
    )
    console.print(
        f"wrote {summary.n_normal} normal and {summary.n_tb} TB phantoms ({summary.size} px, "
        f"seed {summary.seed}) to {summary.out}; lesion masks in {Path(summary.out) / 'masks'}"
    )
    return 0


# -------------------------------------------------------------------------------------- inspect
def cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline import datasets, preprocess

    index = preprocess.load_index(args.data, label_map=_label_map(args.label_map), progress=True)
    summary = datasets.summarise(index)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
        return 0
    counts = summary["counts"]
    ratio = summary["imbalance_ratio"]
    table = Table("", "", title=f"{index.root}", show_header=False)
    table.add_row("layout", index.layout)
    table.add_row("fingerprint", index.fingerprint)
    table.add_row("images", f"{summary['n_images']}: normal {counts['normal']} · TB {counts['tb']}")
    table.add_row("imbalance", f"{ratio:.2f} : 1" if ratio else "—")
    table.add_row(
        "sizes",
        ", ".join(f"{w}×{h} ({n})" for w, h, n in summary["sizes"])
        + (f" … {summary['n_sizes']} distinct" if summary["n_sizes"] > 5 else ""),
    )
    table.add_row("modes", ", ".join(f"{m} ({n})" for m, n in summary["modes"].items()))
    table.add_row("bad files", str(summary["n_bad_files"]))
    table.add_row(
        "near-duplicates",
        f"{summary['n_duplicate_groups']} groups holding "
        f"{summary['n_images_in_duplicate_groups']} images (kept on one side of every split)",
    )
    if summary["mixed_label_groups"]:
        table.add_row(
            "[red]label conflicts[/red]",
            f"{len(summary['mixed_label_groups'])} groups hold the same radiograph as normal "
            "and TB: fix these labels",
        )
    console.print(table)
    if index.bad_files:
        bad = Table("file", "reason", title=f"{len(index.bad_files)} bad files (skipped)")
        for b in index.bad_files:
            bad.add_row(os.path.relpath(b.path, index.root), b.reason)
        console.print(bad)
    if args.lungs:
        _inspect_lungs(index)
    return 0


def _inspect_lungs(index: Any) -> None:
    """Segment every image and list those without two plausible lungs."""
    from pipeline.lungs.segmenter import audit, shipped

    found = audit(shipped(), [r.path for r in index.records], progress=True)
    bad = [(r, p) for r, p in zip(index.records, found, strict=True) if not p.ok]
    title = f"{len(bad)} of {len(found)} images without two plausible lungs"
    table = Table("file", "class", "lung share", "why", title=title)
    for r, p in bad:
        name = "TB" if r.label else "normal"
        table.add_row(
            os.path.relpath(r.path, index.root), name, f"{p.area:.1%}", "; ".join(p.reasons)
        )
    console.print(table)


def _label_map(text: str | None) -> dict[str, int] | None:
    """``"healthy=0,tb=1"`` -> ``{"healthy": 0, "tb": 1}``."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, label = item.partition("=")
        if label not in ("0", "1"):
            raise ValueError(f"--label-map item {item!r}: write FOLDER=0 or FOLDER=1")
        out[name.strip()] = int(label)
    return out


# ---------------------------------------------------------------------------------------- train
def _parse_set(items: list[str]) -> dict[str, Any]:
    """``["model.pooling=avg", "model.filters=[8,16]"]`` -> dotted overrides (JSON values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: write FIELD=VALUE, e.g. --set model.pooling=avg")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config changes the user typed: named flags, then --set FIELD=VALUE."""
    if args.data is not None and not Path(args.data).is_dir():
        raise ValueError(f"--data {args.data}: no such folder; pass the dataset folder")
    flags = {
        # Absolute, so a worker started in another directory finds the same folder.
        "data.path": str(Path(args.data).resolve()) if args.data is not None else None,
        "data.image_size": args.size,
        "data.enhancement": args.enhancement,
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "seed": args.seed,
        "name": args.name,
    }
    changes = {k: v for k, v in flags.items() if v is not None}
    changes.update(_parse_set(args.set or []))
    return changes


def build_config(args: argparse.Namespace):  # noqa: ANN201 - RunConfig
    """The run config from --config or --preset, then the flags, then --set overrides."""
    from pipeline.config import load_config_file, override, preset

    cfg = load_config_file(args.config) if args.config else preset(args.preset)
    return override(cfg, _overrides(args))


def _metrics_table(run: Any) -> Table:
    table = Table("metric", "test (95% CI)", title=f"run {run.id} · {run.name} · {run.status}")
    m = run.metrics
    table.add_row("AUC", _ci(run.auc, m.get("auc_ci")))
    table.add_row("sensitivity", _ci(run.sensitivity, m.get("sensitivity_ci")))
    table.add_row("specificity", _ci(run.specificity, m.get("specificity_ci")))
    table.add_row("F1", _fmt(run.f1))
    table.add_row("accuracy", _fmt(run.accuracy))
    table.add_row(
        "threshold (chosen on validation)", f"{_fmt(run.threshold, 4)} ({m.get('threshold_rule')})"
    )
    table.add_row("WHO target (sens ≥ 0.90, spec ≥ 0.70)", "met" if run.who_met else "not met")
    confusion = m.get("confusion", {})
    table.add_row(
        "confusion (tn fp / fn tp)",
        "{tn} {fp} / {fn} {tp}".format(**confusion) if confusion else "—",
    )
    table.add_row("epochs trained", _fmt(m.get("epochs_trained")))
    table.add_row("duration", f"{run.duration_s:.1f} s" if run.duration_s else "—")
    table.add_row("artifacts", run.artifacts_dir or "—")
    return table


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline import train

    cfg = build_config(args)
    store = _store()
    console.print(f"training [bold]{cfg.name}[/bold] on {cfg.data.path} ({cfg.data.image_size} px)")
    try:
        run = train.run(cfg, store, progress=True)
    except train.RunCancelled as cancelled:
        err_console.print(f"run {cancelled} was cancelled; its epochs so far are kept in the store")
        return 1
    console.print(_metrics_table(run))
    return 0


# ------------------------------------------------------------------ queue: enqueue, worker, cancel
def cmd_enqueue(args: argparse.Namespace) -> int:
    from pipeline import experiments

    store = _store()
    if not (args.suite or args.suite_file):
        cfg = build_config(args)
        run = store.create_run(json.loads(cfg.to_json()), name=cfg.name)
        console.print(
            f"queued run {run.id} ({run.name}); start a worker: python -m pipeline worker"
        )
        return 0
    if args.suite_file:
        spec = experiments.load_suite_file(args.suite_file)
    elif args.suite in experiments.SUITES:
        spec = experiments.SUITES[args.suite]
    else:
        raise ValueError(
            f"unknown suite {args.suite!r}; choose one of {', '.join(experiments.SUITES)} "
            "or pass --suite-file"
        )
    overrides = _overrides(args)
    data_path = overrides.pop("data.path", "data/phantoms")
    planned = experiments.expand(
        spec,
        data_path=data_path,
        seeds=args.seeds,
        max_runs=args.max_runs,
        mode="grid" if args.grid else None,
        overrides=overrides,
    )
    suite, runs = experiments.enqueue(store, spec, planned)
    console.print(
        f"queued suite {suite.id} ({spec.name}: {spec.question}) with {len(runs)} runs; start "
        f"workers with `python -m pipeline worker`, then `python -m pipeline suite {suite.id}`"
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.worker import WorkerOptions, work

    options = WorkerOptions(
        once=args.once,
        max_runs=args.max_runs,
        heartbeat_s=args.heartbeat,
        stale_after_s=args.stale_after,
        requeue=args.requeue,
        poll_s=args.poll,
        requeue_on_stop=not args.fail_on_stop,
        **({"name": args.name} if args.name else {}),
    )
    store = _store()
    console.print(f"worker {options.name} on {store.url}")
    work(store, options)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from db import RunNotFound

    store = _store()
    try:
        run = store.get_run(args.id)
    except RunNotFound as err:
        if err.matches:
            raise
        cancelled = store.cancel_suite(args.id)
        console.print(f"suite {args.id}: {len(cancelled)} queued or running runs cancelled")
        return 0
    run = store.cancel_run(run.id)
    console.print(
        f"run {run.id} cancelled; a running run stops at its next batch and keeps its epochs"
    )
    return 0


# ------------------------------------------------------------------------------------------- db
def cmd_db(args: argparse.Namespace) -> int:
    from db import default_url, migrate
    from db.store import make_engine

    url = default_url()
    engine = make_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    if args.action == "current":
        console.print(f"run store {where}: {migrate.state(engine).describe()}")
        return 0
    if args.action == "upgrade":
        saved = migrate.upgrade(engine, args.revision or "head")
    else:
        if not args.revision:
            raise ValueError("db downgrade needs a target revision (e.g. 0001), or 'base'")
        saved = migrate.downgrade(engine, args.revision)
    kept = f"; the previous file is kept at {saved}" if saved else ""
    console.print(f"run store {where}: now {migrate.state(engine).describe()}{kept}")
    return 0


# ------------------------------------------------------------------------------- suites, suite
def cmd_suites(args: argparse.Namespace) -> int:
    from pipeline import experiments

    table = Table("suite", "runs", "question", title="preset suites (enqueue --suite NAME)")
    for name, spec in experiments.SUITES.items():
        table.add_row(name, str(len(experiments.expand(spec, data_path="."))), spec.question)
    console.print(table)
    store = _store()
    launched = store.list_suites()
    if launched:
        table = Table(
            Column("id", no_wrap=True), "name", "created", "runs", "done", title="launched suites"
        )
        for suite in launched:
            runs = store.list_runs(suite_id=suite.id)
            done = sum(r.status in ("succeeded", "failed", "cancelled") for r in runs)
            table.add_row(
                suite.id,
                suite.name,
                f"{suite.created_at:%Y-%m-%d %H:%M}",
                str(len(runs)),
                str(done),
            )
        console.print(table)
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    from pipeline import experiments

    store = _store()
    suite = store.get_suite(args.suite_id)
    console.print(experiments.format_summary(experiments.summary(store, suite.id)), markup=False)
    return 0


# ----------------------------------------------------------------------------------- runs, show
def cmd_runs(args: argparse.Namespace) -> int:
    store = _store()
    runs = store.list_runs(status=args.status, limit=args.limit)
    if not runs:
        console.print("no runs yet: train one with `python -m pipeline train --preset smoke`")
        return 0
    table = Table(
        Column("id", no_wrap=True, min_width=10),
        "name",
        "status",
        "created",
        "size",
        "AUC",
        "sens",
        "spec",
        "F1",
        "WHO",
        "ext AUC",
        "time",
    )
    for r in runs:
        ext = store.external_evals(r.id)
        table.add_row(
            r.id,
            r.name,
            r.status,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            _fmt(r.config.get("data", {}).get("image_size")),
            _fmt(r.auc),
            _fmt(r.sensitivity),
            _fmt(r.specificity),
            _fmt(r.f1),
            _fmt(r.who_met),
            _fmt(ext[0].auc) if ext else "—",
            f"{r.duration_s:.0f} s" if r.duration_s else "—",
        )
    console.print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = _store()
    run = store.get_run(args.run_id)
    console.print(_metrics_table(run))
    epochs = store.epochs(run.id)
    if epochs:
        table = Table(
            "epoch", "loss", "val loss", "acc", "val acc", "AUC", "val AUC", "s", title="epochs"
        )
        for e in epochs:
            table.add_row(
                str(e.epoch),
                *(
                    _fmt(v)
                    for v in (e.loss, e.val_loss, e.accuracy, e.val_accuracy, e.auc, e.val_auc)
                ),
                _fmt(e.seconds, 1),
            )
        console.print(table)
    for ev in store.external_evals(run.id):
        console.print(
            f"external: {ev.dataset_path} · n={ev.n_images} · "
            f"AUC {_ci(ev.auc, [ev.auc_lo, ev.auc_hi])} · "
            f"sens {_fmt(ev.sensitivity)} · spec {_fmt(ev.specificity)}"
        )
    if run.error:
        console.print("[red]failed:[/red]\n" + run.error)
    if args.config:
        console.print_json(json.dumps(run.config))
    return 0


# ----------------------------------------------------------------------------- evaluate, predict
def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.external import evaluate_external

    store = _store()
    ev = evaluate_external(store, args.run_id, args.data, progress=True)
    run = store.get_run(args.run_id)
    table = Table("", "internal test", "external", title=f"run {run.id} on {ev.dataset_path}")
    table.add_row("images", _fmt(run.metrics.get("n")), _fmt(ev.n_images))
    table.add_row(
        "AUC", _ci(run.auc, run.metrics.get("auc_ci")), _ci(ev.auc, [ev.auc_lo, ev.auc_hi])
    )
    table.add_row("sensitivity", _fmt(run.sensitivity), _fmt(ev.sensitivity))
    table.add_row("specificity", _fmt(run.specificity), _fmt(ev.specificity))
    table.add_row("F1", _fmt(run.f1), _fmt(ev.f1))
    table.add_row("accuracy", _fmt(run.accuracy), _fmt(ev.accuracy))
    console.print(table)
    console.print(
        f"threshold {run.threshold:.4f} from the run's validation split, applied unchanged"
    )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pipeline.external import calibrate_for_site

    store = _store()
    cal = calibrate_for_site(
        store,
        args.run_id,
        args.data,
        site=args.site,
        prevalence=args.prevalence,
        check_fraction=args.check_fraction,
        seed=args.seed,
        progress=True,
    )
    d = cal.details
    console.print(
        f"site '{cal.site}' ({cal.n_images} images: threshold chosen on {d['n_calibration']}, "
        f"checked on {d['n_check']}); prevalence {cal.prevalence:g}"
    )
    table = Table("threshold", "sensitivity", "specificity", "AUC", title="check part")
    for label, part in (
        ("site", d["check"]),
        ("run (validated)", d["check_at_run_threshold"]),
    ):
        threshold = cal.threshold if label == "site" else part["threshold"]
        table.add_row(
            f"{label} {threshold:.4f}",
            _ci(part["sensitivity"], part["sensitivity_ci"]),
            _ci(part["specificity"], part["specificity_ci"]),
            _ci(part["auc"], part["auc_ci"]),
        )
    console.print(table)
    run_threshold = d["check_at_run_threshold"]["threshold"]
    console.print(_threshold_table(d["table"], cal.threshold, run_threshold, args.rows))
    console.print(
        f"stored as calibration {cal.id} of run {cal.run_id}; the run's own threshold is "
        f"unchanged. Serve it with `python -m pipeline promote {cal.run_id} --calibration "
        f"{cal.id}`"
    )
    return 0


def _threshold_table(rows: list[dict], site: float, run: float, most: int) -> Table:
    """WHO's calibration table thinned to about ``most`` rows, both thresholds' rows kept."""
    step = max(1, len(rows) // most)
    marks = {site: " ◀ site", run: " ◀ run"}
    keep = [r for i, r in enumerate(rows) if i % step == 0 or r["threshold"] in marks]
    table = Table(
        "threshold",
        "sens",
        "spec",
        "PPV",
        "NPV",
        "referred /1000",
        "TB found /1000",
        "TB missed /1000",
        title="threshold table on the check part (per 1,000 people screened)",
    )
    for r in keep:
        mark = marks.get(r["threshold"], "")
        table.add_row(
            f"{r['threshold']:.4f}{mark}",
            f"{r['sensitivity']:.2f}",
            f"{r['specificity']:.2f}",
            _fmt(r["ppv"]),
            _fmt(r["npv"]),
            f"{r['referred_per_1000']:.0f}",
            f"{r['tb_found_per_1000']:.1f}",
            f"{r['tb_missed_per_1000']:.1f}",
        )
    return table


def cmd_calibrations(args: argparse.Namespace) -> int:
    store = _store()
    run = store.get_run(args.run_id)
    table = Table(
        "id",
        "site",
        "date",
        "images",
        "threshold",
        "sensitivity",
        "specificity",
        "folder",
        title=f"site calibrations of run {run.id} (validated threshold {run.threshold})",
    )
    for c in store.calibrations(run.id):
        table.add_row(
            str(c.id),
            c.site,
            f"{c.created_at:%Y-%m-%d}",
            str(c.n_images),
            f"{c.threshold:.4f}",
            _ci(c.sensitivity, [c.sensitivity_lo, c.sensitivity_hi]),
            _ci(c.specificity, [c.specificity_lo, c.specificity_hi]),
            c.dataset_path,
        )
    console.print(table)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    store = _store()
    run = store.get_run(args.run_id)
    promotion = store.promote(run.id, note=args.note, calibration_id=args.calibration)
    if promotion.calibration_id is None:
        how = f"at its validated threshold {run.threshold:.4f}"
    else:
        cal = store.get_calibration(promotion.calibration_id)
        how = f"at the threshold {cal.threshold:.4f} calibrated for '{cal.site}'"
    console.print(f"the public app now serves run {run.id} ({run.name}) {how}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.predictor import Predictor

    predictor = Predictor.from_store(_store(), args.run_id)
    table = Table("image", "P(TB)", "verdict", title=f"threshold {predictor.threshold:.4f}")
    from pipeline.images import ImageError

    failed = 0
    for path in args.images:
        # One unreadable file must not hide the results of the others.
        try:
            p = predictor.predict(path)
        except ImageError as err:
            failed += 1
            table.add_row(str(path), "—", f"[red]cannot read:[/red] {err.reason}")
            continue
        table.add_row(str(path), f"{p.probability:.3f}", p.verdict)
    console.print(table)
    return 2 if failed else 0


# -------------------------------------------------------------------------------------- explain
def cmd_explain(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from pipeline import explain
    from pipeline.faithfulness import energy_inside
    from pipeline.lungs.segmenter import SegmenterError
    from pipeline.predictor import Predictor

    predictor = Predictor.from_store(_store(), args.run_id)
    methods = explain.METHODS if args.method == "all" else (args.method,)
    try:
        prediction = predictor.predict(args.image, with_lungs=True)
    except SegmenterError as err:  # a run with roi=full still explains without the lungs
        err_console.print(f"[yellow]no in-lung share:[/yellow] {err}")
        prediction = predictor.predict(args.image)
    options = {"lime": {"num_samples": args.lime_samples}, "shap": {"max_evals": args.shap_evals}}
    # Every method runs before anything is written: a failure leaves no half-filled folder.
    results = [
        explain.explain(predictor.model, prediction.image, m, **options.get(m, {})) for m in methods
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    original = out / f"{stem}-input.png"
    cv2.imwrite(str(original), prediction.image)
    table = Table(
        "method", "seconds", "in lungs", "file", title=f"{args.image} with run {args.run_id}"
    )
    lungs = prediction.lungs
    for result in results:
        path = out / f"{stem}-{result.method}.png"
        cv2.imwrite(str(path), cv2.cvtColor(result.overlay(prediction.image), cv2.COLOR_RGB2BGR))
        share = "—" if lungs is None else f"{energy_inside(result.heatmap, lungs):.0%}"
        table.add_row(result.method, f"{result.seconds:.3f}", share, str(path))
    heatmaps = {result.method: result.heatmap for result in results}
    np.savez_compressed(out / f"{stem}-heatmaps.npz", **heatmaps)
    console.print(table)
    console.print(
        f"P(TB) {prediction.probability:.3f} — {prediction.verdict} "
        f"(threshold {prediction.threshold:.4f}); model input {original}, "
        f"raw heatmaps {out / f'{stem}-heatmaps.npz'}"
    )
    return 0


# ------------------------------------------------------------------------------------------- up
def cmd_up(args: argparse.Namespace) -> int:
    from pipeline import launch

    return launch.up(
        launch.services(args.dashboard_port, args.public_port, worker=not args.no_worker)
    )


# ----------------------------------------------------------------------------------------- main
def _config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="baseline", help="smoke | baseline (default baseline)")
    p.add_argument("--config", help="a config.json (e.g. from an earlier run) instead of a preset")
    p.add_argument("--data", help="dataset folder (default: the preset's, data/phantoms)")
    p.add_argument("--size", type=int, help="image side in pixels")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--enhancement", help="none | contrast_stretch | hist_eq | clahe")
    p.add_argument("--seed", type=int)
    p.add_argument("--name", help="run name")
    p.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="any config field, e.g. model.pooling=avg (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="TB X-ray Lab: train and compare chest X-ray TB classifiers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = add(
        "synth", cmd_synth, "make the phantom dataset (chest-like images, TB lesions with masks)"
    )
    p.add_argument("--out", default="data/phantoms", help="output folder (default: data/phantoms)")
    p.add_argument("--n", type=int, default=600, help="number of images (default 600)")
    p.add_argument("--tb-ratio", type=float, default=5.0, help="normal : TB ratio (default 5)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)

    p = add(
        "inspect", cmd_inspect, "counts, sizes, modes, bad files and near-duplicates of a dataset"
    )
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--label-map", help="class folders to labels, e.g. healthy=0,tb=1")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--lungs", action="store_true", help="segment every image; list implausible lung masks"
    )

    p = add("train", cmd_train, "train and evaluate one run now, in this process")
    _config_flags(p)

    p = add("enqueue", cmd_enqueue, "queue one run, or a whole experiment suite, for the workers")
    _config_flags(p)
    p.add_argument("--suite", help="a preset suite (see `suites`), e.g. pooling")
    p.add_argument("--suite-file", help="a custom suite in YAML or JSON")
    p.add_argument("--seeds", type=int, default=1, help="repeat each setting over N seeds")
    p.add_argument("--max-runs", type=int, help="at most N settings (random search cap)")
    p.add_argument("--grid", action="store_true", help="all combinations of the suite's factors")

    p = add("worker", cmd_worker, "claim queued runs and train them (several may run at once)")
    p.add_argument("--once", action="store_true", help="drain the queue, then exit")
    p.add_argument("--max-runs", type=int, help="exit after N runs")
    p.add_argument("--name", help="worker name (default host:pid)")
    p.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats")
    p.add_argument(
        "--stale-after", type=float, default=120.0, help="a run silent this long has a dead worker"
    )
    p.add_argument(
        "--requeue", action="store_true", help="re-queue dead runs instead of failing them"
    )
    p.add_argument(
        "--poll", type=float, default=5.0, help="seconds between looks at an empty queue"
    )
    p.add_argument(
        "--fail-on-stop",
        action="store_true",
        help="when told to stop (SIGTERM, Ctrl-C), mark the running run failed instead of "
        "re-queueing it",
    )

    p = add("db", cmd_db, "the run store's schema: which revision it is at, and upgrades")
    p.add_argument("action", choices=["current", "upgrade", "downgrade"])
    p.add_argument(
        "revision",
        nargs="?",
        help="upgrade: target (default the newest); downgrade: target revision, or 'base'",
    )

    p = add("cancel", cmd_cancel, "cancel a run, or every unfinished run of a suite")
    p.add_argument("id", help="run id (or prefix) or suite id")

    add("suites", cmd_suites, "the preset experiment suites and the suites launched")
    p = add("suite", cmd_suite, "per-setting summary of a suite: mean ± std, best marked")
    p.add_argument("suite_id")

    p = add("runs", cmd_runs, "table of runs in the store")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=50)

    p = add("show", cmd_show, "one run: metrics, epochs, external evaluations, error")
    p.add_argument("run_id")
    p.add_argument("--config", action="store_true", help="also print the run's config")

    p = add("evaluate", cmd_evaluate, "external validation of a run on another dataset folder")
    p.add_argument("run_id")
    p.add_argument("--data", required=True, help="dataset folder")

    p = add(
        "calibrate",
        cmd_calibrate,
        "choose a run's threshold for a site on part of its labelled images, check it on the rest",
    )
    p.add_argument("run_id")
    p.add_argument("--data", required=True, help="the site's labelled images (a dataset folder)")
    p.add_argument("--site", required=True, help="the site's name, e.g. 'District clinic A'")
    p.add_argument(
        "--prevalence", type=float, required=True, help="TB prevalence among those screened"
    )
    p.add_argument(
        "--check-fraction", type=float, default=0.5, help="share kept for checking (0.5)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--rows", type=int, default=15, help="rows of the threshold table shown")

    p = add("calibrations", cmd_calibrations, "a run's stored site calibrations")
    p.add_argument("run_id")

    p = add("promote", cmd_promote, "make a run the one the public app serves")
    p.add_argument("run_id")
    p.add_argument("--calibration", type=int, help="serve this site calibration's threshold")
    p.add_argument("--note", default="", help="why (shown in the promotion history)")

    p = add("predict", cmd_predict, "TB probability and verdict for images, with a run's model")
    p.add_argument("run_id")
    p.add_argument("images", nargs="+", help="PNG or JPEG files")

    p = add("explain", cmd_explain, "heatmaps of what drove a run's verdict on one image")
    p.add_argument("run_id")
    p.add_argument("image", help="a PNG or JPEG file")
    p.add_argument(
        "--method", choices=["gradcam", "lime", "shap", "all"], default="all", help="default all"
    )
    p.add_argument("--out", default="explanations", help="output folder (default explanations)")
    p.add_argument("--lime-samples", type=int, default=1000, help="LIME samples (default 1000)")
    p.add_argument("--shap-evals", type=int, default=500, help="SHAP evaluations (default 500)")

    from pipeline.lungs.cli import add_parser as add_lungs

    add_lungs(sub)

    p = add("up", cmd_up, "start the dashboard, the public app and a worker until Ctrl-C")
    p.add_argument("--dashboard-port", type=int, default=8501, help="default 8501")
    p.add_argument("--public-port", type=int, default=7860, help="default 7860")
    p.add_argument("--no-worker", action="store_true", help="start no worker")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a user error, printed as one line)."""
    from sqlalchemy.exc import SQLAlchemyError

    from db import StoreError
    from pipeline.config import ConfigError
    from pipeline.datasets import DatasetLayoutError
    from pipeline.images import ImageError

    args = _parser().parse_args(argv)
    try:
        return args.fn(args)
    except SQLAlchemyError as err:
        err_console.print(
            f"[red]error:[/red] the run store at {os.environ.get('TBXRAY_DB_URL', 'runs/')} "
            f"failed: {err.__class__.__name__}: {err.orig if hasattr(err, 'orig') else err}; "
            "check TBXRAY_DB_URL and that the database is reachable"
        )
    except (
        ConfigError,
        DatasetLayoutError,
        ImageError,
        StoreError,
        OSError,
        ValueError,
    ) as err:
        err_console.print(f"[red]error:[/red] {err}")
    return 2
