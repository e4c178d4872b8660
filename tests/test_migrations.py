"""Schema migrations: old stores open and keep every row, newer ones are refused, servers are
never changed implicitly, and the migrated schema is exactly the models' (SQLite and PostgreSQL).
"""

from __future__ import annotations

import importlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from db import RunStore, StoreVersionError, make_engine, migrate
from db.models import Base
from pipeline.cli import main

# Made with the store as it was before migrations (commit 5dd62d7): 1 suite, 5 runs (2
# succeeded with 3 epochs and an external evaluation each, 1 failed with 3 epochs, 1 queued,
# 1 cancelled), 1 promotion and 1 worker that had stopped.
LEGACY = Path(__file__).parent / "fixtures" / "store-pre-migrations.db"
TABLES = ("suites", "runs", "epochs", "external_evals", "promotions")


def rows(path: Path, table: str, like: Path | None = None) -> list[tuple]:
    """The table's rows; with ``like``, only the columns that table has in that file."""
    with sqlite3.connect(like or path) as conn:
        columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
    with sqlite3.connect(path) as conn:
        query = f"SELECT {', '.join(columns)} FROM {table}"
        return sorted(conn.execute(query).fetchall(), key=repr)


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    path = tmp_path / "tbxray.db"
    shutil.copy(LEGACY, path)
    return path


def test_a_store_made_before_migrations_is_backed_up_upgraded_and_keeps_every_row(legacy):
    before = {table: rows(legacy, table) for table in TABLES}
    assert [len(before[t]) for t in TABLES] == [1, 5, 9, 2, 1]

    store = RunStore(f"sqlite:///{legacy}")

    backup = legacy.with_name("tbxray.db.bak-unversioned")
    assert store.backup_path == backup
    assert {t: rows(backup, t) for t in TABLES} == before  # the copy is the old file, intact
    assert migrate.state(store.engine).current
    # Nothing lost, nothing changed in the columns that were there.
    assert {t: rows(legacy, t, like=backup) for t in TABLES} == before
    # And the store API reads them as before: results, history, evaluations, the promotion.
    runs = {r.name: r for r in store.list_runs()}
    assert sorted(r.status for r in runs.values()) == sorted(
        ["succeeded", "succeeded", "failed", "queued", "cancelled"]
    )
    best = runs["fixture-succeeded-1"]
    assert (best.auc, best.auc_ci, best.threshold) == (0.91, (0.8, 0.95), 0.3)
    assert [e.val_auc for e in store.epochs(best.id)] == pytest.approx([0.6, 0.7, 0.8])
    assert store.external_evals(best.id)[0].n_images == 402
    assert store.promotions()[0].note == "first release"
    assert store.promotions()[0].calibration_id is None  # 0003: served at its own threshold
    assert store.promotions()[0].promoted_by == ""  # 0004: nobody was recorded before
    assert store.served_calibration() is None
    assert "Traceback" in runs["fixture-failed-2"].error
    # 0002 drops the presence of workers that had already stopped.
    assert store.workers() == []


def test_opening_a_current_store_changes_nothing_and_makes_no_backup(legacy):
    RunStore(f"sqlite:///{legacy}")
    again = RunStore(f"sqlite:///{legacy}")
    assert again.backup_path is None
    assert sorted(p.name for p in legacy.parent.iterdir() if ".bak-" in p.name) == [
        "tbxray.db.bak-unversioned"
    ]


def test_an_older_revision_is_upgraded_with_a_backup_named_after_it(legacy):
    engine = make_engine(f"sqlite:///{legacy}")
    migrate.upgrade(engine, "0001")
    assert migrate.state(engine).revision == "0001"
    store = RunStore(f"sqlite:///{legacy}")
    assert store.backup_path == legacy.with_name("tbxray.db.bak-0001")
    assert "runs_dir" in {c["name"] for c in inspect(store.engine).get_columns("workers")}


def test_a_0003_store_gains_who_promoted_and_keeps_its_promotions(legacy):
    engine = make_engine(f"sqlite:///{legacy}")
    migrate.upgrade(engine, "0003")
    engine.dispose()
    before = rows(legacy, "promotions")
    store = RunStore(f"sqlite:///{legacy}")
    assert store.backup_path == legacy.with_name("tbxray.db.bak-0003")
    assert rows(legacy, "promotions", like=store.backup_path) == before
    (old,) = store.promotions()
    assert (old.note, old.promoted_by) == ("first release", "")
    run = next(r for r in store.list_runs() if r.status == "succeeded")
    store.promote(run.id, "external AUC checked", promoted_by="A. Radiologist")
    assert store.promotions()[0].promoted_by == "A. Radiologist"


def test_a_0004_store_gains_archive_tags_and_notes_and_keeps_its_runs(legacy):
    engine = make_engine(f"sqlite:///{legacy}")
    migrate.upgrade(engine, "0004")
    engine.dispose()
    before = {table: rows(legacy, table) for table in TABLES}
    store = RunStore(f"sqlite:///{legacy}")
    assert store.backup_path == legacy.with_name("tbxray.db.bak-0004")
    assert {t: rows(legacy, t, like=store.backup_path) for t in TABLES} == before
    runs = store.list_runs()
    assert len(runs) == 5
    assert {(r.archived_at, r.tags, r.note) for r in runs} == {(None, (), "")}
    best = next(r for r in runs if r.name == "fixture-succeeded-1")
    store.set_tags(best.id, ["baseline"])
    assert store.archive_run(best.id).tags == ("baseline",)


def test_a_store_from_before_evaluation_jobs_keeps_its_rows_and_can_queue_one(legacy):
    # The revision before 0006, whatever it is once the branches are chained.
    previous = importlib.import_module("db.migrations.versions.0006_eval_jobs").down_revision
    engine = make_engine(f"sqlite:///{legacy}")
    migrate.upgrade(engine, previous)
    engine.dispose()
    before = {table: rows(legacy, table) for table in TABLES}

    store = RunStore(f"sqlite:///{legacy}")
    assert store.backup_path == legacy.with_name(f"tbxray.db.bak-{previous}")
    assert {t: rows(legacy, t, like=store.backup_path) for t in TABLES} == before
    best = next(r for r in store.list_runs() if r.name == "fixture-succeeded-1")
    assert store.external_evals(best.id)[0].n_images == 402
    assert store.eval_jobs(best.id) == []
    job = store.queue_eval(best.id, "/data/other-hospital")
    assert (job.status, store.eval_jobs(best.id)) == ("queued", [job])


def stamp(url: str, revision: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


def test_a_store_newer_than_the_code_is_refused_naming_both_revisions(store_url):
    RunStore(store_url).create_run({}, name="kept")
    stamp(store_url, "9999")
    with pytest.raises(StoreVersionError, match=rf"revision 9999.*up to {migrate.head()}"):
        RunStore(store_url)
    with pytest.raises(StoreVersionError, match="9999"):
        migrate.upgrade(make_engine(store_url))


def test_a_postgresql_store_is_never_changed_implicitly(postgres_url):
    engine = make_engine(postgres_url)
    with pytest.raises(StoreVersionError, match=r"no tables yet.*python -m pipeline db upgrade"):
        RunStore(postgres_url)
    assert inspect(engine).get_table_names() == []

    migrate.upgrade(engine, "0001")
    with pytest.raises(
        StoreVersionError, match=f"revision 0001 and this code needs {migrate.head()}"
    ):
        RunStore(postgres_url)
    assert migrate.state(engine).revision == "0001"

    migrate.upgrade(engine)
    assert RunStore(postgres_url).list_runs() == []


def test_the_migrated_schema_is_exactly_the_models(store_url):
    engine = make_engine(store_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_the_legacy_fixture_is_exactly_revision_0001(legacy, tmp_path):
    fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    migrate.upgrade(fresh, "0001")

    def schema(path: Path) -> list[tuple]:
        with sqlite3.connect(path) as conn:
            return sorted(
                conn.execute(
                    "SELECT type, name, sql FROM sqlite_master WHERE tbl_name != 'alembic_version'"
                ).fetchall()
            )

    # Same tables, columns, constraints and indexes, down to their names.
    assert schema(tmp_path / "fresh.db") == schema(LEGACY)


def test_upgrade_downgrade_upgrade_round_trip_keeps_the_runs(store_url):
    store = RunStore(store_url)
    run = store.create_run({"seed": 1}, name="survivor")
    store.worker_alive("host:1", None, "/shared/runs")
    engine = make_engine(store_url)

    migrate.downgrade(engine, "0001")
    assert migrate.state(engine).revision == "0001"
    assert "stopped_at" in {c["name"] for c in inspect(engine).get_columns("workers")}
    migrate.upgrade(engine)
    assert RunStore(store_url).get_run(run.id).name == "survivor"

    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert migrate.state(engine).current
    assert RunStore(store_url).list_runs() == []


def test_db_commands_report_and_upgrade_the_store(postgres_url, monkeypatch, capsys):
    monkeypatch.setenv("TBXRAY_DB_URL", postgres_url)
    assert main(["db", "current"]) == 0
    assert "empty (no tables)" in capsys.readouterr().out

    assert main(["runs"]) == 2
    assert "python -m pipeline db upgrade" in capsys.readouterr().err

    assert main(["db", "upgrade"]) == 0
    assert f"now revision {migrate.head()} (current)" in capsys.readouterr().out
    assert main(["runs"]) == 0


def test_the_apps_refuse_a_store_they_cannot_use_with_one_line(tmp_path, monkeypatch, capsys):
    from streamlit.testing.v1 import AppTest

    from gradio_app.__main__ import main as public_app

    url = f"sqlite:///{tmp_path / 'tbxray.db'}"
    RunStore(url)
    stamp(url, "9999")
    monkeypatch.setenv("TBXRAY_DB_URL", url)

    assert public_app(["--port", "0", "--no-examples"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "revision 9999, newer than this code" in err

    page = AppTest.from_file(str(Path(__file__).parents[1] / "dashboard" / "app.py")).run()
    assert not page.exception
    assert "revision 9999, newer than this code" in page.error[0].value
