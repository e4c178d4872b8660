"""``python -m pipeline pretrain``: self-supervised pretraining of the classifier's encoder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.common import console, err_console, open_store


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``pretrain`` to the main CLI's subparsers."""
    help_ = (
        "pretrain the classifier's conv encoder on unlabelled chest X-rays (VICReg); the "
        "encoder then starts a classifier with --set model.init=..."
    )
    p = sub.add_parser("pretrain", help=help_, description=help_)
    p.set_defaults(fn=cmd_pretrain)
    p.add_argument(
        "--data",
        nargs="+",
        action="extend",
        metavar="FOLDER",
        help="image folders, labels ignored (default: cxr-unlabelled, tb-cxr, nlm-224, "
        "montgomery and lung-masks under the data roots)",
    )
    p.add_argument(
        "--probe",
        nargs="+",
        action="extend",
        metavar="FOLDER",
        help="labelled folders for the linear probe on the card (default: the labelled ones "
        "among --data)",
    )
    p.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="NAME",
        help="leave a collection out (repeatable): its default folder, and its films in "
        "folders that mix several (lung-masks' NAME-* files), e.g. --without montgomery for an "
        "encoder to test leave-one-source-out on Montgomery honestly",
    )
    p.add_argument("--preset", default="baseline", help="the classifier it is made for (baseline)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="data.* / model.* change")
    p.add_argument("--epochs", type=int, default=20, help="default 20")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--view-side", type=int, default=96, help="side of each view (default 96)")
    p.add_argument("--max-images", type=int, help="at most this many images, drawn at random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="pretrain", help="run name (default pretrain)")
    p.add_argument(
        "--install", metavar="NAME", help="also ship the encoder as model.init=NAME (package)"
    )


def cmd_pretrain(args: argparse.Namespace) -> int:
    from pipeline.config import override, parse_overrides, preset
    from pipeline.data.layouts import DatasetLayoutError
    from pipeline.data.scan import scan
    from pipeline.pretraining import images, pretrain
    from pipeline.training.callbacks import RunCancelled

    cfg = override(preset(args.preset), parse_overrides(args.set or []))
    without = tuple(args.without)
    folders = [Path(f) for f in args.data] if args.data else images.default_folders(without=without)
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"--data {folder}: no such folder; pass a folder of X-rays")
    probe = args.probe
    if probe is None:
        probe = []
        for folder in folders:
            try:
                scan(folder)
            except DatasetLayoutError:
                continue
            probe.append(str(folder.resolve()))
    options = pretrain.Options(
        folders=tuple(str(f.resolve()) for f in folders),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        view_side=args.view_side,
        max_images=args.max_images,
        seed=args.seed,
        name=args.name,
        probe=tuple(str(Path(f).resolve()) for f in probe),
        without=without,
    )
    names = ", ".join(f.name for f in folders)
    console.print(f"pretraining [bold]{args.name}[/bold] ({pretrain.METHOD}) on {names}")
    command = "python -m pipeline " + " ".join(sys.argv[1:])
    try:
        run = pretrain.run(cfg, options, open_store(), progress=True, command=command)
    except RunCancelled as cancelled:
        err_console.print(f"run {cancelled} was cancelled; the same command resumes it")
        return 1
    except KeyboardInterrupt:
        err_console.print(
            "pretraining stopped; its last epoch is checkpointed: the same command resumes it"
        )
        return 130
    card = run.metrics["pretrain"]
    console.print(
        f"run {run.id}: {card['n_images']:,} images, {card['epochs']} epochs in "
        f"{card['seconds']:.0f} s on {card['device']}; encoder: {run.artifacts_dir}/encoder.keras"
    )
    for name, p in card["linear_probe"].items():
        console.print(
            f"  linear probe on {name}: AUC {p['auc']:.3f} (same encoder untrained: "
            f"{p['auc_scratch']:.3f}, n={p['n']})"
        )
    if args.install:
        target = pretrain.install(run, args.install)
        console.print(f"installed as model.init={args.install} ({target})")
    else:
        console.print(f"use it: --set model.init={run.artifacts_dir}/encoder.keras")
    return 0
