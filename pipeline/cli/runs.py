"""Commands about runs: ``train``, ``runs``, ``show``, ``evaluate``, ``predict``, ``explain``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Column, Table

from pipeline import formats
from pipeline.cli.common import (
    build_config,
    console,
    err_console,
    fmt,
    metrics_table,
    open_store,
)


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.training import callbacks, train

    cfg = build_config(args)
    store = open_store()
    where = " + ".join(cfg.data.sources)
    console.print(f"training [bold]{cfg.name}[/bold] on {where} ({cfg.data.image_size} px)")
    try:
        run = train.run(cfg, store, progress=True)
    except callbacks.RunCancelled as cancelled:
        err_console.print(f"run {cancelled} was cancelled; its epochs so far are kept in the store")
        return 1
    console.print(metrics_table(run))
    if args.loso:
        return _loso(store, run.id, reuse=True)
    return 0


def cmd_loso(args: argparse.Namespace) -> int:
    return _loso(open_store(), args.run_id, reuse=not args.retrain)


def _loso(store, run_id: str, *, reuse: bool) -> int:  # noqa: ANN001 - RunStore
    from pipeline.runs import loso
    from pipeline.training import callbacks, train

    run = store.get_run(run_id)
    console.print(
        f"leave-one-source-out for run {run.id} ({run.name}): each source held out in turn, "
        "trained on the others"
    )

    def fit(cfg, notes):  # noqa: ANN001
        console.print(f"training [bold]{cfg.name}[/bold] on {' + '.join(cfg.data.sources)}")
        return train.run(cfg, store, progress=True, notes=notes)

    try:
        run, done = loso.leave_one_source_out(store, run.id, fit, reuse=reuse)
    except callbacks.RunCancelled as cancelled:
        err_console.print(
            f"fold run {cancelled} was cancelled; nothing was added to run {run.id} (finished "
            "folds are kept and reused next time)"
        )
        return 1
    console.print(loso_table(run))
    reused = [r.id for _, r, was in done if was]
    if reused:
        console.print(f"reused fold runs already in the store: {', '.join(reused)}")
    return 0


def loso_table(run) -> Table:  # noqa: ANN001 - db.Run
    """The run's leave-one-source-out figures: one row per held-out source, then the mean."""
    from pipeline.runs.loso import KEY

    figures = run.metrics[KEY]
    table = Table(
        "held out (never trained on)",
        "images",
        "AUC (95% CI)",
        "sensitivity (95% CI)",
        "specificity (95% CI)",
        "fold run",
        "encoder saw its films",
        title=f"run {run.id} on hospitals it did not train on (leave-one-source-out)",
    )
    for name, f in figures["folds"].items():
        table.add_row(
            name,
            fmt(f["n"]),
            formats.with_interval(f["auc"], f["auc_ci"]),
            formats.with_interval(f["sensitivity"], f["sensitivity_ci"]),
            formats.with_interval(f["specificity"], f["specificity_ci"]),
            f["run_id"],
            fmt(f.get("encoder_saw_held_out"))
            if f.get("encoder_saw_held_out") is not None
            else "—",
        )
    table.add_row(
        "mean (worst)",
        "",
        f"{fmt(figures['auc_mean'])} ({fmt(figures['auc_worst'])})",
        f"{fmt(figures['sensitivity_mean'])} ({fmt(figures['sensitivity_worst'])})",
        "",
        "",
        "",
    )
    return table


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store()
    kind = None if args.kind == "all" else args.kind
    runs = store.list_runs(status=args.status, limit=args.limit, kind=kind)
    hidden = sum(r.archived_at is not None for r in runs)
    if not args.archived:
        runs = [r for r in runs if r.archived_at is None]
    if not runs and hidden:
        console.print(f"{hidden} archived run(s) hidden; --archived lists them")
        return 0
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
        "tags",
        caption=f"{hidden} archived run(s) hidden; --archived lists them"
        if hidden and not args.archived
        else None,
    )
    for r in runs:
        ext = store.external_evals(r.id)
        table.add_row(
            r.id,
            r.name,
            r.status,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            fmt(r.config.get("data", {}).get("image_size")),
            fmt(r.auc),
            fmt(r.sensitivity),
            fmt(r.specificity),
            fmt(r.f1),
            fmt(r.who_met),
            fmt(ext[0].auc) if ext else "—",
            formats.duration(r.duration_s),
            ", ".join(r.tags) + (" (archived)" if r.archived_at else ""),
        )
    console.print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = open_store()
    run = store.get_run(args.run_id)
    console.print(metrics_table(run))
    epochs = store.epochs(run.id)
    if epochs:
        table = Table(
            "epoch", "loss", "val loss", "acc", "val acc", "AUC", "val AUC", "s", title="epochs"
        )
        for e in epochs:
            table.add_row(
                str(e.epoch),
                *(
                    fmt(v)
                    for v in (e.loss, e.val_loss, e.accuracy, e.val_accuracy, e.auc, e.val_auc)
                ),
                fmt(e.seconds, 1),
            )
        console.print(table)
    for ev in store.external_evals(run.id):
        console.print(
            f"external: {ev.dataset_path} · n={ev.n_images} · "
            f"AUC {formats.with_interval(ev.auc, [ev.auc_lo, ev.auc_hi])} · "
            f"sens {fmt(ev.sensitivity)} · spec {fmt(ev.specificity)}"
        )
    if run.error:
        console.print("[red]failed:[/red]\n" + run.error)
    if args.config:
        console.print_json(json.dumps(run.config))
    return 0


# ----------------------------------------------------------------------------- evaluate, predict
def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.runs.external import evaluate_external

    store = open_store()
    ev = evaluate_external(store, args.run_id, args.data, progress=True)
    run = store.get_run(args.run_id)
    table = Table("", "internal test", "external", title=f"run {run.id} on {ev.dataset_path}")
    table.add_row("images", fmt(run.metrics.get("n")), fmt(ev.n_images))
    table.add_row(
        "AUC",
        formats.with_interval(run.auc, run.metrics.get("auc_ci")),
        formats.with_interval(ev.auc, [ev.auc_lo, ev.auc_hi]),
    )
    table.add_row("sensitivity", fmt(run.sensitivity), fmt(ev.sensitivity))
    table.add_row("specificity", fmt(run.specificity), fmt(ev.specificity))
    table.add_row("F1", fmt(run.f1), fmt(ev.f1))
    table.add_row("accuracy", fmt(run.accuracy), fmt(ev.accuracy))
    console.print(table)
    console.print(
        f"threshold {run.threshold:.4f} from the run's validation split, applied unchanged"
    )
    one_class = one_class_note(ev.metrics)
    if one_class:
        console.print(one_class)
    return 0


def one_class_note(metrics: dict) -> str | None:
    """What a one-class external folder can and cannot tell, or None for two classes."""
    if not metrics.get("n_neg"):
        return "TB images only: sensitivity is measured; AUC and specificity need normal images too"
    if not metrics.get("n_pos"):
        return "normal images only: specificity is measured; AUC and sensitivity need TB images too"
    return None


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.serving.assess import REFUSED, Assessor
    from pipeline.serving.predictor import Predictor

    store = open_store()
    predictor = Predictor.from_store(store, args.run_id)
    assessor = Assessor(predictor, store.get_run(args.run_id).id)
    table = Table(
        Column("image", min_width=max(len(str(p)) for p in args.images), no_wrap=True),
        "P(TB)",
        Column("verdict", no_wrap=True),
        "why",
        title=f"threshold {predictor.threshold:.4f}",
    )
    failed = 0
    # The public app's assessment: the same verdicts, and "Cannot assess" for the same images.
    for path in args.images:
        a = assessor.screen(Path(path))
        failed += a.status == REFUSED
        prob = "—" if a.probability is None else f"{a.probability:.3f}"
        why = f"[red]cannot read:[/red] {a.reason}" if a.status == REFUSED else a.reason
        table.add_row(str(path), prob, a.verdict, why)
    console.print(table)
    return 2 if failed else 0


# -------------------------------------------------------------------------------------- explain
def cmd_explain(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from pipeline.explain import heatmaps
    from pipeline.explain.faithfulness import energy_inside
    from pipeline.lungs.segmenter import SegmenterError
    from pipeline.serving.predictor import Predictor

    predictor = Predictor.from_store(open_store(), args.run_id)
    methods = heatmaps.METHODS if args.method == "all" else (args.method,)
    try:
        prediction = predictor.predict(args.image, with_lungs=True)
    except SegmenterError as err:  # a run with roi=full still explains without the lungs
        err_console.print(f"[yellow]no in-lung share:[/yellow] {err}")
        prediction = predictor.predict(args.image)
    options = {"lime": {"num_samples": args.lime_samples}, "shap": {"max_evals": args.shap_evals}}
    # Every method runs before anything is written: a failure leaves no half-filled folder.
    results = [
        heatmaps.explain(predictor.model, prediction.image, m, **options.get(m, {}))
        for m in methods
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
    arrays = {result.method: result.heatmap for result in results}
    np.savez_compressed(out / f"{stem}-heatmaps.npz", **arrays)
    console.print(table)
    console.print(
        f"P(TB) {prediction.probability:.3f} — {prediction.verdict} "
        f"(threshold {prediction.threshold:.4f}); model input {original}, "
        f"raw heatmaps {out / f'{stem}-heatmaps.npz'}"
    )
    return 0
