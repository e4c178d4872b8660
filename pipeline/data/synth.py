"""Synthetic chest-like phantom radiographs with TB-like lesions at known places.

The embedded default dataset: ``python -m pipeline synth`` writes a folder in the layout of the
TB Chest X-ray Database (``Normal/``, ``Tuberculosis/``), so every command and both apps run on a
fresh machine with no download. TB images carry 1-3 lesions (nodules, cavities, upper-lobe
infiltrates) whose binary masks are saved beside the classes; they are the ground truth used to
score heatmaps (pointing game, energy inside the mask).

Images follow the X-ray convention (dense = bright, air = dark). The anatomy is drawn analytically
on a normalised body frame (``u`` left to right of the image, ``v`` top to bottom, both in
[-1, 1] before the per-image shift, rotation and scale), so one image costs a few dozen
whole-array numpy operations. Nothing but the lesions depends on the label: a TB image and the
normal image rendered from the same generator state differ only inside and just around the mask.
Every image's lung fields are saved too (``lungs/``), so the lung segmenter can be trained and
scored without real data.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from pipeline.progress import bar as progress_bar

LESION_KINDS: tuple[str, ...] = ("nodule", "cavity", "infiltrate")
CLASS_DIRS: dict[str, str] = {"normal": "Normal", "tb": "Tuberculosis"}
MASK_DIR = "masks"
LUNG_DIR = "lungs"
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = ("file", "label", "mask", "lesions", "lesion_fraction")
MIN_SIZE, MAX_SIZE = 64, 2048
# Files a previous phantom set may hold; anything else means the folder is someone else's.
_PHANTOM_FILE = re.compile(r"(normal|tb)-\d+\.png")


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote: the folder, the count per class, the image side and the seed."""

    out: Path
    n_normal: int
    n_tb: int
    size: int
    seed: int


@dataclass(frozen=True)
class Phantom:
    """One rendered phantom.

    ``image``: (size, size) uint8, 0-255. ``lesion_mask``: (size, size) uint8 0/255 for a TB
    image (255 wherever a lesion adds more than 2% of its peak density, before blur), None for a
    normal one. ``lung_mask``: (size, size) bool, the visible lung fields (not
    hidden by the heart). ``lesions``: the kind of each lesion, in drawing order (empty if normal).
    """

    image: np.ndarray
    lesion_mask: np.ndarray | None
    lung_mask: np.ndarray
    lesions: tuple[str, ...]


def render(rng: np.random.Generator, size: int, tb: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Render one phantom radiograph and, for a TB image, its lesion mask.

    Returns ``(image, mask)``: image (size, size) uint8 in 0-255; mask (size, size) uint8 0/255,
    or None when ``tb`` is False. ``size`` must lie in [64, 2048] pixels.
    """
    phantom = render_phantom(rng, size, tb)
    return phantom.image, phantom.lesion_mask


def render_phantom(rng: np.random.Generator, size: int, tb: bool) -> Phantom:
    """Render one phantom with its lung fields and lesion kinds (see :class:`Phantom`).

    The generator is split into anatomy, lesion and film streams, so the same generator state
    rendered with ``tb=True`` and ``tb=False`` gives the same patient with and without lesions.
    """
    _check_range("size", size, MIN_SIZE, MAX_SIZE)
    anatomy_rng, lesion_rng, film_rng = rng.spawn(3)
    u, v = _body_frame(anatomy_rng, size)
    density, lung = _anatomy(anatomy_rng, u, v)
    lesion_mask, kinds = None, ()
    if tb:
        delta, extent, kinds = _lesions(lesion_rng, u, v, lung)
        density += delta
        lesion_mask = np.where(extent, np.uint8(255), np.uint8(0))
    image = _expose(film_rng, density, size)
    return Phantom(image, lesion_mask, lung > 0.5, kinds)


def generate(
    out: str | Path,
    n: int = 600,
    *,
    tb_ratio: float = 5.0,
    size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> SynthSummary:
    """Write a phantom dataset of ``n`` images, ``tb_ratio`` normal images per TB image.

    Layout: ``out/Normal/normal-0001.png``, ``out/Tuberculosis/tb-0001.png`` (8-bit gray,
    size x size), ``out/masks/tb-0001.png`` (uint8 0/255 lesion masks, outside the class folders
    so that dataset scanners skip them), ``out/lungs/normal-0001.png`` (uint8 0/255 lung fields of
    every image) and ``out/manifest.csv`` (one row per image: file, label,
    mask file, lesion kinds joined by ``;``, lesion area as a fraction of the image).

    The same arguments give byte-identical files. ``out`` must be missing, empty or a previous
    phantom set, which is then replaced; any other folder is refused with FileExistsError.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2 (one image per class), got {n}")
    _check_range("size", size, MIN_SIZE, MAX_SIZE)
    if not tb_ratio > 0:
        raise ValueError(f"tb_ratio (normal images per TB image) must be > 0, got {tb_ratio}")
    out = Path(out)
    n_tb = min(max(round(n / (tb_ratio + 1)), 1), n - 1)
    n_normal = n - n_tb
    _clear_previous_set(out)
    for folder in (*CLASS_DIRS.values(), MASK_DIR, LUNG_DIR):
        (out / folder).mkdir(parents=True, exist_ok=True)

    digits = max(4, len(str(max(n_normal, n_tb))))
    jobs = [("normal", i) for i in range(1, n_normal + 1)] + [("tb", i) for i in range(1, n_tb + 1)]
    work = partial(_write_one, out, size=size, seed=seed, digits=digits)
    # numpy and OpenCV release the GIL, so threads overlap the rendering; map keeps job order
    # and every image has its own generator, so the output does not depend on the scheduling.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(work, *zip(*jobs, strict=True))
        rows = list(
            progress_bar(
                results, total=len(jobs), desc="phantoms", unit="img", disable=not progress
            )
        )

    with (out / MANIFEST).open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    return SynthSummary(out=out, n_normal=n_normal, n_tb=n_tb, size=size, seed=seed)


def is_synthetic(folder: str | Path) -> bool:
    """Whether ``folder`` is a phantom dataset made by :func:`generate` (its manifest says so).

    A model trained on phantoms is a demonstration: the apps and the Publish page say so.
    """
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return False
    with manifest.open(newline="") as f:
        header = next(csv.reader(f), [])
    return tuple(header) == MANIFEST_COLUMNS


def _write_one(
    out: Path, label: str, index: int, *, size: int, seed: int, digits: int
) -> tuple[str, ...]:
    """Render and write image ``index`` of class ``label``; return its manifest row."""
    # One generator per image, keyed by class and index, so that each file depends only on
    # (seed, label, index) and not on n or tb_ratio.
    tb = label == "tb"
    phantom = render_phantom(np.random.default_rng((seed, int(tb), index)), size, tb)
    name = f"{label}-{index:0{digits}d}.png"
    file = f"{CLASS_DIRS[label]}/{name}"
    _write_png(out / file, phantom.image)
    _write_png(out / LUNG_DIR / name, np.where(phantom.lung_mask, np.uint8(255), np.uint8(0)))
    mask_file, fraction = "", 0.0
    if phantom.lesion_mask is not None:
        mask_file = f"{MASK_DIR}/{name}"
        _write_png(out / mask_file, phantom.lesion_mask)
        fraction = np.count_nonzero(phantom.lesion_mask) / phantom.lesion_mask.size
    return file, label, mask_file, ";".join(phantom.lesions), f"{fraction:.6f}"


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high} pixels, got {value}")


def _clear_previous_set(out: Path) -> None:
    """Make ``out`` ready to write: refuse a foreign non-empty folder, empty a phantom set."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is a file, not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    problem = _foreign_entry(out)
    if problem:
        raise FileExistsError(
            f"{out} is not empty and is not a phantom set written by pipeline.data.synth "
            f"({problem}); choose a new or empty folder"
        )
    for folder in (*CLASS_DIRS.values(), MASK_DIR, LUNG_DIR):
        if (out / folder).exists():
            shutil.rmtree(out / folder)
    (out / MANIFEST).unlink()


def _foreign_entry(out: Path) -> str:
    """Why ``out`` is not a previous phantom set, or "" if it is one."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return f"no {MANIFEST}"
    with manifest.open(newline="") as f:
        header = next(csv.reader(f), [])
    if tuple(header) != MANIFEST_COLUMNS:
        return f"{MANIFEST} has columns {header}, not {list(MANIFEST_COLUMNS)}"
    allowed = {*CLASS_DIRS.values(), MASK_DIR, LUNG_DIR}
    for entry in out.iterdir():
        if entry.name == MANIFEST:
            continue
        if entry.name not in allowed or not entry.is_dir():
            return f"unexpected entry {entry.name!r}"
        for file in entry.iterdir():
            if not (file.is_file() and _PHANTOM_FILE.fullmatch(file.name)):
                return f"unexpected entry {entry.name}/{file.name!r}"
    return ""


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def _ramp(d: np.ndarray, edge: float) -> np.ndarray:
    """Soft step: 0 for d <= -edge/2, 1 for d >= edge/2, linear between (anti-aliased edge)."""
    step = d * (1.0 / edge)
    step += 0.5
    return np.clip(step, 0.0, 1.0, out=step)


def _bump(r2: np.ndarray) -> np.ndarray:
    """Smooth bump of squared normalised radius: 1 at the centre, 0 from r = 1 outwards."""
    return np.square(np.clip(1.0 - r2, 0.0, None))


def _body_frame(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame coordinates (u, v) of every pixel, each (size, size) float32.

    The patient is shifted by up to 6% of the image, rotated by up to 5 degrees and scaled by
    0.9-1.08 so that normal images vary in position, tilt and size.
    """
    shift = rng.uniform(-0.06, 0.06, 2)
    angle = np.deg2rad(rng.uniform(-5.0, 5.0))
    scale = rng.uniform(0.9, 1.08)
    axis = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    x = axis[None, :] - np.float32(shift[0])
    y = axis[:, None] - np.float32(shift[1])
    cos, sin = np.float32(np.cos(angle) / scale), np.float32(np.sin(angle) / scale)
    return cos * x + sin * y, cos * y - sin * x


def _anatomy(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Tissue density of a normal chest and its visible lung fields, both (H, W) float32 in ~[0, 1].

    Density is a unitless stand-in for attenuation: ~0.01 air outside the body, ~0.6 soft tissue
    at the mid-line, lungs remove up to ~0.4, bone adds ~0.1-0.2.
    """
    size = u.shape[0]
    edge = 3.0 * 2.0 / size  # three pixels, in body units: anti-aliased but crisp edges
    x = np.abs(u)  # distance from the mid-line; the two sides are mirror images
    right = (u > 0).astype(np.float32)  # 1 on the image right = the patient's left

    # Torso: a cylinder of soft tissue (thicker in the middle) with rounded shoulders and a neck.
    half_width = rng.uniform(0.8, 0.95)
    shoulder = rng.uniform(-0.95, -0.82)
    width = 0.2 + (half_width - 0.2) * np.sqrt(np.clip((v - shoulder) / 0.22, 0.0, 1.0))
    across = np.clip(1.0 - np.square(x / width), 0.0, None)
    torso = _ramp(width - x, edge)
    body = torso * np.sqrt(across) * rng.uniform(0.5, 0.62)
    # The abdomen below the diaphragm is denser than the chest wall above it.
    body += 0.1 * _ramp(v - 0.4, 0.5) * torso
    density = 0.01 + body

    # Lungs: rounded apex, slightly convex lateral wall, diaphragm dome that dips into a sharp
    # costophrenic angle laterally. The patient's left (image right) lung sits a little lower.
    apex = rng.uniform(-0.7, -0.6) + 0.02 * right
    base = rng.uniform(0.28, 0.4) + rng.uniform(0.02, 0.07) * right
    medial = rng.uniform(0.09, 0.12)
    lateral = min(rng.uniform(0.66, 0.74), half_width - 0.08)
    mid = 0.5 * (medial + lateral)
    half = 0.5 * (lateral - medial)
    lateral_wall = lateral - 0.15 * np.square((v - 0.15) / 0.8)
    medial_wall = medial + 0.04 * np.clip(-0.2 - v, 0.0, None)
    top = apex + 0.7 * np.square((x - mid + 0.03) / half) * half
    dome = base + 0.1 * np.square((x - mid) / half) + 0.16 * np.clip((x - mid) / half, 0, None)
    lung = (
        _ramp(v - top, edge)
        * _ramp(dome - v, edge)
        * _ramp(x - medial_wall, edge)
        * _ramp(lateral_wall - x, edge)
    )

    # Heart: a half-ellipse standing on the diaphragm, bulging further to the patient's left
    # (image right) than to the right, plus the aortic knob above it. Both are soft tissue:
    # they hide the lung behind them rather than adding bright paint.
    heart_u, bottom = rng.uniform(0.0, 0.05), rng.uniform(0.38, 0.46)
    height = rng.uniform(0.38, 0.48)
    reach_left, reach_right = rng.uniform(0.15, 0.2), rng.uniform(0.3, 0.38)
    profile = np.sqrt(np.clip(1.0 - np.square(np.minimum(v - bottom, 0.0) / height), 0.0, None))
    heart = (
        _ramp(reach_right * profile - (u - heart_u), edge)
        * _ramp(reach_left * profile - (heart_u - u), edge)
        * _ramp(v - bottom + height, edge)
    )
    knob = _ramp(1.0 - (np.square(u - 0.1) + np.square(v + 0.27)) / 0.05**2, 0.4)
    lung *= 1.0 - np.maximum(heart, knob)

    # Lung texture: vessels radiate from each hilum and thin out towards the periphery. Smoothed
    # noise on a polar (angle, radius) grid, sampled back, gives streaks rather than blobs, so
    # normal lungs hold nothing a model could mistake for a lesion.
    hilum_x, hilum_v = rng.uniform(0.14, 0.2), rng.uniform(-0.08, 0.02)
    radius = np.sqrt(np.square(x - hilum_x) + np.square(v - hilum_v))
    angle = np.arctan2(v - hilum_v, x - hilum_x)
    polar = rng.standard_normal((2 * 200, 7)).astype(np.float32)
    polar = np.clip(cv2.GaussianBlur(polar, (0, 0), sigmaX=0.7, sigmaY=0.7), 0.0, None)
    rows = (angle + np.pi) * (199.0 / (2 * np.pi)) + 200.0 * right
    cols = np.clip(radius / 0.75, 0.0, 1.0) * 6.0
    vessels = cv2.remap(polar, cols.astype(np.float32), rows.astype(np.float32), cv2.INTER_LINEAR)
    vessels *= np.clip(1.0 - radius / 0.75, 0.0, 1.0)
    # The hila themselves: pulmonary arteries and nodes, bright and fading out.
    hilum = np.exp(-np.square(radius / rng.uniform(0.1, 0.14)))

    # Air: less of it at the apex, behind the clavicles and the shoulder girdle.
    air = rng.uniform(0.34, 0.44) * (0.7 + 0.3 * np.clip((v - apex) / 0.5, 0.0, 1.0))
    texture = rng.uniform(0.08, 0.12) * vessels + 0.12 * hilum
    density -= lung * (air - texture)

    density += _bones(rng, x, u, v, width, edge)
    # Slow variations of soft tissue over the whole image (breasts, muscles, uneven thickness).
    mottle = cv2.resize(
        rng.standard_normal((5, 5)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
    )
    density += 0.025 * mottle * _ramp(width - x, edge)
    return density.astype(np.float32), lung.astype(np.float32)


def _bones(
    rng: np.random.Generator,
    x: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    width: np.ndarray,
    edge: float,
) -> np.ndarray:
    """Added density of ribs, clavicles and spine, (H, W) float32."""
    inside = _ramp(width - x, edge)

    # Posterior ribs: bands that leave the spine near-horizontal and curve down laterally. All
    # ribs of a side are one periodic function of a curved coordinate; the spacing grows
    # downwards, as in a real chest.
    w = v - (0.9 * np.square(x - 0.06) - 0.15 * x)
    w0 = rng.uniform(-0.78, -0.7)
    spacing = rng.uniform(0.12, 0.15)
    t = np.clip(w - w0, 0.0, None)
    phase = (t / spacing) * (1.0 - 0.08 * t)
    frac = phase - np.floor(phase)
    duty = 0.42
    rib = _ramp(duty - frac, 0.06) * _ramp(frac, 0.06)
    cortex = np.exp(-np.square((frac - 0.03) / 0.05)) + np.exp(-np.square((frac - duty) / 0.05))
    ribs = (rib + 0.5 * cortex) * _ramp(x - 0.07, 0.02) * _ramp(0.85 - phase / 10.0, 0.2)
    ribs *= (w > w0) * rng.uniform(0.04, 0.07)

    # Anterior ribs: fainter bands that run down towards the mid-line from the lateral wall.
    wa = v - 0.45 * (0.8 - x)
    phase_a = (wa - rng.uniform(-1.2, -1.1)) / (1.3 * spacing)
    frac_a = phase_a - np.floor(phase_a)
    anterior = _ramp(0.35 - frac_a, 0.08) * _ramp(frac_a, 0.08) * _ramp(x - 0.3, 0.2)
    anterior *= _ramp(0.35 - v, 0.2) * rng.uniform(0.015, 0.03)

    # Clavicles: gently S-shaped bars from the sternal notch up and out to the shoulders.
    clav_v = rng.uniform(-0.66, -0.58)
    line = clav_v - 0.22 * (x - 0.08) + 0.04 * np.sin((x - 0.08) * 6.0)
    clavicles = _ramp(0.028 - np.abs(v - line), 0.02) * _ramp(x - 0.08, 0.03)
    clavicles *= _ramp(0.68 - x, 0.05) * rng.uniform(0.07, 0.11)

    # Spine: vertebral bodies separated by darker disc spaces, seen through the mediastinum;
    # the trachea is a dark air column above the carina.
    vertebra = np.clip(np.sin((v - rng.uniform(0.0, 0.1)) * (2 * np.pi / 0.09)) + 0.6, 0.0, 1.0)
    spine = _ramp(0.055 - x, 0.02) * (0.05 + 0.04 * vertebra)
    trachea = _ramp(0.03 - np.abs(u - 0.01), 0.02) * _ramp(-0.3 - v, 0.1) * 0.1
    return ((ribs + anterior + clavicles) * inside + spine - trachea).astype(np.float32)


def _lesions(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, lung: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Draw 1-3 lesions inside the lung fields.

    Returns the added density (H, W) float32 (negative inside cavities), the lesion extent (H, W)
    bool and the kind of each lesion. Lesions vary in size, contrast and place; some are subtle.
    """
    delta = np.zeros_like(u)
    extent = np.zeros(u.shape, dtype=bool)
    inside = lung > 0.9
    kinds = tuple(str(k) for k in rng.choice(LESION_KINDS, size=rng.integers(1, 4)))
    for kind in kinds:
        candidates = inside
        if kind == "infiltrate":
            # Post-primary TB favours the upper zones; infiltrates are drawn only there.
            upper = v < np.quantile(v[inside], 0.4)
            candidates = inside & upper
        flat = np.flatnonzero(candidates)
        centre = flat[rng.integers(flat.size)]
        cu, cv = u.flat[centre], v.flat[centre]
        # Peak added density. Lung tissue is ~0.2, so the low end is a faint haze and the high
        # end a dense white opacity. Tuned on 600 images at 128 px: the default 4-block CNN
        # reaches a test AUC of ~0.87-0.97 in 20 epochs, a 3-block 8/16/32 one ~0.65-0.85 in 10;
        # global grey-level statistics alone score ~0.5.
        strength = rng.uniform(0.12, 0.9)
        if kind == "nodule":
            # One to three nodules close together, each a disc whose margin ranges from sharp
            # to ill-defined.
            for _ in range(rng.integers(1, 4)):
                du, dv = (float(d) for d in rng.normal(0.0, 0.05, 2))
                radius = rng.uniform(0.045, 0.1)
                r = np.sqrt(np.square(u - cu - du) + np.square(v - cv - dv))
                disc = _ramp(radius - r, radius * rng.uniform(0.2, 0.6))
                delta += strength * rng.uniform(0.7, 1.0) * disc
                extent |= disc > 0.02
        elif kind == "cavity":
            # A thick bright wall around an air-filled centre, in a halo of consolidation.
            radius = rng.uniform(0.09, 0.15)
            wall = rng.uniform(0.35, 0.5) * radius
            r2 = np.square(u - cu) + np.square(v - cv)
            r = np.sqrt(r2)
            ring = _bump(np.square((r - (radius - wall / 2)) / (wall / 2)))
            halo = _bump(r2 / (1.5 * radius) ** 2)
            lumen = _ramp(radius - wall - r, 0.01)
            delta += strength * (ring + 0.4 * halo - 0.5 * lumen)
            extent |= halo > 0.02
        else:
            # Patchy brightening: coarse noise under a soft elliptic envelope.
            ru, rv = rng.uniform(0.18, 0.3), rng.uniform(0.13, 0.2)
            envelope = _bump(np.square((u - cu) / ru) + np.square((v - cv) / rv))
            patches = cv2.resize(
                rng.uniform(0.0, 1.0, (20, 20)).astype(np.float32),
                u.shape[::-1],
                interpolation=cv2.INTER_CUBIC,
            )
            patchy = envelope * _ramp(patches - 0.45, 0.2)
            delta += 0.8 * strength * patchy
            extent |= patchy > 0.02
    # Lesions sit in the lung: whatever spills over the pleura or behind the heart is dropped.
    return delta * lung, extent & (lung > 0.5), kinds


def _expose(rng: np.random.Generator, density: np.ndarray, size: int) -> np.ndarray:
    """Turn density into an 8-bit radiograph: exposure, blur and noise vary per image.

    The mapping uses no image statistics, so lesions never shift the grey levels elsewhere.
    """
    # A saturating film curve: contrast is high in the lungs and compressed in dense tissue, so
    # ribs fade over the abdomen as they do on a real film.
    k = rng.uniform(1.5, 2.5)
    film = (1.0 - np.exp(-k * np.clip(density, 0.0, None))) / (1.0 - math.exp(-k * 0.85))
    gamma = rng.uniform(0.8, 1.25)
    low, high = rng.uniform(0.0, 0.08), rng.uniform(0.85, 1.0)
    image = low + (high - low) * np.power(np.clip(film, 0.0, 1.0), gamma)
    sigma = rng.uniform(0.5, 1.2) * size / 256.0
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigmaX=sigma)
    image += rng.normal(0.0, rng.uniform(0.006, 0.02), image.shape).astype(np.float32)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
