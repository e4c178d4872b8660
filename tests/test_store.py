"""The run store on a SQLite file and on PostgreSQL: lifecycle, lookups, constraints, cascades."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

import db.store
from db import RunNotFound, RunStore, StoreError, default_url
from db.models import EpochRow, ExternalEvalRow, RunRow, SuiteRow

CONFIG = {"data": {"image_size": 64}, "train": {"epochs": 2}, "seed": 0}

# What pipeline.evaluation.metrics hands over: numpy scalars, curves as arrays/lists, nested dicts,
# and NaN where a quantity is undefined.
METRICS = {
    "auc": np.float64(0.93),
    "auc_ci": [0.88, 0.97],
    "sensitivity": 0.91,
    "sensitivity_ci": (0.85, 0.96),
    "specificity": np.float32(0.75),
    "specificity_ci": [0.70, 0.80],
    "f1": 0.8,
    "accuracy": 0.82,
    "precision": 0.7,
    "threshold": 0.42,
    "who_met": np.bool_(True),
    "confusion": {"tp": 40, "fp": 17, "tn": 51, "fn": np.int64(4)},
    "roc": {"fpr": np.array([0.0, 0.5, 1.0]), "thresholds": [math.inf, 0.5, 0.0]},
    "average_precision": math.nan,
}


@pytest.fixture
def url(store_url: str) -> str:
    """Every test here runs on a SQLite file and on a real PostgreSQL database."""
    return store_url


@pytest.fixture
def store(url: str) -> RunStore:
    return RunStore(url)


def make_run(store: RunStore, status: str = "queued", name: str = "run", suite_id=None):
    """A run brought to ``status`` through the public lifecycle methods."""
    run = store.create_run(CONFIG, name=name, suite_id=suite_id)
    if status in ("running", "succeeded"):
        run = store.start_run(run.id, worker="test-worker")
    if status == "succeeded":
        run = store.finish_run(
            run.id,
            metrics=METRICS,
            artifacts_dir="runs/x",
            data_fingerprint="fp",
            versions={},
            duration_s=1.0,
        )
    if status == "failed":
        run = store.fail_run(run.id, "Traceback ...")
    if status == "cancelled":
        run = store.cancel_run(run.id)
    assert run.status == status
    return run


def test_full_lifecycle_round_trips_typed_metrics_and_json(store, url):
    queued = store.create_run(CONFIG, name="baseline seed 0")
    assert queued.status == "queued"
    assert queued.started_at is None
    assert queued.metrics == {}
    assert queued.auc_ci is None

    running = store.start_run(queued.id, worker="host:123")
    assert (running.status, running.worker) == ("running", "host:123")

    store.log_epoch(queued.id, 1, {"loss": 0.9, "val_auc": 0.6, "val_precision": 0.5})
    store.log_epoch(queued.id, 2, {"loss": np.float32(0.5), "val_auc": 0.8, "seconds": 3.5})
    # A re-logged epoch replaces the values it names instead of adding a row.
    store.log_epoch(queued.id, 2, {"loss": 0.4})
    store.finish_run(
        queued.id,
        metrics=METRICS,
        artifacts_dir="runs/abc",
        data_fingerprint="sha256:beef",
        versions={"tensorflow": "2.21.0"},
        duration_s=12.5,
    )

    # Read back through a fresh store, so nothing comes from a cache.
    run = RunStore(url).get_run(queued.id)
    assert run.status == "succeeded"
    assert run.current_epoch == 2
    assert run.config == CONFIG
    assert run.versions == {"tensorflow": "2.21.0"}
    assert (run.artifacts_dir, run.data_fingerprint, run.duration_s) == (
        "runs/abc",
        "sha256:beef",
        12.5,
    )
    assert run.auc == pytest.approx(0.93)
    assert run.auc_ci == pytest.approx((0.88, 0.97))
    assert (run.sensitivity_lo, run.sensitivity_hi) == pytest.approx((0.85, 0.96))
    assert run.specificity == pytest.approx(0.75)
    assert (run.f1, run.accuracy, run.precision, run.threshold) == pytest.approx(
        (0.8, 0.82, 0.7, 0.42)
    )
    assert run.who_met is True
    assert run.metrics["confusion"] == {"tp": 40, "fp": 17, "tn": 51, "fn": 4}
    assert run.metrics["roc"] == {"fpr": [0.0, 0.5, 1.0], "thresholds": [None, 0.5, 0.0]}
    assert run.metrics["average_precision"] is None

    stamps = [run.created_at, run.started_at, run.heartbeat_at, run.finished_at]
    assert all(t.tzinfo == UTC for t in stamps)
    assert run.created_at <= run.started_at <= run.heartbeat_at <= run.finished_at

    history = store.epochs(queued.id)
    assert [e.epoch for e in history] == [1, 2]
    assert (history[0].loss, history[0].val_auc, history[0].seconds) == (0.9, 0.6, None)
    assert (history[1].loss, history[1].val_auc, history[1].seconds) == (0.4, 0.8, 3.5)


def test_failed_run_keeps_its_traceback(store):
    run = make_run(store, "running")
    trace = 'Traceback (most recent call last):\n  File "train.py"\nValueError: bad batch'
    store.fail_run(run.id, trace, duration_s=2.0)
    failed = store.get_run(run.id)
    assert failed.status == "failed"
    assert failed.error == trace
    assert failed.duration_s == 2.0
    assert failed.finished_at is not None


def test_a_run_is_started_only_once(store, url):
    run = make_run(store)
    store.start_run(run.id, worker="a")
    # A second worker, with its own connection, loses the race and is told why.
    with pytest.raises(StoreError, match=r"cannot start run .*: it is running"):
        RunStore(url).start_run(run.id, worker="b")
    assert store.get_run(run.id).worker == "a"

    cancelled = make_run(store, "cancelled")
    with pytest.raises(StoreError, match="it is cancelled"):
        store.start_run(cancelled.id, worker="a")
    with pytest.raises(RunNotFound, match="nope"):
        store.start_run("nope", worker="a")


def test_cancel_stops_queued_and_running_runs_but_not_finished_ones(store):
    queued = make_run(store)
    cancelled = store.cancel_run(queued.id)
    assert (cancelled.status, cancelled.cancel_requested) == ("cancelled", True)
    assert store.cancel_run(queued.id) == cancelled

    running = make_run(store, "running")
    assert store.cancel_run(running.id).cancel_requested
    # The worker finishing after the cancel must not resurrect the run.
    with pytest.raises(StoreError, match="cannot finish"):
        store.finish_run(
            running.id,
            metrics=METRICS,
            artifacts_dir="x",
            data_fingerprint="fp",
            versions={},
            duration_s=1.0,
        )
    assert store.get_run(running.id).status == "cancelled"

    done = make_run(store, "succeeded")
    with pytest.raises(StoreError, match="it is succeeded"):
        store.cancel_run(done.id)


@pytest.mark.parametrize("requeue", [False, True])
def test_reaping_returns_the_stale_runs_as_they_are_afterwards(store, requeue):
    stale = make_run(store, "running")
    store.log_epoch(stale.id, 0, {"loss": 0.7})
    alive = make_run(store, "running")
    with store.session() as s:
        long_ago = datetime(2000, 1, 1, tzinfo=UTC)
        s.execute(update(RunRow).where(RunRow.id == stale.id).values(heartbeat_at=long_ago))
    (reaped,) = store.reap_stale(60.0, requeue=requeue)
    assert reaped == store.get_run(stale.id)
    if requeue:
        assert (reaped.status, reaped.worker, reaped.heartbeat_at) == ("queued", None, None)
        assert store.epochs(stale.id) == []
    else:
        assert reaped.status == "failed"
        assert "worker 'test-worker' stopped sending heartbeats" in reaped.error
        assert "Re-queue the run to train it again." in reaped.error
    assert store.get_run(alive.id).status == "running"
    assert store.reap_stale(60.0, requeue=requeue) == []


def test_a_heartbeat_lands_whatever_the_runs_status(store):
    done = make_run(store, "cancelled")
    store.heartbeat(done.id)
    assert store.get_run(done.id).heartbeat_at is not None


def test_check_constraint_refuses_a_bogus_status(store):
    run = make_run(store)
    with pytest.raises(IntegrityError), store.session() as s:
        s.execute(update(RunRow).where(RunRow.id == run.id).values(status="paused"))
    assert store.get_run(run.id).status == "queued"


def test_get_run_by_unique_prefix_and_ambiguous_prefix_names_the_matches(store, monkeypatch):
    ids = iter(["abc1230000", "abc4560000", "def7890000"])
    monkeypatch.setattr(db.store, "new_id", lambda: next(ids))
    first = store.create_run(CONFIG, name="first")
    second = store.create_run(CONFIG, name="second")
    store.create_run(CONFIG, name="third")

    assert store.get_run("abc1").id == first.id
    assert store.get_run("abc4560000").name == "second"
    with pytest.raises(RunNotFound) as err:
        store.get_run("abc")
    assert "ambiguous" in str(err.value)
    assert "abc1230000 (first)" in str(err.value)
    assert "abc4560000 (second)" in str(err.value)
    assert set(err.value.matches) == {first.id, second.id}
    with pytest.raises(RunNotFound, match="no run with id or id prefix 'xyz'"):
        store.get_run("xyz")
    # LIKE wildcards in user input are literal characters, not "match anything".
    with pytest.raises(RunNotFound, match="no run with id or id prefix '%'"):
        store.get_run("%")


def test_list_runs_filters_by_status_and_suite_newest_first(store):
    suite = store.create_suite("pooling", "pooling", "max vs average", {"factor": "pooling"})
    in_suite = [make_run(store, "queued", name=f"s{i}", suite_id=suite.id) for i in range(3)]
    make_run(store, "running", name="r")
    make_run(store, "failed", name="f")

    assert [r.name for r in store.list_runs()] == ["f", "r", "s2", "s1", "s0"]
    assert [r.name for r in store.list_runs(status="queued")] == ["s2", "s1", "s0"]
    assert [r.name for r in store.list_runs(suite_id=suite.id, limit=2)] == ["s2", "s1"]
    assert store.list_runs(status="failed", suite_id=suite.id) == []
    assert {r.suite_id for r in in_suite} == {suite.id}
    with pytest.raises(ValueError, match="unknown run status 'done'"):
        store.list_runs(status="done")

    assert store.get_suite(suite.id).spec == {"factor": "pooling"}
    assert [s.name for s in store.list_suites()] == ["pooling"]
    with pytest.raises(StoreError, match="no suite with id 'missing'"):
        store.create_run(CONFIG, name="x", suite_id="missing")


def test_delete_run_takes_epochs_and_external_evals_with_it(store):
    run = make_run(store, "running")
    store.log_epoch(run.id, 1, {"loss": 1.0})
    store.add_external_eval(run.id, dataset_path="/d", data_fingerprint="fp", metrics={"n": 3})
    kept = make_run(store, "running")
    store.log_epoch(kept.id, 1, {"loss": 1.0})

    store.delete_run(run.id)

    with pytest.raises(RunNotFound):
        store.get_run(run.id)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(EpochRow)) == 1
        assert s.scalar(select(func.count()).select_from(ExternalEvalRow)) == 0
    with pytest.raises(RunNotFound):
        store.delete_run(run.id)


def test_external_evals_are_stored_with_typed_metrics_newest_first(store):
    run = make_run(store, "succeeded")
    store.add_external_eval(
        run.id,
        dataset_path="/data/shenzhen",
        data_fingerprint="fp-sz",
        metrics={"n": 662, "auc": 0.81, "auc_ci": [0.77, 0.85], "sensitivity": 0.9},
    )
    later = store.add_external_eval(
        run.id,
        dataset_path="/data/montgomery",
        data_fingerprint="fp-mc",
        metrics={**METRICS, "n": np.int64(138)},
    )

    evals = store.external_evals(run.id)
    assert [e.dataset_path for e in evals] == ["/data/montgomery", "/data/shenzhen"]
    assert evals[0] == later
    shenzhen = evals[1]
    assert (shenzhen.n_images, shenzhen.auc, shenzhen.auc_ci) == (662, 0.81, (0.77, 0.85))
    assert (shenzhen.sensitivity, shenzhen.specificity) == (0.9, None)
    assert evals[0].metrics["roc"]["thresholds"] == [None, 0.5, 0.0]
    assert evals[0].created_at.tzinfo is not None
    with pytest.raises(RunNotFound):
        store.add_external_eval("nope", dataset_path="/d", data_fingerprint="f", metrics={})


def test_external_summaries_of_every_run_use_each_folders_newest_evaluation(store):
    run = make_run(store, "succeeded")
    make_run(store, "succeeded", name="no externals")
    for path, auc, sensitivity in (
        ("/data/shenzhen", 0.90, 0.95),
        ("/data/montgomery", 0.70, 0.60),
        ("/data/shenzhen", 0.80, 0.85),  # re-evaluated: this one counts, not the first
    ):
        metrics = {"auc": auc, "sensitivity": sensitivity}
        store.add_external_eval(run.id, dataset_path=path, data_fingerprint="fp", metrics=metrics)

    summaries = store.external_summaries()
    assert set(summaries) == {run.id}  # a run without external sets has no summary
    summary = summaries[run.id]
    assert summary.datasets == ("/data/montgomery", "/data/shenzhen")
    assert summary.auc_mean == pytest.approx(0.75)  # (0.70 + 0.80) / 2
    assert (summary.auc_worst, summary.sensitivity_worst) == (0.70, 0.60)
    assert summary.sensitivity_mean == pytest.approx(0.725)  # (0.60 + 0.85) / 2


def test_foreign_keys_are_enforced_and_sqlite_uses_wal(store):
    if store.engine.dialect.name == "sqlite":
        with store.session() as s:
            assert s.scalar(text("PRAGMA foreign_keys")) == 1
            assert s.scalar(text("PRAGMA journal_mode")) == "wal"
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(EpochRow(run_id="ghost", epoch=1))

    suite = store.create_suite("baseline", "baseline", "", {})
    run = make_run(store, suite_id=suite.id)
    with store.session() as s:
        s.execute(delete(SuiteRow).where(SuiteRow.id == suite.id))
    # ON DELETE SET NULL: the run outlives its suite.
    assert store.get_run(run.id).suite_id is None


def test_writes_to_a_missing_run_are_refused(store):
    with pytest.raises(RunNotFound, match="'ghost'"):
        store.log_epoch("ghost", 1, {"loss": 1.0})
    with pytest.raises(RunNotFound, match="'ghost'"):
        store.heartbeat("ghost")


def test_a_second_store_on_the_same_file_sees_the_data(store, url):
    run = make_run(store, "running")
    store.log_epoch(run.id, 1, {"loss": 0.5})

    other = RunStore(url)
    assert other.get_run(run.id).status == "running"
    assert [e.loss for e in other.epochs(run.id)] == [0.5]
    # And the first store sees what the second one writes.
    other.cancel_run(run.id)
    assert store.get_run(run.id).status == "cancelled"


def test_db_url_comes_from_the_environment(tmp_path, monkeypatch):
    target = tmp_path / "team" / "shared.db"
    monkeypatch.setenv("TBXRAY_DB_URL", f"sqlite:///{target}")
    run = RunStore().create_run(CONFIG, name="env")
    assert target.exists()
    assert RunStore(f"sqlite:///{target}").get_run(run.id).name == "env"


def test_default_url_is_a_sqlite_file_in_the_runs_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TBXRAY_DB_URL", raising=False)
    monkeypatch.delenv("TBXRAY_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_url() == "sqlite:///runs/tbxray.db"
    assert (tmp_path / "runs").is_dir()

    monkeypatch.setenv("TBXRAY_RUNS_DIR", str(tmp_path / "elsewhere"))
    RunStore().create_run(CONFIG, name="x")
    assert (tmp_path / "elsewhere" / "tbxray.db").exists()


def test_run_ids_are_ten_hex_characters(store):
    ids = {make_run(store).id for _ in range(3)}
    assert len(ids) == 3
    assert all(len(i) == 10 and set(i) <= set("0123456789abcdef") for i in ids)


def test_only_a_promoted_run_is_served_whatever_the_runs_are_called(store):
    assert store.served_run() is None  # the public app says no model is served yet
    make_run(store, "succeeded", name="width-8-64")
    base = make_run(store, "succeeded", name="demo-baseline")
    # A finished "baseline" was served for its name alone, with no promotion, who or why.
    assert store.served_run() is None

    other = make_run(store, "succeeded", name="stride-2")
    store.promote(other.id, note="best on tb-cxr")
    assert store.served_run().id == other.id
    assert [p.run_id for p in store.promotions()] == [other.id]

    store.promote(base.id)
    assert store.served_run().id == base.id
    store.delete_run(base.id)  # a deleted promoted run falls back to the previous promotion
    assert store.served_run().id == other.id


@pytest.mark.parametrize("status", ["queued", "running", "failed"])
def test_only_a_succeeded_run_can_be_promoted(store, status):
    run = make_run(store, "running" if status == "failed" else status)
    if status == "failed":
        store.fail_run(run.id, "boom")
    with pytest.raises(StoreError, match=f"it is {status}, not succeeded"):
        store.promote(run.id)


def test_workers_are_alive_while_they_beat_and_not_after_they_stop(store):
    store.worker_alive("host:1")
    store.worker_alive("host:2", current_run="abc")
    alive = {w.name: w for w in store.workers()}
    assert alive["host:2"].alive
    assert alive["host:2"].current_run == "abc"
    store.worker_stopped("host:1")
    assert [w.name for w in store.workers() if w.alive] == ["host:2"]
    assert not any(w.alive for w in store.workers(alive_within_s=-1))
