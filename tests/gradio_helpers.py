"""The public app for tests: a tiny model trained on phantoms, images to send it, and the app
served on a free localhost port (tests/test_gradio_*.py).
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from db import RunStore
from pipeline.data import synth

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client

from gradio_app.app import build_demo, serve
from gradio_app.service import Limits, ModelSource

SIZE = 64
# The tests send many requests from one address: fair-use limits far above what they send.
GENEROUS = tuple((kind, "10000/minute") for kind in ("predict", "explain", "upload"))
LIMITS = Limits(max_bytes=2 * 2**20, max_pixels=4_000_000, rates=GENEROUS, explain_in_flight=100)


def train_tiny_run(root: Path, name: str = "baseline-tiny", epochs: int = 25) -> RunStore:
    """Phantoms and a small CNN trained on them, in a store under ``root``; returns the store.

    Balanced classes, no augmentation and three conv blocks: the settings that learn the 64-px
    phantoms fastest (test AUC about 0.8 after 25 epochs of about 0.4 s each).
    """
    from pipeline.config import preset
    from pipeline.training import train

    data = root / "phantoms"
    if not data.is_dir():
        synth.generate(data, 240, size=SIZE, seed=1, tb_ratio=1.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TBXRAY_RUNS_DIR", str(root / "runs"))
        mp.setenv("TBXRAY_CACHE_DIR", str(root / "runs" / "cache"))
        store = RunStore(f"sqlite:///{root / 'runs' / 'tbxray.db'}")
        cfg = preset(
            "smoke",
            **{
                "name": name,
                "data.path": str(data),
                "train.epochs": epochs,
                "model.filters": (8, 16, 32),
                "augment.rotation_deg": 0,
                "augment.zoom": 0,
                "augment.brightness": 0,
            },
        )
        run = train.run(cfg, store)
    store.promote(run.id, note="the tests' tiny phantom model", promoted_by="tests")
    return store


def png(img: np.ndarray | Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def phantom_pair(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same phantom patient without and with TB lesions (64 px, like the training set)."""
    normal = synth.render_phantom(np.random.default_rng(1000 + k), SIZE, False).image
    tb = synth.render_phantom(np.random.default_rng(1000 + k), SIZE, True).image
    return normal, tb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(source: ModelSource, limits: Limits = LIMITS, **kwargs: object) -> Iterator[str]:
    """The app launched on a free localhost port; yields its URL and closes it afterwards."""
    demo = build_demo(source, limits, **kwargs)
    url = serve(demo, limits, port=free_port(), block=False, quiet=True)
    try:
        yield url
    finally:
        demo.close()


def client_for(url: str) -> Client:
    return Client(url, verbose=False, download_files=False, analytics_enabled=False)


@contextmanager
def app_with(tmp_path: Path, limits: Limits) -> Iterator[tuple[httpx.Client, dict[str, int]]]:
    """The app without a model and with one example, a raw HTTP client for it, and the
    ``fn_index`` of each event by name."""
    example = tmp_path / "example.png"
    example.write_bytes(png(phantom_pair(0)[1]))
    source = ModelSource(RunStore(f"sqlite:///{tmp_path / 'empty.db'}"), refresh_s=0)
    fns = build_demo(source, limits, [example]).fns
    with (
        running_app(source, limits, examples=[example]) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http, {fn.api_name: i for i, fn in fns.items()}
