"""Shared by the command modules: the consoles, number formatting, the store, run configs
from flags."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline import formats
from pipeline.config import absolute_paths, parse_overrides

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# soft_wrap: messages stay on one line when piped, so they can be grepped and copied whole.
# Tables get at least 120 columns when piped (rich would assume 80 and squash them).
_WIDTH = max(shutil.get_terminal_size((160, 24)).columns, 120)
console = Console(soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, soft_wrap=True, width=_WIDTH)


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: yes/no for a flag, a number as :func:`pipeline.formats.number` writes it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or isinstance(value, float):
        return formats.number(value, digits)
    return str(value)


def open_store():  # noqa: ANN201 - RunStore (imported lazily)
    from db import RunStore

    return RunStore()


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config changes the user typed: named flags, then --set FIELD=VALUE."""
    folders = args.data or []
    for folder in folders:
        if not Path(folder).is_dir():
            raise ValueError(f"--data {folder}: no such folder; pass the dataset folder")
    for folder in args.external or []:
        if not Path(folder).is_dir():
            raise ValueError(f"--external {folder}: no such folder; pass a dataset folder")
    paths = absolute_paths(folders)
    flags = {
        "data.path": (paths[0] if len(paths) == 1 else paths) if paths else None,
        "data.external": absolute_paths(args.external) if args.external else None,
        "data.image_size": args.size,
        "data.enhancement": args.enhancement,
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "seed": args.seed,
        "name": args.name,
    }
    changes = {k: v for k, v in flags.items() if v is not None}
    changes.update(parse_overrides(args.set or []))
    return changes


def build_config(args: argparse.Namespace):  # noqa: ANN201 - RunConfig
    """The run config from --config or --preset, then the flags, then --set overrides."""
    from pipeline.config import load_config_file, override, preset
    from pipeline.data import catalog

    cfg = load_config_file(args.config) if args.config else preset(args.preset)
    cfg = override(cfg, config_overrides(args))
    # A preset's own sources (``screening``) are named folders under the data roots.
    roots = catalog.data_roots()
    named = [f for f in cfg.data.sources if os.sep not in f and not Path(f).is_dir()]
    missing = [f for f in named if not any((root / f).is_dir() for root in roots)]
    if missing:
        where = ", ".join(str(root) for root in roots) or "none configured"
        raise ValueError(
            f"data.path: cannot find {', '.join(missing)} in the working directory or under the "
            f"data roots ({where}); put the dataset folders under a data root, set "
            "TBXRAY_DATA_DIRS to the folder that holds them, or pass --data"
        )
    return override(
        cfg,
        {
            "data.path": absolute_paths(cfg.data.path, roots),
            "data.external": absolute_paths(list(cfg.data.external), roots),
        },
    )


def metrics_table(run: Any) -> Table:
    table = Table("metric", "test (95% CI)", title=f"run {run.id} · {run.name} · {run.status}")
    m = run.metrics
    table.add_row("AUC", formats.with_interval(run.auc, m.get("auc_ci")))
    table.add_row("sensitivity", formats.with_interval(run.sensitivity, m.get("sensitivity_ci")))
    table.add_row("specificity", formats.with_interval(run.specificity, m.get("specificity_ci")))
    table.add_row("F1", fmt(run.f1))
    table.add_row("accuracy", fmt(run.accuracy))
    table.add_row(
        "threshold (chosen on validation)", f"{fmt(run.threshold, 4)} ({m.get('threshold_rule')})"
    )
    table.add_row("WHO target (sens ≥ 0.90, spec ≥ 0.70)", "met" if run.who_met else "not met")
    confusion = m.get("confusion", {})
    table.add_row(
        "confusion (tn fp / fn tp)",
        "{tn} {fp} / {fn} {tp}".format(**confusion) if confusion else "—",
    )
    by_source = m.get("val", {}).get("by_source") or {}
    if len(by_source) > 1:
        table.add_row(
            "validation AUC by source",
            ", ".join(f"{name} {fmt(auc)}" for name, auc in by_source.items()),
        )
    loso = m.get("leave_one_source_out")
    if loso:
        table.add_row(
            "on hospitals it did not train on (leave-one-source-out)",
            f"AUC mean {fmt(loso['auc_mean'])}, worst {fmt(loso['auc_worst'])}; "
            f"sensitivity worst {fmt(loso['sensitivity_worst'])}",
        )
    table.add_row("epochs trained", fmt(m.get("epochs_trained")))
    table.add_row("duration", formats.duration(run.duration_s))
    table.add_row("artifacts", run.artifacts_dir or "—")
    return table


def config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default="baseline",
        help="smoke | baseline | screening | baseline-v1 (default baseline); screening trains "
        "on tb-cxr, nlm-224 and montgomery found under the data roots unless --data is given",
    )
    p.add_argument("--config", help="a config.json (e.g. from an earlier run) instead of a preset")
    p.add_argument(
        "--data",
        nargs="+",
        action="extend",
        metavar="FOLDER",
        help="dataset folder (default: the preset's, data/phantoms); several folders, each in "
        "its own layout, train together with each image keeping its source: --data A B "
        "(or --data A --data B)",
    )
    p.add_argument(
        "--external",
        action="append",
        metavar="FOLDER",
        help="a dataset folder from another hospital to evaluate the run on after training "
        "(repeatable; a folder of TB images alone gives sensitivity)",
    )
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
