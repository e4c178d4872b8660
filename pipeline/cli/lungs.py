"""``python -m pipeline lungs train | eval | predict | view-train``: lung segmenter and view check.

Registered on the main parser by :func:`add_parser`; errors are :class:`ValueError` subclasses
(:class:`~pipeline.lungs.segmenter.SegmenterError`, :class:`~pipeline.lungs.data.LungDataError`,
:class:`~pipeline.imaging.decoded.ImageError`), which the main CLI prints as one line.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

# As in pipeline.cli.common: one line per message, and tables at least 120 columns wide when piped.
console = Console(soft_wrap=True, width=max(shutil.get_terminal_size((160, 24)).columns, 120))


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.lungs import segmenter
    from pipeline.lungs.data import load_pairs
    from pipeline.lungs.train import recipe_named, train_and_card

    recipe_named(args.recipe)  # a wrong name is refused before the pairs are read
    pairs = load_pairs(args.data, args.size)
    console.print(f"{len(pairs.names)} pairs from {args.data} at {args.size} px")
    # Every option spelled out, defaults included: the card's command retrains the same model.
    command = "python -m pipeline lungs train " + shlex.join(
        [
            *("--data", args.data, "--out", args.out, "--epochs", str(args.epochs)),
            *("--holdout-epochs", str(args.holdout_epochs), "--size", str(args.size)),
            *("--base", str(args.base), "--seed", str(args.seed)),
            *("--recipe", args.recipe),
            *(["--install"] if args.install else []),
        ]
    )
    card = train_and_card(
        pairs,
        Path(args.out),
        epochs=args.epochs,
        holdout_epochs=args.holdout_epochs,
        seed=args.seed,
        base=args.base,
        command=command,
        recipe=args.recipe,
        log=console.print,
    )
    table = Table("evaluation", "source", "pairs", "Dice", "IoU", "train s")
    for s, r in card["held_out_source"].items():
        table.add_row(
            "held out",
            s,
            str(r["n"]),
            f"{r['dice']:.4f}",
            f"{r['iou']:.4f}",
            f"{r['train_seconds']:.0f}",
        )
    test = card["test_part"]
    for s in test["dice"]:
        table.add_row(
            "final, test part",
            s,
            str(test["n"][s]),
            f"{test['dice'][s]:.4f}",
            f"{test['iou'][s]:.4f}",
            f"{card['train_seconds']:.0f}" if s == "all" else "",
        )
    console.print(table)
    console.print(f"model and card in {args.out} (total {card['total_seconds']:.0f} s)")
    if args.install:
        segmenter.WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(args.out) / "lungs.keras", segmenter.WEIGHTS)
        shutil.copyfile(Path(args.out) / "lungs.json", segmenter.CARD)
        console.print(f"installed as {segmenter.WEIGHTS} (and its card)")
    return 0


def cmd_view_train(args: argparse.Namespace) -> int:
    from pipeline.lungs import view
    from pipeline.lungs.data import load_pairs, with_phantoms
    from pipeline.lungs.view_train import train_and_card

    pairs = with_phantoms(load_pairs(args.data, args.size), args.phantoms, args.seed)
    console.print(
        f"{len(pairs.names) - args.phantoms} upright X-rays from {args.data} and "
        f"{args.phantoms} phantoms at {args.size} px"
    )
    command = "python -m pipeline lungs view-train " + shlex.join(
        [
            *("--data", args.data, "--out", args.out, "--epochs", str(args.epochs)),
            *("--holdout-epochs", str(args.holdout_epochs), "--size", str(args.size)),
            *("--base", str(args.base), "--seed", str(args.seed)),
            *("--phantoms", str(args.phantoms)),
            *(x for folder in args.check for x in ("--check", folder)),
            *(["--install"] if args.install else []),
        ]
    )
    card = train_and_card(
        pairs,
        Path(args.out),
        epochs=args.epochs,
        holdout_epochs=args.holdout_epochs,
        seed=args.seed,
        base=args.base,
        checks=args.check,
        command=command,
        log=console.print,
    )
    table = Table("never seen in training", "X-rays", "upright accepted", "turned/cropped refused")
    rows = [(f"held-out source {s}", r) for s, r in card["held_out_source"].items()]
    rows += list(card["unseen"].items())
    for name, r in rows:
        table.add_row(
            name,
            str(r["n_images"]),
            f"{r['accepted_upright']:.1%}",
            f"{r['refused_altered']:.1%}",
        )
    console.print(table)
    console.print(f"model and card in {args.out} (total {card['total_seconds']:.0f} s)")
    if args.install:
        shutil.copyfile(Path(args.out) / "view.keras", view.VIEW_WEIGHTS)
        shutil.copyfile(Path(args.out) / "view.json", view.VIEW_CARD)
        console.print(f"installed as {view.VIEW_WEIGHTS} (and its card)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.lungs.data import load_pairs
    from pipeline.lungs.segmenter import WEIGHTS, Segmenter
    from pipeline.lungs.train import score

    seg = Segmenter(args.weights or WEIGHTS)
    pairs = load_pairs(args.data, seg.size)
    card = seg.card
    held_out = card.get("held_out_source", {})
    if held_out:
        table = Table(
            "held-out source",
            "pairs",
            "Dice",
            "IoU",
            title="Leave-one-source-out, from the model card: each source scored by a "
            "segmenter trained without it (what to expect at a hospital it never saw)",
        )
        for s, r in held_out.items():
            table.add_row(s, str(r["n"]), f"{r['dice']:.4f}", f"{r['iou']:.4f}")
        mean = sum(r["dice"] for r in held_out.values()) / len(held_out)
        table.add_row("mean of sources", "", f"{mean:.4f}", "")
        console.print(table)
    trained_here = card.get("training_data", {}).get("manifest_sha256") == pairs.manifest_sha256
    if trained_here:
        # Only the test part of the training folder was never seen: score that alone.
        names = set(card.get("test_part", {}).get("names", []))
        pairs = pairs.subset(np.array([n in names for n in pairs.names]))
        title = f"{seg.weights}: its test part of {args.data} (held out of its training)"
    else:
        title = f"{seg.weights} on {args.data}"
    result = score(seg.model, pairs, seg.standardisation)
    table = Table("source", "pairs", "Dice", "IoU", title=title)
    for s in result.dice:
        table.add_row(s, str(result.n[s]), f"{result.dice[s]:.4f}", f"{result.iou[s]:.4f}")
    console.print(table)
    if not trained_here and card.get("training_data"):
        console.print(
            "note: this folder is not the model's training folder; if it shares images with "
            "it, these scores are optimistic (see the card's training data)"
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from pipeline.imaging.decode import read_image
    from pipeline.imaging.decoded import ImageError
    from pipeline.lungs.masks import draw_outline, plausibility
    from pipeline.lungs.segmenter import WEIGHTS, Segmenter

    seg = Segmenter(args.weights or WEIGHTS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = Table("image", "lung share", "quality", "plausible", "ms", "mask", "overlay")
    failed = 0
    for path in args.images:
        start = time.perf_counter()
        # One unreadable file must not hide the results of the others.
        try:
            image = read_image(path)
        except ImageError as err:
            failed += 1
            table.add_row(str(path), "—", "", f"[red]cannot read:[/red] {err.reason}", "", "", "")
            continue
        mask, quality = seg.find(image)
        ms = 1000 * (time.perf_counter() - start)
        stem = Path(path).stem
        mask_file, overlay_file = out / f"{stem}-lungs.png", out / f"{stem}-outline.png"
        cv2.imwrite(str(mask_file), np.where(mask, np.uint8(255), np.uint8(0)))
        rgb = draw_outline(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB), mask)
        cv2.imwrite(str(overlay_file), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        p = plausibility(mask, quality)
        verdict = "yes" if p.ok else "[red]no[/red]: " + "; ".join(p.reasons)
        table.add_row(
            str(path),
            f"{p.area:.1%}",
            f"{quality.score:.2f}",
            verdict,
            f"{ms:.0f}",
            str(mask_file),
            str(overlay_file),
        )
    console.print(table)
    return 2 if failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``lungs`` and its subcommands to the main CLI's subparsers."""
    lungs = sub.add_parser(
        "lungs",
        help="the lung-field segmenter: train, eval, predict; the view check: view-train",
        description="The lung-field segmenter shipped in pipeline/lungs/weights/.",
    )
    inner = lungs.add_subparsers(dest="lungs_command", required=True, metavar="SUBCOMMAND")

    p = inner.add_parser("train", help="train it, scoring one held-out source at a time")
    p.set_defaults(fn=cmd_train)
    p.add_argument("--data", required=True, help="folder of image / mask pairs (lung-masks)")
    p.add_argument("--out", default="runs/lungs", help="where the model and card go")
    p.add_argument("--epochs", type=int, default=40, help="final model epochs (default 40)")
    p.add_argument(
        "--holdout-epochs",
        type=int,
        default=15,
        help="epochs of each held-out-source training; 0 skips them (default 15)",
    )
    p.add_argument("--size", type=int, default=256, help="input side in pixels (default 256)")
    p.add_argument("--base", type=int, default=8, help="U-Net filters at full size (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--recipe",
        default="strong",
        help="what training does to a film beyond jitter: basic (brightness, contrast, blur), "
        "strong (also gamma, noise, resampling, JPEG; the default) or equalised (strong, and "
        "each input's histogram equalised)",
    )
    p.add_argument("--install", action="store_true", help="replace the shipped model with it")

    p = inner.add_parser(
        "view-train",
        help="train the view check (upright, turned, upside down, part of an X-ray)",
        description="Trains the view CNN on upright X-rays (no labels: it turns and crops "
        "them), scores it on each held-out source and on --check folders it never saw.",
    )
    p.set_defaults(fn=cmd_view_train)
    p.add_argument("--data", required=True, help="folder of upright X-rays (lung-masks layout)")
    p.add_argument("--out", default="runs/view", help="where the model and card go")
    p.add_argument("--epochs", type=int, default=30, help="final model epochs (default 30)")
    p.add_argument(
        "--holdout-epochs",
        type=int,
        default=15,
        help="epochs of each held-out-source training; 0 skips them (default 15)",
    )
    p.add_argument("--size", type=int, default=128, help="side the images are read at (128)")
    p.add_argument("--base", type=int, default=16, help="filters of the first block (16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--phantoms",
        type=int,
        default=150,
        help="phantoms rendered and added, so the demo's synthetic X-rays pass (default 150)",
    )
    p.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a folder of upright X-rays never used in training, to score it on (repeatable)",
    )
    p.add_argument("--install", action="store_true", help="replace the shipped model with it")

    p = inner.add_parser("eval", help="Dice / IoU of the shipped model on a folder with masks")
    p.set_defaults(fn=cmd_eval)
    p.add_argument("--data", required=True, help="folder of image / mask pairs")
    p.add_argument("--weights", default=None, help="a .keras file (default: the shipped model)")

    p = inner.add_parser("predict", help="lung mask and outline overlay of X-ray images")
    p.set_defaults(fn=cmd_predict)
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG; 8/16-bit, gray or RGB)")
    p.add_argument("--out", default="lungs", help="output folder (default lungs/)")
    p.add_argument("--weights", default=None, help="a .keras file (default: the shipped model)")
