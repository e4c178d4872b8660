"""Commands about datasets: ``synth`` (the phantoms), ``inspect`` and ``intensity-reference``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich.table import Table

from pipeline.cli.common import console


def cmd_synth(args: argparse.Namespace) -> int:
    from pipeline.data import synth

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
    from pipeline.data import index_cache, scan

    if len(args.data) > 1:
        return _inspect_sources(args)
    (folder,) = args.data
    index = index_cache.load_index(folder, label_map=_label_map(args.label_map), progress=True)
    summary = scan.summarise(index)
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


def _inspect_sources(args: argparse.Namespace) -> int:
    """Several folders: images per source and class, and near-duplicates across sources."""
    from pipeline.preprocessing import sources

    if args.label_map or args.lungs:
        raise ValueError("--label-map and --lungs take one folder; inspect the folders one by one")
    index = sources.load_index(args.data, progress=True)
    per_source = sources.source_counts(index)
    held_by: dict[str, set[int]] = {}
    for group, source in zip(index.groups, index.sources.tolist(), strict=True):
        held_by.setdefault(group, set()).add(source)
    spanning = {group for group, held in held_by.items() if len(held) > 1}
    if args.json:
        out = {"fingerprint": index.fingerprint, "sources": per_source}
        out["cross_source_duplicate_groups"] = sorted(spanning)
        print(json.dumps(out, indent=1))
        return 0
    table = Table("source", "layout", "normal", "TB", "bad files", title=f"{index.root}")
    for row, part in zip(per_source, index.parts, strict=True):
        table.add_row(
            row["source"], part.layout, str(row["normal"]), str(row["tb"]), str(len(part.bad_files))
        )
    console.print(table)
    console.print(
        f"radiographs in more than one source: {len(spanning)} (kept on one side of every "
        f"split); fingerprint {index.fingerprint}"
    )
    return 0


def cmd_intensity_reference(args: argparse.Namespace) -> int:
    from pipeline.data import index_cache
    from pipeline.imaging import decode
    from pipeline.preprocessing import intensity

    index = index_cache.load_index(args.data, progress=True)
    pictures = [decode.resize(decode.read_image(p), args.size) for p in index.paths]
    out = Path(args.out) if args.out else intensity.REFERENCE
    command = f"python -m pipeline intensity-reference --data {args.data} --size {args.size}"
    card = intensity.write_reference(pictures, source=args.data, command=command, path=out)
    q = card["quantiles"]
    console.print(
        f"wrote {out}: {card['images']} images of {index.root}; grey levels at the 5th / 50th / "
        f"95th percentile {q[13]:.0f} / {q[128]:.0f} / {q[242]:.0f}"
    )
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
