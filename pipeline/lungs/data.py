"""Image / lung-mask pairs for training and scoring the segmenter, and their augmentation.

Two folder layouts are read:

- ``lung-masks`` (../shared/data/README.md): ``manifest.csv`` with ``image``, ``mask`` and
  ``source`` columns; images and masks are PNGs of one size, mask 255 = lung.
- a phantom set from :mod:`pipeline.data.synth`: ``manifest.csv`` with ``file`` and ``label``, lung
  masks in ``lungs/`` under the image's name; the source is ``phantom``.

Pairs load into memory at the segmenter's side (256 px: 482 pairs take 63 MB).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.imaging import decode


class LungDataError(ValueError):
    """A folder is not a set of image / lung-mask pairs; the message says what is missing."""


@dataclass(frozen=True)
class Pairs:
    """Images (N, S, S) uint8, masks (N, S, S) bool, each pair's name and source, and
    ``manifest_sha256``: SHA-256 over every pair's file name and image and mask sizes in bytes,
    in manifest order (the identity of the training data recorded in the model card)."""

    images: np.ndarray
    masks: np.ndarray
    names: tuple[str, ...]
    sources: tuple[str, ...]
    manifest_sha256: str

    def subset(self, keep: np.ndarray) -> Pairs:
        idx = np.flatnonzero(keep)
        return Pairs(
            self.images[idx],
            self.masks[idx],
            tuple(self.names[i] for i in idx),
            tuple(self.sources[i] for i in idx),
            self.manifest_sha256,
        )


def list_pairs(folder: str | Path) -> list[tuple[Path, Path, str]]:
    """``(image path, mask path, source)`` of every pair in ``folder`` (either layout)."""
    root = Path(folder)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise LungDataError(
            f"{root} has no manifest.csv; point at a lung-mask folder (e.g. "
            "../shared/data/lung-masks) or a phantom set made by `python -m pipeline synth`"
        )
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and {"image", "mask", "source"} <= rows[0].keys():
        pairs = [(root / r["image"], root / r["mask"], r["source"]) for r in rows]
    elif rows and {"file", "label"} <= rows[0].keys():
        from pipeline.data.synth import LUNG_DIR

        lungs = root / LUNG_DIR
        pairs = [(root / r["file"], lungs / Path(r["file"]).name, "phantom") for r in rows]
    else:
        raise LungDataError(f"{manifest} lists no image / lung-mask pairs")
    missing = [str(m) for _, m, _ in pairs if not m.is_file()]
    if missing:
        raise LungDataError(
            f"{len(missing)} lung masks listed in {manifest} are missing, e.g. {missing[0]}"
            " (phantom sets made before lung masks were saved: run `python -m pipeline synth`)"
        )
    return pairs


def load_pairs(folder: str | Path, size: int) -> Pairs:
    """Read every pair of ``folder`` resized to ``size`` (image: area; mask: area, then > 50 %)."""
    pairs = list_pairs(folder)
    n = len(pairs)
    imgs = np.empty((n, size, size), np.uint8)
    masks = np.empty((n, size, size), bool)
    digest = hashlib.sha256()
    for i, (img_path, mask_path, _) in enumerate(pairs):
        imgs[i] = decode.resize(decode.read_image(img_path), size)
        masks[i] = decode.resize(decode.read_image(mask_path), size) >= 128
        digest.update(
            f"{img_path.name}|{img_path.stat().st_size}|{mask_path.stat().st_size}\n".encode()
        )
    return Pairs(
        imgs,
        masks,
        tuple(p.stem for p, _, _ in pairs),
        tuple(s for _, _, s in pairs),
        digest.hexdigest(),
    )


def augment(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One random variant of a pair: rotation ±10°, zoom ±10 % and a shift (image and mask
    alike), then brightness ±10 %, contrast ×0.8-1.2 and sometimes a Gaussian blur (image only).

    ``image`` uint8 S×S, ``mask`` bool S×S; returns float32 image in [0, 1] and float32 0/1 mask.
    """
    s = image.shape[0]
    angle = rng.uniform(-10, 10)
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.05, 0.05, 2) * s
    matrix = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    matrix[:, 2] += shift
    img = cv2.warpAffine(
        image, matrix, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    msk = cv2.warpAffine(
        mask.astype(np.uint8), matrix, (s, s), flags=cv2.INTER_NEAREST, borderValue=0
    )
    x = img.astype(np.float32) / 255.0
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=rng.uniform(0.5, 1.5))
    return np.clip(x, 0.0, 1.0), msk.astype(np.float32)


def add_opacities(rng: np.random.Generator, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x`` (float32 S×S in [0, 1]) with one to three opacities drawn into the lungs of
    ``mask``: smooth, mottled patches that whiten the lung towards the brightness of the
    mediastinum, as consolidation, a mass or fluid does. The mask is unchanged: the lung field
    is still lung where disease has whitened it — the regions a TB classifier most needs, and
    the ones a segmenter that learned "lung = dark" leaves out."""
    s = x.shape[0]
    inside = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=s / 100)
    ys, xs = np.nonzero(mask > 0.5)
    if ys.size == 0:
        return x
    white = float(np.percentile(x, 97))
    yy, xx = np.mgrid[:s, :s].astype(np.float32)
    # Mottling: low-frequency noise, the same for every patch of this image.
    mottle = cv2.resize(rng.random((8, 8)).astype(np.float32), (s, s), cv2.INTER_CUBIC)
    out = x.astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(ys.size))
        sy, sx = rng.uniform(0.05, 0.25, 2) * s
        blob = np.exp(-0.5 * (((yy - ys[k]) / sy) ** 2 + ((xx - xs[k]) / sx) ** 2))
        weight = rng.uniform(0.4, 0.95) * blob * inside * (0.6 + 0.4 * mottle)
        out = out + np.clip(white - out, 0.0, None) * weight
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def with_phantoms(pairs: Pairs, n: int, seed: int) -> Pairs:
    """``pairs`` plus ``n`` phantoms rendered at their side (one TB in six, source ``phantom``,
    named ``phantom-K``), so a model trained on them also knows the project's synthetic
    X-rays. The manifest hash covers the phantom count and seed, which fix the images."""
    if n < 1:
        return pairs
    from pipeline.data.synth import render_phantom

    rng = np.random.default_rng(seed)
    side = pairs.images.shape[1]
    drawn = [render_phantom(rng, side, tb=k % 6 == 5) for k in range(n)]
    digest = hashlib.sha256(f"{pairs.manifest_sha256}|phantoms {n} seed {seed}".encode())
    return Pairs(
        np.concatenate([pairs.images, np.stack([p.image for p in drawn])]),
        np.concatenate([pairs.masks, np.stack([p.lung_mask for p in drawn])]),
        pairs.names + tuple(f"phantom-{k}" for k in range(n)),
        pairs.sources + ("phantom",) * n,
        digest.hexdigest(),
    )
