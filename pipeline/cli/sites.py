"""Commands about serving: site calibration (``calibrate``, ``calibrations``) and ``promote``."""

from __future__ import annotations

import argparse
import getpass

from rich.table import Table

from pipeline import formats
from pipeline.cli.common import console, fmt, open_store
from pipeline.config import make_config
from pipeline.data import synth


def cmd_adapt(args: argparse.Namespace) -> int:
    from pipeline.cli.common import metrics_table
    from pipeline.runs.adapt import adapt

    store = open_store()
    run = adapt(store, args.run_id, args.data, progress=True)
    note = run.metrics["adaptation"]
    console.print(
        f"run {run.id} ({run.name}): run {note['parent']} with {note['layers']} batch-norm "
        f"layers re-estimated on {note['n_images']:,} X-rays of {note['site']}"
    )
    console.print(metrics_table(run))
    for e in store.external_evals(run.id):
        console.print(
            f"external {e.dataset_path}: AUC {fmt(e.auc)}, sensitivity {fmt(e.sensitivity)}"
        )
    console.print(
        f"choose the site's threshold on it: python -m pipeline calibrate {run.id} --data "
        "SITE_LABELLED_FOLDER --site NAME --prevalence P"
    )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pipeline.runs.external import calibrate_for_site

    store = open_store()
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
            formats.with_interval(part["sensitivity"], part["sensitivity_ci"]),
            formats.with_interval(part["specificity"], part["specificity_ci"]),
            formats.with_interval(part["auc"], part["auc_ci"]),
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
            fmt(r["ppv"]),
            fmt(r["npv"]),
            f"{r['referred_per_1000']:.0f}",
            f"{r['tb_found_per_1000']:.1f}",
            f"{r['tb_missed_per_1000']:.1f}",
        )
    return table


def cmd_calibrations(args: argparse.Namespace) -> int:
    store = open_store()
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
            formats.with_interval(c.sensitivity, [c.sensitivity_lo, c.sensitivity_hi]),
            formats.with_interval(c.specificity, [c.specificity_lo, c.specificity_hi]),
            c.dataset_path,
        )
    console.print(table)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from db import RunNotFound

    store = open_store()
    try:
        run = store.get_run(args.run_id)
    except RunNotFound as err:
        if err.matches:
            raise  # an id prefix of several runs: its message lists them
        # A run's name also picks it: the newest succeeded run of that name, said so below.
        named = [r for r in store.list_runs(status="succeeded") if r.name == args.run_id]
        if not named:
            raise RunNotFound(
                f"no run with id, id prefix or name '{args.run_id}' (a name picks its newest "
                "succeeded run); `python -m pipeline runs` lists them",
                args.run_id,
            ) from None
        run = named[0]
        console.print(f"'{args.run_id}' is the name of run {run.id}, its newest succeeded run")
    by = args.by or getpass.getuser()
    promotion = store.promote(
        run.id, note=args.note, calibration_id=args.calibration, promoted_by=by
    )
    if promotion.calibration_id is None:
        how = f"at its validated threshold {run.threshold:.4f}"
    else:
        cal = store.get_calibration(promotion.calibration_id)
        how = f"at the threshold {cal.threshold:.4f} calibrated for '{cal.site}'"
    console.print(f"the public app now serves run {run.id} ({run.name}) {how}; promoted by {by}")
    external = store.external_evals(run.id)
    if not external:
        console.print(
            "[yellow]note:[/yellow] this run has no external evaluation; the public model card "
            "says its results on other hospitals' X-rays are not measured"
        )
    if any(synth.is_synthetic(f) for f in make_config(run.config).data.sources):
        console.print(
            "[yellow]note:[/yellow] trained on synthetic phantoms: the public app labels it a "
            "demonstration that must not be used on real X-rays"
        )
    return 0
