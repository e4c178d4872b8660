"""The dashboard's pages for tests: the app run through Streamlit's AppTest, and a run store
seeded with real runs for the page tests (tests/test_dashboard*.py, tests/test_run_management.py).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import RunStore
from pipeline.config import preset
from pipeline.training import train

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
TRACEBACK = 'Traceback (most recent call last):\n  File "train.py", line 1\nValueError: boom'


def seed_store(data: Path, epochs: int = 1) -> dict[str, str]:
    """Train two smoke runs on ``data`` into the store and add store-only runs.

    The store is the one TBXRAY_RUNS_DIR names. Returns run ids by role: ``plain`` and
    ``clahe`` (succeeded, ``epochs`` epochs), ``failed``, ``running`` (epoch 2 of 5) and
    ``queued``.
    """
    store = RunStore()
    ids = {}
    for role, changes in (
        ("plain", {}),
        ("clahe", {"data.enhancement": "clahe", "seed": 1}),
    ):
        changes = {"data.path": str(data), "name": role, "train.epochs": epochs, **changes}
        cfg = preset("smoke", **changes)
        ids[role] = train.run(cfg, store).id
    base = json.loads(preset("smoke", **{"data.path": str(data)}).to_json())
    failed = store.create_run({**base, "name": "broken"}, name="broken")
    store.start_run(failed.id, worker="test")
    store.fail_run(failed.id, TRACEBACK, duration_s=1.0)
    running = store.create_run(
        {**base, "name": "training", "train": {**base["train"], "epochs": 5}}, name="training"
    )
    store.start_run(running.id, worker="test")
    for epoch in (1, 2):
        store.log_epoch(running.id, epoch, {"loss": 0.7 / epoch, "val_auc": 0.5 + 0.1 * epoch})
    queued = store.create_run({**base, "name": "waiting"}, name="waiting")
    ids.update(failed=failed.id, running=running.id, queued=queued.id)
    store.engine.dispose()
    return ids


def copy_store(source: Path, runs_dir: Path) -> None:
    """Copy the SQLite store (not the artifacts, which the runs name by absolute path)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source / "tbxray.db")
    dst = sqlite3.connect(runs_dir / "tbxray.db")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()


def page(path: str | None = None, **params: str) -> AppTest:
    """The app run once on ``path`` (a views/ file; the leaderboard when None)."""
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.query_params.update(params)
    at.run()
    if path is not None:
        at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}
