"""The queue on SQLite and on a real PostgreSQL: concurrent claims, presence, stops, folders.

Workers here are real processes (``tests.queue_worker``: the real worker loop with runs that
train nothing; ``tests.eval_claimer``: evaluation jobs claimed and scoring nothing), except
where a real training run is the point.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db import RunStore
from db.models import EvalJobRow, RunRow
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


def eval_claimer(url: str, name: str, seconds: float) -> subprocess.Popen:
    env = {**os.environ, "TBXRAY_DB_URL": url, "PYTHONPATH": str(ROOT)}
    return spawn(
        [sys.executable, "-m", "tests.eval_claimer", "--name", name, "--seconds", str(seconds)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def succeeded_run(store: RunStore) -> str:
    """The id of a run that succeeded, so that it has a model to evaluate."""
    run = store.create_run({"seed": 0}, name="evaluated")
    store.start_run(run.id, worker="trainer")
    store.finish_run(
        run.id,
        metrics={"auc": 0.5},
        artifacts_dir=f"nowhere/{run.id}",
        data_fingerprint="-",
        versions={},
        duration_s=0.0,
    )
    return run.id


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


def test_four_claimers_drain_24_evaluation_jobs_each_claimed_exactly_once(store_url):
    store = RunStore(store_url)
    run_id = succeeded_run(store)
    ids = [store.queue_eval(run_id, f"/data/set{i}").id for i in range(24)]
    claimers = [eval_claimer(store_url, f"w{i}", 0.2) for i in range(4)]
    outputs = [c.communicate(timeout=120)[0] for c in claimers]
    assert [c.returncode for c in claimers] == [0] * 4, outputs

    claims = [
        (int(line.split("evaluating job ")[1]), f"w{i}")
        for i, out in enumerate(outputs)
        for line in out.splitlines()
        if "evaluating job " in line
    ]
    assert sorted(job_id for job_id, _ in claims) == sorted(ids)  # 24 claims, no job twice
    jobs = {job.id: job for job in store.eval_jobs(run_id)}
    assert all(jobs[job_id].status == "succeeded" for job_id in ids)
    assert all(jobs[job_id].worker == name for job_id, name in claims)
    assert all((jobs[job_id].n_done, jobs[job_id].n_total) == (1, 1) for job_id in ids)
    assert len(store.external_evals(run_id)) == 24


@pytest.mark.parametrize("kind", ["run", "evaluation job"])
def test_a_claim_on_postgresql_skips_the_job_another_transaction_holds(store_url, kind):
    """``FOR UPDATE SKIP LOCKED``: a claimer takes the next queued job at once instead of
    waiting for the transaction that holds the oldest one (another claimer, mid-claim)."""
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite locks the whole database, not rows: there is no held row to skip")
    store = RunStore(store_url)
    if kind == "run":
        row, claim = RunRow, RunStore.claim_next
        first, second = (store.create_run({"seed": i}, name=f"r{i}").id for i in range(2))
    else:
        row, claim = EvalJobRow, RunStore.claim_next_eval
        run_id = succeeded_run(store)
        first, second = (store.queue_eval(run_id, f"/data/set{i}").id for i in range(2))
    other = RunStore(store_url)
    with ThreadPoolExecutor(1) as pool:
        with store.session() as s:
            s.execute(select(row.id).where(row.id == first).with_for_update())
            claimed = pool.submit(claim, other, "b").result(timeout=10)
            assert (claimed.id, claimed.status, claimed.worker) == (second, "running", "b")
        # Once the holder lets go, the oldest job is the next one claimed.
        assert claim(other, "c").id == first
        assert claim(other, "c") is None


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


def test_pipeline_up_names_a_port_in_use_before_starting_anything(capsys):
    """With a dashboard already on its port, `pipeline up` started the rest, printed a
    "started" line for the one that then died, and stopped with a traceback."""
    import socket

    from pipeline.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["up", "--dashboard-port", str(port), "--public-port", "0"]) == 2
    captured = capsys.readouterr()
    assert "started" not in captured.out
    err = captured.err.strip()
    assert "\n" not in err
    assert f"port {port} for the dashboard is already in use" in err
    assert "--dashboard-port N (make demo DASHBOARD_PORT=N)" in err
