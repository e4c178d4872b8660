"""The run queue: workers claim runs exactly once, survive dead workers, and honour cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from db import RunStore
from pipeline import formats
from pipeline.cli import main
from pipeline.config import preset
from pipeline.paths import LOG_NAME
from pipeline.runs.worker import WorkerOptions, log_path, work
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]


def enqueue(store: RunStore, data: Path, n: int, **changes: object) -> list[str]:
    ids = []
    for i in range(n):
        cfg = preset("smoke", **{"data.path": str(data), "seed": i, "name": f"q{i}", **changes})
        ids.append(store.create_run(json.loads(cfg.to_json()), name=cfg.name).id)
    return ids


def start_worker(*extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "worker", "--poll", "0.2", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_workers_drain_the_queue_each_run_exactly_once(phantoms):
    store = RunStore()
    ids = enqueue(store, phantoms, 8)
    workers = [start_worker("--once", "--name", f"w{i}") for i in (1, 2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    runs = [store.get_run(i) for i in ids]
    assert [r.status for r in runs] == ["succeeded"] * 8
    assert {r.worker for r in runs} <= {"w1", "w2"}
    # Every run's log says it was trained once, by the worker the store names.
    for r in runs:
        log = log_path(r).read_text()
        assert log_path(r) == Path(r.artifacts_dir) / LOG_NAME
        assert log.count(f"run {r.id} (") == 1
        assert f"on worker {r.worker}" in log
        # A few lines a reader can follow, no redrawn progress frames, and how it ended.
        assert "\r" not in log
        assert log.count("preprocess") <= 3
        assert log.strip().splitlines()[-1].startswith(f"run {r.id} succeeded in ")
        assert f"test AUC {formats.with_interval(r.auc, (r.auc_lo, r.auc_hi))}" in log
    trained = sum(out.count("training run") for out in outputs)
    assert trained == 8
    # Both workers said goodbye when the queue was empty: no presence is left behind.
    assert all(f"worker w{i}: " in out for i, out in zip((1, 2), outputs, strict=True))
    assert store.workers() == []


@pytest.mark.parametrize("requeue", [False, True])
def test_a_killed_worker_is_detected_and_the_rest_completes(phantoms, requeue):
    store = RunStore()
    # Long enough to be killed mid-run, short enough to be trained again when re-queued.
    (long_run,) = enqueue(store, phantoms, 1, **{"train.epochs": 30})
    worker = start_worker("--heartbeat", "0.2", "--max-runs", "1")
    wait_for(lambda: (store.get_run(long_run).current_epoch or 0) >= 1)
    others = enqueue(store, phantoms, 2)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert store.get_run(long_run).status == "running"  # nobody has noticed yet

    wait_for(lambda: bool(store.reap_stale(1.0, requeue=requeue)), timeout=30)
    dead = store.get_run(long_run)
    if requeue:
        assert dead.status == "queued"
        assert store.epochs(long_run) == []
    else:
        assert dead.status == "failed"
        assert "stopped sending heartbeats" in dead.error
    executed = work(store, WorkerOptions(name="rescuer", once=True, requeue=requeue))
    assert [store.get_run(i).status for i in others] == ["succeeded", "succeeded"]
    if requeue:
        assert store.get_run(long_run).status == "succeeded"
        assert len(executed) == 3
    else:
        assert store.get_run(long_run).status == "failed"
        assert len(executed) == 2
    with store.session() as s:
        assert s.connection().exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_cancel_a_queued_run_it_is_never_trained(phantoms, capsys):
    store = RunStore()
    first, second = enqueue(store, phantoms, 2)
    assert main(["cancel", second[:6]]) == 0
    assert "cancelled" in capsys.readouterr().out
    executed = work(store, WorkerOptions(name="w", once=True))
    assert [r.id for r in executed] == [first]
    assert store.get_run(second).status == "cancelled"
    assert store.get_run(second).started_at is None


def test_cancel_a_running_run_stops_it_and_keeps_its_epochs(phantoms, isolated_store):
    store = RunStore()
    (run_id,) = enqueue(store, phantoms, 1, **{"train.epochs": 200})
    worker = start_worker("--once", "--heartbeat", "0.5")
    wait_for(lambda: (store.get_run(run_id).current_epoch or 0) >= 2)
    assert main(["cancel", run_id]) == 0
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out
    run = store.get_run(run_id)
    assert run.status == "cancelled"
    assert len(store.epochs(run_id)) >= 2
    assert run.artifacts_dir is None
    assert not (isolated_store / run_id).exists()
    assert "cancelled" in log_path(run).read_text()


def test_a_suite_from_the_command_line_to_its_summary(phantoms, capsys):
    argv = ["enqueue", "--suite", "pooling", "--data", str(phantoms), "--size", "64"]
    assert main([*argv, "--epochs", "1", "--set", "model.filters=[8,16]"]) == 0
    out = capsys.readouterr().out
    assert "with 2 runs" in out
    (suite,) = RunStore().list_suites()
    executed = work(RunStore(), WorkerOptions(name="w", once=True))
    assert [r.status for r in executed] == ["succeeded", "succeeded"]
    assert main(["suite", suite.id]) == 0
    out = capsys.readouterr().out
    assert "model.pooling=max" in out
    assert "model.pooling=avg" in out
    assert "★" in out
    assert main(["enqueue", "--suite", "pooling", "--set", "model.pooling=avg"]) == 2
    assert "model.pooling" in capsys.readouterr().err


def test_a_run_with_an_invalid_stored_config_fails_at_once_with_the_reason():
    store = RunStore()
    run = store.create_run({"data": {"image_size": 8}}, name="broken")
    (done,) = work(store, WorkerOptions(name="w", once=True))
    assert done.id == run.id
    assert done.status == "failed"
    assert "data.image_size" in done.error
    assert "data.image_size" in log_path(done).read_text()
