"""Pretraining runs beside classifier runs in one store: listed apart, never claimed by a
worker, re-queued, promoted or served (SQLite and PostgreSQL)."""

from __future__ import annotations

import importlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from db import RunStore, StoreError, make_engine, migrate
from db.models import RunRow

LEGACY = Path(__file__).parent / "fixtures" / "store-pre-migrations.db"


def _pretrain_run(store: RunStore, name: str = "baseline-encoder"):
    run = store.create_run({"kind": "pretrain"}, name=name, kind="pretrain")
    return store.start_run(run.id, worker="cli:1")


def _finish(store: RunStore, run_id: str):
    return store.finish_run(
        run_id,
        metrics={"pretrain": {"epochs": 1}},
        artifacts_dir="runs/x",
        data_fingerprint="fp",
        versions={},
        duration_s=1.0,
    )


def test_a_pretraining_run_finishes_without_classifier_metrics_and_is_listed_apart(store_url):
    store = RunStore(store_url)
    classifier = store.create_run({"name": "baseline"}, name="baseline")
    done = _finish(store, _pretrain_run(store).id)
    assert (done.kind, done.status, done.auc, done.threshold) == (
        "pretrain",
        "succeeded",
        None,
        None,
    )
    assert [r.id for r in store.list_runs()] == [classifier.id]
    assert [r.id for r in store.list_runs(kind="pretrain")] == [done.id]
    assert len(store.list_runs(kind=None)) == 2
    with pytest.raises(ValueError, match="unknown run kind 'finetune'"):
        store.create_run({}, name="x", kind="finetune")


def test_a_worker_never_claims_re_queues_promotes_or_serves_a_pretraining_run(store_url):
    store = RunStore(store_url)
    waiting = store.create_run({"kind": "pretrain"}, name="queued-encoder", kind="pretrain")
    assert store.claim_next("worker-1") is None
    assert store.get_run(waiting.id).status == "queued"
    stale = _pretrain_run(store)
    with store.session() as s:
        long_ago = datetime(2000, 1, 1, tzinfo=UTC)
        s.execute(update(RunRow).where(RunRow.id == stale.id).values(heartbeat_at=long_ago))
    (reaped,) = store.reap_stale(60.0, requeue=True)
    assert reaped.status == "failed"  # the command that ran it resumes it, not a worker
    done = _finish(store, _pretrain_run(store, name="baseline").id)
    with pytest.raises(StoreError, match="it is a pretraining run"):
        store.promote(done.id)
    assert store.served_run() is None


def test_a_0006_store_gains_run_kinds_and_keeps_its_runs_as_classifiers(tmp_path):
    path = tmp_path / "tbxray.db"
    shutil.copy(LEGACY, path)
    previous = importlib.import_module("db.migrations.versions.0007_run_kind").down_revision
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, previous)
    engine.dispose()
    store = RunStore(f"sqlite:///{path}")
    assert store.backup_path == path.with_name(f"tbxray.db.bak-{previous}")
    runs = store.list_runs()
    assert len(runs) == 5
    assert {r.kind for r in runs} == {"train"}
    assert store.served_run() is not None  # the fixture's promotion still serves
