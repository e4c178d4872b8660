"""Image statistics for the Dataset page: a class-balanced sample, mean images, intensity
histograms under each enhancement, a check for bright boxes along the image border, and the lung
fields the shipped segmenter finds.

Numpy only, over ``pipeline``'s decoding, enhancements and box detector. Everything works on
a seeded sample of small gray thumbnails, so a dataset of thousands of radiographs is described
in seconds and the same sample is drawn on every visit.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.data.layouts import CLASS_NAMES
from pipeline.data.scan import DatasetIndex, ImageRecord
from pipeline.imaging import decode
from pipeline.preprocessing import artefacts, enhance

THUMB = 128
# Each edge, as the number of quarter turns (np.rot90) that brings it to the bottom, where
# pipeline.preprocessing.artefacts looks for anonymisation boxes.
EDGES: dict[str, int] = {"bottom": 0, "left": 1, "top": 2, "right": 3}


@dataclass(frozen=True)
class Sample:
    """Thumbnails of a class-balanced sample: ``thumbs[cls]`` is uint8 (N, THUMB, THUMB) and
    ``records[cls]`` the matching records, for ``cls`` in ``"normal"`` and ``"tb"``."""

    thumbs: dict[str, np.ndarray]
    records: dict[str, list[ImageRecord]]


def sample(index: DatasetIndex, per_class: int = 150, seed: int = 0) -> Sample:
    """Up to ``per_class`` images of each class, drawn with ``seed``, decoded as thumbnails."""
    rng = np.random.default_rng(seed)
    picked: dict[str, list[ImageRecord]] = {}
    for label, name in CLASS_NAMES.items():
        members = [r for r in index.records if r.label == label]
        order = rng.permutation(len(members))[:per_class]
        picked[name] = [members[i] for i in sorted(order)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        thumbs = {
            name: np.stack(list(pool.map(thumbnail, [r.path for r in records])))
            if records
            else np.zeros((0, THUMB, THUMB), np.uint8)
            for name, records in picked.items()
        }
    return Sample(thumbs=thumbs, records=picked)


def thumbnail(path: str, size: int = THUMB) -> np.ndarray:
    """A file as a ``size`` × ``size`` uint8 gray image (the scan already vetted it)."""
    return decode.resize(decode.read_image(path), size)


def mean_images(s: Sample) -> dict[str, np.ndarray]:
    """The pixel-wise mean of each class's thumbnails, float32 in 0..255."""
    return {name: t.astype(np.float32).mean(axis=0) for name, t in s.thumbs.items() if len(t)}


def intensity_histograms(s: Sample) -> dict[str, dict[str, np.ndarray]]:
    """``{enhancement: {class: 256-bin density}}`` of the sample after each enhancement."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in enhance.ENHANCEMENTS:
        out[name] = {}
        for cls, thumbs in s.thumbs.items():
            counts = np.zeros(256, np.float64)
            for img in thumbs:
                counts += np.bincount(enhance.enhance(img, name).ravel(), minlength=256)
            out[name][cls] = counts / max(counts.sum(), 1.0)
    return out


def bright_boxes(img: np.ndarray) -> list[str]:
    """The edges (of :data:`EDGES`) along which ``img`` carries a solid near-white box.

    :func:`pipeline.preprocessing.artefacts.bottom_boxes` looks at the bottom band, where the TB
    Chest X-ray Database's anonymisation boxes sit; the other edges are checked by turning the
    image.
    """
    return [edge for edge, turns in EDGES.items() if artefacts.bottom_boxes(np.rot90(img, turns))]


def border_artefacts(s: Sample) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """Share of each class's sampled images with a bright box along each edge (columns
    ``edge``, ``class``, ``share``, ``images``), and the sample indices of the flagged images
    per class, for showing examples."""
    rows = []
    flagged: dict[str, list[int]] = {}
    for cls, thumbs in s.thumbs.items():
        edges = [bright_boxes(img) for img in thumbs]
        flagged[cls] = [i for i, e in enumerate(edges) if e]
        for edge in EDGES:
            hits = sum(edge in e for e in edges)
            rows.append(
                {
                    "edge": edge,
                    "class": cls,
                    "share": hits / len(thumbs) if len(thumbs) else 0.0,
                    "images": hits,
                }
            )
    return pd.DataFrame(rows), flagged


def artefact_audit(s: Sample, examples: int = 4) -> tuple[pd.DataFrame, list[tuple]]:
    """Share of each class's sampled images with burned-in boxes and with text or markers
    (:func:`pipeline.preprocessing.artefacts.artefact_kinds`; columns ``kind``, ``class``,
    ``share``, ``images``), and up to ``examples`` ``(class, before, marked, after inpainting)``
    thumbnails, boxed images first."""
    rows, shown = [], []
    for cls, thumbs in s.thumbs.items():
        kinds = [artefacts.artefact_kinds(img) for img in thumbs]
        for kind in ("boxes", "marks"):
            hits = sum(bool(k[kind].any()) for k in kinds)
            share = hits / len(thumbs) if len(thumbs) else 0.0
            rows.append({"kind": kind, "class": cls, "share": share, "images": hits})
        order = sorted(range(len(kinds)), key=lambda i: -int(kinds[i]["boxes"].sum()))
        for i in order[: examples // 2]:
            mask = kinds[i]["boxes"] | kinds[i]["marks"]
            if mask.any():
                marked = np.repeat(thumbs[i][..., None], 3, axis=2)
                marked[mask] = (230, 60, 60)
                shown.append((cls, thumbs[i], marked, artefacts.inpaint(thumbs[i], mask)))
    return pd.DataFrame(rows), shown


def duplicate_groups(index: DatasetIndex, limit: int = 12) -> list[list[ImageRecord]]:
    """Near-duplicate groups (more than one image), largest first, at most ``limit`` of them."""
    members: dict[str, list[ImageRecord]] = {}
    for r in index.records:
        members.setdefault(r.group, []).append(r)
    groups = [g for g in members.values() if len(g) > 1]
    groups.sort(key=lambda g: (-len(g), g[0].path))
    return groups[:limit]


def lung_fields(s: Sample, per_class: int = 48) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Lung masks of the first ``per_class`` thumbnails of each class, and one table row per
    image: class, file, lung share of the image, left/right balance, the mask's quality score,
    plausible, why not (a low-quality mask is not plausible: its outline is a guess)."""
    from pipeline.lungs.masks import plausibility
    from pipeline.lungs.segmenter import shipped

    seg = shipped()
    found, rows = {}, []
    for name, thumbs in s.thumbs.items():
        found[name], qualities = (
            seg.find_small(thumbs[:per_class]) if len(thumbs) else (thumbs > 0, [])
        )
        for record, mask, quality in zip(s.records[name], found[name], qualities, strict=False):
            p = plausibility(mask, quality)
            rows.append(
                {
                    "class": name,
                    "file": os.path.basename(record.path),
                    "lung share": p.area,
                    "balance": p.balance,
                    "quality": p.quality,
                    "confident": p.confident,
                    "plausible": p.ok,
                    "why not": "; ".join(p.reasons),
                }
            )
    return found, pd.DataFrame(rows)
