"""Benchmark: does the public app's "Cannot assess" check pass real X-rays and stop the rest?

    .venv/bin/python -m bench.ood [--run RUN_ID] [--external ../shared/data/nlm-224 ...]
        [--per-kind 12] [--json out.json]

Serves a run exactly as the app does (``gradio_app.service.ServedModel``; default: the run the
store would serve, ``TBXRAY_RUNS_DIR`` / ``TBXRAY_DB_URL`` select the store) and sends it, as
encoded files:
- real chest X-rays: the run's own test split (never used for fitting) and an external folder;
- pictures that are not chest X-rays, made here with no download: colour photos and their gray
  versions (scikit-image's bundled samples, random crops), documents (rendered pages and
  scikit-image's scanned page and text), CT-like slices (the Shepp-Logan phantom and drawn
  axial chest slices), graphics, blank images and random noise.
Prints the share passed per kind (the real X-rays should pass, everything else be refused),
and which check stopped each refused picture; also real X-rays altered so that they cannot be
assessed (turned, upside down, cut to a quadrant, lateral-like). The lung check, which does not
depend on the classifier, runs before the model's feature distance. The figures in
BENCHMARKS.md come from here.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
_COLOUR_SAMPLES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
_GRAY_SAMPLES = ("camera", "moon", "coins", "clock", "cell", "brick", "grass", "gravel")


def encode(img: np.ndarray, fmt: str = "PNG") -> bytes:
    """PNG or JPEG bytes of a uint8 gray or RGB array."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, quality=90)
    return buf.getvalue()


def _crops(rng: np.random.Generator, img: np.ndarray, n: int) -> list[np.ndarray]:
    """n random near-square crops (60-100 % of the shorter side) of an image."""
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        side = int(min(h, w) * rng.uniform(0.6, 1.0))
        aspect = rng.uniform(0.8, 1.25)
        ch, cw = min(h, int(side * aspect)), side
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        out.append(np.ascontiguousarray(img[y : y + ch, x : x + cw]))
    return out


def _document(rng: np.random.Generator) -> np.ndarray:
    """A rendered page: lines of text-like words on white (or off-white) paper, A4 proportions."""
    h = int(rng.integers(600, 1100))
    w = int(h / 1.414)
    page = np.full((h, w), int(rng.integers(225, 256)), np.uint8)
    y = int(rng.integers(40, 80))
    font = int(
        rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX])
    )
    scale = float(rng.uniform(0.4, 0.8))
    while y < h - 40:
        words = " ".join(
            "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 9)))
            for _ in range(int(rng.integers(3, 9)))
        )
        cv2.putText(page, words, (30, y), font, scale, int(rng.integers(0, 60)), 1, cv2.LINE_AA)
        y += int(28 * scale / 0.5)
    noise = rng.normal(0, rng.uniform(0, 6), page.shape)
    return np.clip(page + noise, 0, 255).astype(np.uint8)


def _ct_slice(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """A drawn axial chest CT slice: round body, dark lungs, bright spine and table, noise."""
    img = np.zeros((size, size), np.float32)
    c = size // 2
    ax, ay = int(size * rng.uniform(0.38, 0.46)), int(size * rng.uniform(0.28, 0.36))
    cv2.ellipse(img, (c, c), (ax, ay), 0, 0, 360, 110, -1)  # soft tissue
    cv2.ellipse(img, (c, c), (ax - 12, ay - 12), 0, 0, 360, 95, -1)  # fat layer
    for side in (-1, 1):  # lungs
        cv2.ellipse(
            img,
            (c + side * int(ax * 0.45), c - int(ay * 0.05)),
            (int(ax * 0.38), int(ay * 0.7)),
            0,
            0,
            360,
            float(rng.uniform(5, 25)),
            -1,
        )
    cv2.circle(img, (c, c + int(ay * 0.65)), int(size * 0.04), 240, -1)  # vertebra
    cv2.ellipse(img, (c - 10, c + 5), (int(ax * 0.22), int(ay * 0.35)), 20, 0, 360, 130, -1)
    cv2.rectangle(img, (c - ax, c + ay + 15), (c + ax, c + ay + 25), 160, -1)  # table
    img += rng.normal(0, rng.uniform(3, 10), img.shape)
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0), 0, 255).astype(np.uint8)


def non_xray_corpus(per_kind: int = 12, seed: int = 0) -> dict[str, list[bytes]]:
    """Encoded pictures that are not chest X-rays, ``per_kind``-ish of each kind."""
    import skimage.data

    rng = np.random.default_rng(seed)
    colour = [getattr(skimage.data, name)() for name in _COLOUR_SAMPLES]
    per_sample = max(1, per_kind // len(colour))
    corpus: dict[str, list[bytes]] = {"colour photo": [], "gray photo": []}
    for img in colour:
        for crop in _crops(rng, img, per_sample):
            corpus["colour photo"].append(encode(crop, "JPEG"))
            corpus["gray photo"].append(encode(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), "PNG"))
    for name in _GRAY_SAMPLES:
        for crop in _crops(rng, getattr(skimage.data, name)(), max(1, per_kind // 8)):
            corpus["gray photo"].append(encode(crop, "PNG"))
    corpus["document"] = [encode(_document(rng), "PNG") for _ in range(per_kind)]
    corpus["document"] += [encode(skimage.data.page()), encode(skimage.data.text())]
    shepp = (skimage.data.shepp_logan_phantom() * 255).astype(np.uint8)
    corpus["CT slice"] = [encode(_ct_slice(rng)) for _ in range(per_kind)] + [encode(shepp)]
    graphics = [
        skimage.data.checkerboard(),
        (skimage.data.binary_blobs(rng=seed) * 255).astype(np.uint8),
        (skimage.data.horse() * 255).astype(np.uint8),
        skimage.data.logo()[..., :3],
    ]
    corpus["graphics"] = [encode(np.ascontiguousarray(g)) for g in graphics]
    corpus["blank"] = [
        encode(np.full((512, 512), v, np.uint8)) for v in np.linspace(0, 255, per_kind // 2)
    ] + [
        encode(np.clip(rng.normal(v, 2, (400, 400)), 0, 255).astype(np.uint8))
        for v in rng.uniform(20, 230, per_kind - per_kind // 2)
    ]
    noise = []
    for i in range(per_kind):
        shape = (int(rng.integers(224, 800)),) * 2
        if i % 3 == 0:
            noise.append(rng.integers(0, 256, shape, dtype=np.uint8))
        elif i % 3 == 1:
            noise.append(np.clip(rng.normal(128, 50, shape), 0, 255).astype(np.uint8))
        else:
            noise.append(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    corpus["random noise"] = [encode(n) for n in noise]
    return corpus


def altered_xrays(paths: list[Path], n: int) -> dict[str, list[bytes]]:
    """Real chest X-rays made unfit to assess: turned by 90° or 180°, cut to one quadrant, or
    squeezed to a lateral view's proportions and mirrored halves (no lungs side by side)."""
    rng = np.random.default_rng(7)
    picked = [paths[i] for i in rng.choice(len(paths), size=min(n, len(paths)), replace=False)]
    grays = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in picked]
    out: dict[str, list[bytes]] = {"altered: turned 90°": [], "altered: upside down": []}
    out |= {"altered: one quadrant": [], "altered: lateral-like": []}
    for g in grays:
        h, w = g.shape
        out["altered: turned 90°"].append(encode(np.rot90(g).copy()))
        out["altered: upside down"].append(encode(g[::-1].copy()))
        out["altered: one quadrant"].append(encode(g[: h // 2, : w // 2].copy()))
        # One lung's half, widened: a single field across the image, as on a lateral view.
        half = cv2.resize(g[:, : w // 2], (w, h), interpolation=cv2.INTER_LINEAR)
        out["altered: lateral-like"].append(encode(half))
    return out


def _files(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run id or prefix (default: the run the store serves)")
    parser.add_argument(
        "--external",
        action="append",
        help="a folder of real chest X-rays from elsewhere (repeatable; default nlm-224)",
    )
    parser.add_argument("--per-kind", type=int, default=12)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from db import RunStore
    from gradio_app.service import ASSESSED, ServedModel

    store = RunStore()
    run = store.get_run(args.run) if args.run else store.served_run()
    if run is None:
        raise SystemExit("the store has no run to serve; train a baseline or pass --run")
    served = ServedModel(run)
    data_root = Path(served.predictor.config.data.path)
    split = json.loads((Path(run.artifacts_dir) / "split.json").read_text())

    real = {
        f"real: {data_root.name} test split": _files([data_root / p for p in split["test"]]),
        f"real: {data_root.name} train + val": _files(
            [data_root / p for p in split["train"] + split["val"]]
        ),
    }
    for folder in args.external or [str(SHARED / "nlm-224")]:
        external = Path(folder)
        if external.is_dir():
            paths = sorted(
                p for p in external.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}
            )
            real[f"real: {external.name} (external)"] = _files(paths)
    fake = non_xray_corpus(args.per_kind)
    fake |= altered_xrays([data_root / p for p in split["test"]], args.per_kind)

    results = {}
    table = Table("images", "n", "passed", "refused", "stopped by", title=f"run {run.id}")
    for kind, blobs in [*real.items(), *fake.items()]:
        outcomes = [served.assess(b) for b in blobs]
        passed = sum(a.status == ASSESSED for a in outcomes)
        stopped = Counter(_check_name(a.reason) for a in outcomes if a.status != ASSESSED)
        results[kind] = {"n": len(blobs), "passed": passed, "stopped_by": dict(stopped)}
        table.add_row(
            kind,
            str(len(blobs)),
            f"{passed / len(blobs):.1%}",
            f"{1 - passed / len(blobs):.1%}",
            ", ".join(f"{k} {v}" for k, v in stopped.most_common()),
        )
    console = Console()
    console.print(table)
    console.print(
        f"OOD reference: {served.reference_note}; threshold "
        + (f"{served.reference.threshold:.2f}" if served.reference else "none")
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"run": run.id, "results": results}, indent=1))


def _check_name(reason: str) -> str:
    for key, name in (
        ("view check", "view"),
        ("colour", "colour"),
        ("uniform", "blank"),
        ("noise", "noise"),
        ("wider or taller", "shape"),
        ("feature distance", "features"),
        ("lung fields", "lungs"),
        ("turned on its side", "lungs"),
    ):
        if key in reason:
            return name
    return "file"


if __name__ == "__main__":
    main()
