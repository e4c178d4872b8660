"""The queue on SQLite and on a real PostgreSQL: concurrent claims, presence, stops, folders.

Workers here are real processes (``tests.queue_worker``: the real worker loop with runs that
train nothing), except where a real training run is the point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from db import RunStore
from pipeline.cli import main
from pipeline.config import preset
from pipeline.runs.worker import WorkerOptions, work
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
_SPAWNED: list[subprocess.Popen] = []


def spawn(argv: list[str], **kwargs: object) -> subprocess.Popen:
    """A process of this test, stopped afterwards even when an assertion failed first."""
    proc = subprocess.Popen(argv, **kwargs)
    _SPAWNED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _stop_spawned() -> Iterator[None]:
    yield
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: a worker or `pipeline up` stops what it started
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def queue_worker(url: str, name: str, *extra: str, runs_dir: Path | None = None):
    env = {**os.environ, "TBXRAY_DB_URL": url, "PYTHONPATH": str(ROOT)}
    if runs_dir is not None:
        env["TBXRAY_RUNS_DIR"] = str(runs_dir)
    return spawn(
        [sys.executable, "-m", "tests.queue_worker", "--name", name, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_presence_from_two_threads_at_once_never_collides(store_url):
    """The worker's presence thread and its main thread register the same name together."""
    store = RunStore(store_url)
    errors: list[BaseException] = []
    for round_ in range(20):
        barrier = threading.Barrier(4)

        def beat(name: str = f"host:{round_}", barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                store.worker_alive(name, None, "/runs")
            except BaseException as err:  # collected, then asserted: any error fails the test
                errors.append(err)

        threads = [threading.Thread(target=beat) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(store.workers()) == 20


def test_four_workers_drain_24_runs_each_claimed_exactly_once(store_url):
    store = RunStore(store_url)
    ids = [store.create_run({"seed": i}, name=f"r{i}").id for i in range(24)]
    workers = [queue_worker(store_url, f"w{i}", "--once", "--seconds", "0.2") for i in range(4)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * 4, outputs

    claims = [
        (line.split("training run ")[1].split()[0], f"w{i}")
        for i, out in enumerate(outputs)
        for line in out.splitlines()
        if "training run " in line
    ]
    assert sorted(run_id for run_id, _ in claims) == sorted(ids)  # 24 claims, no run twice
    runs = {r.id: r for r in store.list_runs()}
    assert all(runs[run_id].status == "succeeded" for run_id in ids)
    assert all(runs[run_id].worker == name for run_id, name in claims)
    assert store.workers() == []  # each removed its presence on the way out


def test_sigterm_mid_run_requeues_it_and_a_second_worker_finishes_it(store_url):
    store = RunStore(store_url)
    run = store.create_run({"seed": 0}, name="interrupted")
    first = queue_worker(store_url, "first", "--seconds", "120")
    wait_for(lambda: store.get_run(run.id).status == "running", timeout=60)
    store.log_epoch(run.id, 0, {"loss": 0.7})

    started = time.monotonic()
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=30)[0]
    assert time.monotonic() - started < 10
    assert first.returncode == 0
    assert "Traceback" not in out
    assert out.strip().splitlines()[-1] == (
        f"worker first: stopped (SIGTERM); run {run.id} re-queued"
    )
    again = store.get_run(run.id)
    assert (again.status, again.worker, again.started_at) == ("queued", None, None)
    assert store.epochs(run.id) == []  # the next attempt starts clean
    assert store.workers() == []  # presence removed at once, not left to go stale

    second = queue_worker(store_url, "second", "--once")
    assert second.wait(timeout=60) == 0
    done = store.get_run(run.id)
    assert (done.status, done.worker) == ("succeeded", "second")


def test_a_worker_on_another_runs_folder_refuses_to_start(store_url, tmp_path, monkeypatch, capsys):
    shared, other = tmp_path / "shared-runs", tmp_path / "my-runs"
    store = RunStore(store_url)
    first = queue_worker(store_url, "first", runs_dir=shared)
    try:
        wait_for(lambda: any(w.alive for w in store.workers()), timeout=60)
        monkeypatch.setenv("TBXRAY_DB_URL", store_url)

        monkeypatch.setenv("TBXRAY_RUNS_DIR", str(other))
        assert main(["worker", "--once", "--name", "second"]) == 2
        err = capsys.readouterr().err
        assert str(other) in err
        assert str(shared) in err
        assert "TBXRAY_RUNS_DIR" in err

        monkeypatch.setenv("TBXRAY_RUNS_DIR", str(shared))
        assert work(store, WorkerOptions(name="second", once=True)) == []
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    # Once the other worker has gone, nothing is left to disagree with.
    monkeypatch.setenv("TBXRAY_RUNS_DIR", str(other))
    assert work(store, WorkerOptions(name="third", once=True)) == []


def test_a_suite_is_queued_whole_or_not_at_all(store_url):
    store = RunStore(store_url)
    good = ({"seed": 0}, "a")
    bad = ({"seed": 1}, None)  # a run without a name violates NOT NULL half-way through
    with pytest.raises(IntegrityError):
        store.enqueue_suite("s", "custom", "", {}, runs=[good, good, bad])
    assert store.list_suites() == []
    assert store.list_runs() == []
    suite, runs = store.enqueue_suite("s", "custom", "", {}, runs=[good, good])
    assert [r.suite_id for r in runs] == [suite.id] * 2


def test_ctrl_c_on_a_training_worker_prints_one_line_and_requeues(phantoms):
    """The real CLI worker, really training, interrupted as Ctrl-C on ``make demo`` does."""
    store = RunStore()
    cfg = preset("smoke", **{"data.path": str(phantoms), "train.epochs": 40, "name": "long"})
    run = store.create_run(json.loads(cfg.to_json()), name=cfg.name)
    worker = spawn(
        [sys.executable, "-m", "pipeline", "worker", "--poll", "0.2", "--name", "cli"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: (store.get_run(run.id).current_epoch or 0) >= 1, timeout=180)
    worker.send_signal(signal.SIGINT)
    out = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0
    assert "Traceback" not in out
    assert "KeyboardInterrupt" not in out
    assert out.strip().splitlines()[-1] == f"worker cli: stopped (SIGINT); run {run.id} re-queued"
    assert store.get_run(run.id).status == "queued"
    runs_dir = Path(os.environ["TBXRAY_RUNS_DIR"])
    assert not (runs_dir / run.id).exists()
    assert not list(runs_dir.glob(".partial-*"))  # nothing half-written left behind


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_pipeline_up_stops_its_worker_once_and_cleanly(sig):
    """``make demo`` ends in ``pipeline up``; Ctrl-C (or a process manager's SIGTERM) there
    must stop every service once, without a traceback."""
    script = (
        "import sys; from pipeline.cli import up; "
        "argv = [sys.executable, '-m', 'pipeline', 'worker', '--poll', '0.2', '--name', 'demo']; "
        "sys.exit(up.up([up.Service('worker', argv)]))"
    )
    up = spawn(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    store = RunStore()
    wait_for(lambda: any(w.name == "demo" and w.alive for w in store.workers()), timeout=120)
    up.send_signal(sig)
    out = up.communicate(timeout=60)[0]
    assert up.returncode == 0
    assert "Traceback" not in out
    assert out.count("worker demo: stopped (SIGINT); was idle") == 1
    assert store.workers() == []
