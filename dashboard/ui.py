"""What the dashboard pages share: the store, page paths, run pickers, empty states, workers,
run artifacts and the cached model.

Pages stay thin: they read inputs, call ``pipeline`` and ``db`` through these helpers and
render. TensorFlow is imported only by :func:`predictor`, which only the pages that need a
model call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st

from db import Run, RunStore, Worker, default_url
from pipeline import paths
from pipeline.config import data_root
from pipeline.data import catalog, index_cache
from pipeline.data.layouts import DatasetLayoutError
from pipeline.data.scan import DatasetIndex
from pipeline.runs.worker import log_path

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

    from pipeline.serving.assess import Assessor
    from pipeline.serving.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
# Page files relative to app.py, for st.page_link and st.switch_page.
LEADERBOARD = "views/leaderboard.py"
DATASET = "views/dataset.py"
LAUNCH = "views/launch.py"
RUN = "views/run.py"
COMPARE = "views/compare.py"
EXPLAIN = "views/explain.py"
PUBLISH = "views/publish.py"
# How often live views (running runs, the queue) re-read the store, in seconds.
LIVE_EVERY_S = 3.0
# How often an idle Leaderboard or queue looks for runs launched elsewhere (another tab, the
# command line, a teammate), in seconds.
IDLE_EVERY_S = 10.0
ACTIVE = ("queued", "running")


@st.cache_resource(show_spinner=False)
def _store(url: str) -> RunStore:
    return RunStore(url)


def store() -> RunStore:
    """The run store of this process (``TBXRAY_DB_URL`` or ``<runs dir>/tbxray.db``)."""
    return _store(default_url())


def metric_row() -> DeltaGenerator:
    """A row for headline metrics given ``width="content"``: each keeps its whole label and
    value, and the row wraps onto a second line where the page is too narrow (equal columns
    cut them to "0…" at 1024 px)."""
    return st.container(horizontal=True, gap="medium")


def run_label(run: Run) -> str:
    """``baseline · 3f9a1c · AUC 0.912`` for pickers (the status instead while it has none)."""
    if run.kind == "pretrain":
        return f"{run.name} · {run.id[:6]} · pretraining, {run.status}"
    result = f"AUC {run.auc:.3f}" if run.auc is not None else run.status
    return f"{run.name} · {run.id[:6]} · {result}"


def pick_run(runs: list[Run], *, key: str, label: str = "Run", param: str = "run") -> Run | None:
    """A run picker preset from the ``?run=`` query parameter, which it keeps in step so that
    the page's address can be shared. None when ``runs`` is empty."""
    if not runs:
        return None
    by_id = {r.id: r for r in runs}
    wanted = st.query_params.get(param)
    ids = list(by_id)
    index = next((i for i, rid in enumerate(ids) if wanted and rid.startswith(wanted)), None)
    if wanted and index is None:
        # A wrong or stale link: say so, offer the picker, and leave the address as it was.
        st.error(
            f"No run `{wanted}` here: the link is wrong, or the run was deleted. Pick a run below.",
            icon=":material/link_off:",
        )
        chosen = st.selectbox(
            label,
            ids,
            index=None,
            format_func=lambda i: run_label(by_id[i]),
            key=key,
            placeholder="choose a run",
        )
        if chosen is None:
            st.stop()
    else:
        chosen = st.selectbox(
            label, ids, index=index or 0, format_func=lambda i: run_label(by_id[i]), key=key
        )
    if st.query_params.get(param) != chosen:
        st.query_params[param] = chosen
    return by_id[chosen]


def no_runs_yet(what: str = "runs") -> None:
    """The empty state of pages that show runs: say so and point at Launch."""
    st.info(f"No {what} yet. Launch a run or an experiment suite, then start a worker.")
    st.page_link(LAUNCH, label="Go to Launch", icon=":material/rocket_launch:")


def known_datasets(s: RunStore) -> list[str]:
    """Dataset folders worth offering, absolute: those under the data roots
    (:mod:`pipeline.data.catalog`), then those that runs trained on successfully. Only folders in a
    layout the scan accepts are offered; a failed run's folder is not, being perhaps why it
    failed."""
    trained: list[str] = []
    for run in s.list_runs(status="succeeded", limit=200):
        path = run.config.get("data", {}).get("path")
        if path:
            trained += [path] if isinstance(path, str) else path
    roots = tuple(str(root) for root in catalog.data_roots())
    return _offered(roots, tuple(dict.fromkeys(trained)))


@st.cache_data(show_spinner=False, ttl=30)
def _offered(roots: tuple[str, ...], trained: tuple[str, ...]) -> list[str]:
    found = [str(p) for p in catalog.find_datasets(Path(root) for root in roots)]
    found += [str(Path(p).resolve()) for p in trained if catalog.is_dataset(Path(p))]
    return list(dict.fromkeys(found))


def data_roots_note() -> str:
    """Where datasets are looked for, for a caption under a picker: the roots, and any root
    that ``TBXRAY_DATA_DIRS`` names but that does not exist."""
    roots = catalog.data_roots()
    missing = [r for r in roots if not r.is_dir()]
    where = " · ".join(f"`{r}`" for r in roots if r.is_dir()) or "no folder"
    note = f"Datasets are looked for in {where} (set `{catalog.ENV}` to change)."
    if missing:
        names = ", ".join(f"`{r}`" for r in missing)
        note += f" :orange[{catalog.ENV} names {names}, which does not exist.]"
    return note


def folder_label(folder: str) -> str:
    """``tb-cxr — /data/shared`` for a picker: the dataset's name, then where it is."""
    path = Path(folder)
    return f"{path.name} — {path.parent}"


@st.cache_data(show_spinner=False, ttl=60, max_entries=16)
def scan(folder: str, one_class: bool = False) -> DatasetIndex:
    """The dataset's index (:func:`pipeline.data.index_cache.load_index`): the scan a worker runs
    before training, cached on disk for it. ``one_class`` as for an external folder."""
    return index_cache.load_index(folder, one_class=one_class)


def dataset_problem(folder: str, *, one_class: bool = False) -> str | None:
    """Why a run cannot train on ``folder`` (or, ``one_class``, be evaluated on it), in plain
    sentences; None when the scan accepts it. An empty or unreadable folder is refused here,
    before it is queued, instead of failing in the worker."""
    if not folder.strip():
        return "give the dataset folder"
    path = Path(folder).expanduser()
    if not path.is_dir():
        return f"no such folder {folder!r} (relative paths start at {Path.cwd()})"
    try:
        with st.spinner(f"Scanning {folder} (every image is decoded once, then cached)…"):
            scan(str(path.resolve()), one_class)
    except (DatasetLayoutError, OSError) as err:
        return str(err)
    return None


def alive_workers(s: RunStore) -> list[Worker]:
    """Workers that heart-beat within the last minute and have not stopped."""
    return [w for w in s.workers() if w.alive]


def start_worker() -> tuple[int, Path]:
    """Start ``python -m pipeline worker`` in the background, on this dashboard's store.

    The worker gets this process's environment (``TBXRAY_RUNS_DIR``, ``TBXRAY_DB_URL``) and
    working directory, outlives the dashboard (its own session) and writes to a log file under
    the runs folder. Returns its process id and log path.
    """
    logs = paths.runs_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"worker-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker"],
            cwd=os.getcwd(),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process.pid, log


def active_runs(s: RunStore) -> list[Run]:
    """Running runs, then queued ones, each oldest first."""
    running = sorted(s.list_runs(status="running"), key=lambda r: r.created_at)
    return running + sorted(s.list_runs(status="queued"), key=lambda r: r.created_at)


def busy(s: RunStore, statuses: Iterable[str]) -> bool:
    """Whether a run is queued or running among ``statuses``, or a live worker is still
    training (it may be stopping a run cancelled a moment ago): then live views refresh every
    :data:`LIVE_EVERY_S`, else every :data:`IDLE_EVERY_S`."""
    return any(status in ACTIVE for status in statuses) or any(
        w.current_run for w in alive_workers(s)
    )


def every(busy: bool) -> float:
    """Seconds between a live view's reads of the store."""
    return LIVE_EVERY_S if busy else IDLE_EVERY_S


def refresh_button(container: DeltaGenerator, *, key: str) -> None:
    """A button that re-reads the store now: clicking it reruns the fragment it is drawn in."""
    container.button(
        "Refresh", key=key, icon=":material/refresh:", help="read the run store again now"
    )


def worker_panel(s: RunStore, *, key: str) -> None:
    """Workers alive on this store, or a button that starts one when none is."""
    alive = alive_workers(s)
    if alive:
        names = ", ".join(
            f"{w.name} ({'training ' + w.current_run[:6] if w.current_run else 'idle'})"
            for w in alive
        )
        st.caption(f":green[●] {len(alive)} worker{'s' if len(alive) > 1 else ''} alive: {names}")
        return
    started = st.session_state.get("started_worker")
    if started and time.monotonic() - started[2] < 60:
        st.caption(f":orange[●] worker started (pid {started[0]}), registering… log: {started[1]}")
        return
    st.warning("No worker is alive: queued runs will wait until one starts.")
    if st.button("Start a local worker", key=key, icon=":material/play_arrow:"):
        pid, log = start_worker()
        st.session_state["started_worker"] = (pid, str(log), time.monotonic())
        st.rerun()


@st.cache_data(show_spinner=False, max_entries=32)
def _predictions(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_csv(path)


def predictions(run: Run) -> pd.DataFrame:
    """The run's ``predictions.csv`` (split, path, label, score) with ``file`` added: the image's
    absolute path under the run's dataset folder. Empty when the run has no artifacts."""
    if not run.artifacts_dir:
        return pd.DataFrame(columns=["split", "path", "label", "score", "file"])
    path = Path(run.artifacts_dir) / "predictions.csv"
    if not path.exists():
        return pd.DataFrame(columns=["split", "path", "label", "score", "file"])
    frame = _predictions(str(path), path.stat().st_mtime)
    root = Path(data_root(run.config.get("data", {}).get("path", ".")))
    return frame.assign(file=[str(root / p) for p in frame["path"]])


def test_scores(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """Test labels (int) and P(TB) scores (float) from predictions.csv."""
    test = predictions(run)
    test = test[test["split"] == "test"]
    return test["label"].to_numpy(dtype=int), test["score"].to_numpy(dtype=float)


def log_tail(run: Run, lines: int = 60) -> str | None:
    """The last ``lines`` lines of the run's training log, or None when there is none."""
    path = log_path(run)
    if not path.exists():
        return None
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _predictor(run_dir: str) -> Predictor:
    from pipeline.serving.predictor import Predictor

    return Predictor(run_dir)


def predictor(run: Run) -> Predictor:
    """The run's loaded model and preprocessing, cached per run (imports TensorFlow)."""
    if run.status != "succeeded" or not run.artifacts_dir:
        raise ValueError(f"run {run.id} is {run.status}; only a succeeded run has a model")
    return _predictor(run.artifacts_dir)


@st.cache_resource(show_spinner="Loading the model and its checks…", max_entries=4)
def _assessor(run_dir: str, run_id: str) -> Assessor:
    from pipeline.serving.assess import Assessor

    return Assessor(_predictor(run_dir), run_id)


def assessor(run: Run) -> Assessor:
    """The run's assessment, the public app's and ``predict``'s: verdict or "Cannot assess"
    and why (cached per run; imports TensorFlow)."""
    predictor(run)  # the same refusal for a run without a model
    return _assessor(run.artifacts_dir, run.id)
