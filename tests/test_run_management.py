"""Run management (#17): archive and restore, tags and notes, delete with its files, and a
suite's progress — in the store, on the command line and in the dashboard."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from db import RunNotFound, RunStore, StoreError
from pipeline.cli import main
from pipeline.runs.manage import delete_run, suite_progress
from tests.pages import page, texts

CONFIG = {"name": "r", "seed": 0, "data": {"path": "data/phantoms", "image_size": 64}}


def finished(store: RunStore, name: str, runs_dir: Path, status: str = "succeeded") -> str:
    """A run brought to ``status`` by the store's lifecycle, with a small artifacts folder."""
    run = store.create_run({**CONFIG, "name": name}, name=name)
    store.start_run(run.id, worker="test")
    if status == "failed":
        store.fail_run(run.id, "Traceback: boom", duration_s=2.0)
        return run.id
    folder = runs_dir / run.id
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"model")
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "predictions.csv").write_text("split,path,label,score\n")
    (folder / "train.log").write_text("epoch 1\n")
    store.finish_run(
        run.id,
        metrics={"auc": 0.9, "threshold": 0.5},
        artifacts_dir=str(folder),
        data_fingerprint="fp",
        versions={},
        duration_s=60.0,
    )
    return run.id


@pytest.fixture
def store(isolated_store: Path) -> RunStore:
    return RunStore()


# Store ---------------------------------------------------------------------------------------


def test_archive_hides_nothing_in_the_store_and_is_undone(store, isolated_store):
    run_id = finished(store, "old", isolated_store)
    archived = store.archive_run(run_id)
    assert archived.archived_at is not None
    assert store.get_run(run_id).archived_at == archived.archived_at
    assert store.archive_run(run_id).archived_at == archived.archived_at  # again: same date
    assert store.archive_run(run_id, archived=False).archived_at is None


def test_tags_are_cleaned_and_notes_kept(store, isolated_store):
    run_id = finished(store, "tagged", isolated_store)
    assert store.set_tags(run_id, [" baseline", "clahe", "baseline", ""]).tags == (
        "baseline",
        "clahe",
    )
    assert store.set_note(run_id, "  best so far \n").note == "best so far"
    again = RunStore().get_run(run_id)
    assert (again.tags, again.note) == (("baseline", "clahe"), "best so far")
    with pytest.raises(ValueError, match="without commas"):
        store.set_tags(run_id, ["a,b"])


def test_a_queued_running_or_served_run_is_neither_deleted_nor_archived(store, isolated_store):
    queued = store.create_run(CONFIG, name="waiting")
    running = store.start_run(store.create_run(CONFIG, name="busy").id, worker="w")
    served = finished(store, "served", isolated_store)
    store.promote(served, "release")
    for run_id, why in ((queued.id, "it is queued"), (running.id, "it is running")):
        with pytest.raises(StoreError, match=f"{why}; cancel it first"):
            delete_run(store, run_id)
        with pytest.raises(StoreError, match=why):
            store.archive_run(run_id)
    with pytest.raises(StoreError, match="the model the public app serves"):
        delete_run(store, served)
    assert (isolated_store / served / "model.keras").exists()
    assert {r.id for r in store.list_runs()} == {queued.id, running.id, served}


def test_a_run_once_served_to_the_public_is_archived_not_deleted(store, isolated_store):
    """The record of what the public was served (who promoted it, when, why) is kept."""
    earlier = finished(store, "served-last-month", isolated_store)
    store.promote(earlier, "release", promoted_by="Dr Lee")
    store.promote(finished(store, "served-now", isolated_store), "better")
    with pytest.raises(StoreError, match=r"served to the public \(promoted .* by Dr Lee\)"):
        delete_run(store, earlier)
    assert [p.run_id for p in store.promotions()][-1] == earlier
    assert store.archive_run(earlier).archived_at is not None


def test_delete_removes_the_rows_the_artifacts_and_the_log(store, isolated_store):
    run_id = finished(store, "gone", isolated_store)
    failed = finished(store, "broken", isolated_store, status="failed")
    log = isolated_store / "logs" / f"{failed}.log"
    log.parent.mkdir(parents=True)
    log.write_text("Traceback")
    store.log_epoch(run_id, 1, {"loss": 0.5})

    run, removed = delete_run(store, run_id[:6])
    assert run.id == run_id
    assert removed == [isolated_store / run_id]
    assert not (isolated_store / run_id).exists()
    with pytest.raises(RunNotFound):
        store.get_run(run_id)
    assert store.epochs(run_id) == []

    assert delete_run(store, failed)[1] == [log]
    assert not log.exists()


# Command line --------------------------------------------------------------------------------


def test_cli_archives_restores_tags_and_notes(store, isolated_store, capsys):
    run_id = finished(store, "cli", isolated_store)
    assert main(["tag", run_id, "baseline", "v2"]) == 0
    assert main(["tag", run_id, "--remove", "v2"]) == 0
    assert main(["note", run_id, "lr too high"]) == 0
    capsys.readouterr()
    assert main(["runs"]) == 0
    assert "baseline" in capsys.readouterr().out

    assert main(["archive", run_id]) == 0
    assert "archived" in capsys.readouterr().out
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert run_id not in out
    assert "1 archived run(s) hidden" in out
    assert main(["runs", "--archived"]) == 0
    assert run_id in capsys.readouterr().out

    assert main(["archive", run_id, "--undo"]) == 0
    run = store.get_run(run_id)
    assert (run.archived_at, run.tags, run.note) == (None, ("baseline",), "lr too high")


def test_cli_delete_asks_for_the_id_and_refuses_a_running_run(
    store, isolated_store, capsys, monkeypatch
):
    run_id = finished(store, "cli", isolated_store)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    assert main(["delete", run_id]) == 1
    assert "nothing deleted" in capsys.readouterr().err
    assert (isolated_store / run_id).exists()

    monkeypatch.setattr("builtins.input", lambda prompt: run_id)
    assert main(["delete", run_id]) == 0
    assert not (isolated_store / run_id).exists()

    running = store.start_run(store.create_run(CONFIG, name="busy").id, worker="w")
    assert main(["delete", running.id, "--yes"]) == 2
    assert f"cannot delete run {running.id}: it is running" in capsys.readouterr().err


# Suites ---------------------------------------------------------------------------------------


def test_suite_progress_counts_runs_and_estimates_time_left(store, isolated_store):
    suite, runs = store.enqueue_suite("s", "custom", "", {}, [(CONFIG, f"r{i}") for i in range(5)])
    now = datetime.now(UTC)
    for run in runs[:2]:
        store.start_run(run.id, worker="w")
        store.finish_run(
            run.id,
            metrics={},
            artifacts_dir="x",
            data_fingerprint="fp",
            versions={},
            duration_s=100.0 if run is runs[0] else 200.0,
        )
    store.start_run(runs[2].id, worker="w")
    progress = suite_progress(store.list_runs(suite_id=suite.id), now=now + timedelta(seconds=50))
    assert (progress.done, progress.running, progress.queued) == (2, 1, 2)
    # Mean 150 s a run: 100 s left of the running one, then 2 × 150 s, one run at a time.
    assert progress.seconds_left == pytest.approx(400.0, abs=2.0)
    assert not progress.finished


def test_cli_suite_shows_progress_and_how_to_cancel_the_rest(store, capsys):
    suite, runs = store.enqueue_suite("s", "custom", "", {}, [(CONFIG, f"r{i}") for i in range(3)])
    store.cancel_run(runs[0].id)
    # This hand-made suite has no settings to summarise; its progress is printed first anyway.
    main(["suite", suite.id])
    out = capsys.readouterr().out
    assert "1 of 3 done (0 succeeded, 0 failed, 1 cancelled), 0 running, 2 queued" in out
    assert f"cancel the rest: python -m pipeline cancel {suite.id}" in out


# Dashboard ------------------------------------------------------------------------------------


def test_leaderboard_hides_archived_runs_and_filters_on_tags_and_notes(store, isolated_store):
    kept = finished(store, "kept", isolated_store)
    old = finished(store, "old", isolated_store)
    store.set_tags(kept, ["baseline"])
    store.set_note(kept, "LR too high, try 1e-4")
    store.archive_run(old)

    at = page()
    table = at.dataframe[0].value
    assert list(table.index) == [kept]
    assert list(table.loc[kept, "tags"]) == ["baseline"]
    assert table.loc[kept, "note"] == "LR too high, try 1e-4"
    at.toggle(key="lb.archived").set_value(True).run()
    assert set(at.dataframe[0].value.index) == {kept, old}

    at.text_input(key="lb.expr").input('"baseline" in tags').run()
    assert list(at.dataframe[0].value.index) == [kept]
    at.text_input(key="lb.expr").input('"lr too" in note').run()
    assert list(at.dataframe[0].value.index) == [kept]
    at.text_input(key="lb.expr").input('"baseline" not in tags').run()
    assert list(at.dataframe[0].value.index) == [old]


def test_run_page_edits_tags_and_note_and_archives_then_restores(store, isolated_store):
    run_id = finished(store, "edited", isolated_store)
    at = page("views/run.py", run=run_id)
    at.text_input(key=f"run.tags.{run_id}").input("baseline, clahe")
    at.text_input(key=f"run.note.{run_id}").input("worth a second seed")
    at.button(key="FormSubmitter:run.labels-Save tags and note").click().run()
    run = store.get_run(run_id)
    assert (run.tags, run.note) == (("baseline", "clahe"), "worth a second seed")

    at.button(key="run.archive").click().run()
    assert store.get_run(run_id).archived_at is not None
    assert "Archived on" in texts(at, "info")
    at.button(key="run.restore").click().run()
    assert store.get_run(run_id).archived_at is None


def test_run_page_deletes_after_a_confirmation_and_refuses_a_running_run(store, isolated_store):
    run_id = finished(store, "doomed", isolated_store)
    running = store.start_run(store.create_run(CONFIG, name="busy").id, worker="w")

    at = page("views/run.py", run=running.id)
    at.button(key="run.delete").click().run()
    assert f"cannot delete run {running.id}: it is running; cancel it first" in texts(at, "error")
    assert not at.button(key="run.delete").disabled

    at = page("views/run.py", run=run_id)
    at.button(key="run.delete").click().run()
    assert "for good" in texts(at, "warning")
    assert (isolated_store / run_id).exists()  # nothing happens before the confirmation
    at.button(key="run.delete_confirm").click().run()
    assert not (isolated_store / run_id).exists()
    assert [r.id for r in store.list_runs()] == [running.id]
    assert f"Run {run_id} (doomed) deleted" in texts(at, "success")


def test_run_page_offers_the_files_that_exist_for_download(store, isolated_store):
    run_id = finished(store, "files", isolated_store)
    (isolated_store / run_id / "predictions.csv").unlink()
    at = page("views/run.py", run=run_id)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Model (model.keras)", "Config (config.json)", "Log (train.log)"]


def test_compare_shows_suite_progress_and_cancels_the_rest(store, isolated_store):
    suite, runs = store.enqueue_suite(
        "grid", "custom", "", {}, [(CONFIG, f"r{i}") for i in range(3)]
    )
    store.start_run(runs[0].id, worker="w")
    store.finish_run(
        runs[0].id,
        metrics={"auc": 0.8},
        artifacts_dir="x",
        data_fingerprint="fp",
        versions={},
        duration_s=90.0,
    )
    at = page("views/compare.py", suite=suite.id)
    bar = at.get("progress")[0].proto.text
    assert "1 of 3 done" in bar
    assert "2 queued" in bar
    assert "about 3 min 00 s left" in bar
    at.button(key="suite.cancel").click().run()
    assert sorted(r.status for r in store.list_runs(suite_id=suite.id)) == [
        "cancelled",
        "cancelled",
        "succeeded",
    ]


def test_promote_by_name_picks_the_newest_succeeded_run_of_that_name(store, isolated_store, capsys):
    finished(store, "release", isolated_store)
    newest = finished(store, "release", isolated_store)
    finished(store, "release", isolated_store, status="failed")
    assert main(["promote", "release", "--by", "Dr Lee", "--note", "the release"]) == 0
    out = capsys.readouterr().out
    assert f"'release' is the name of run {newest}, its newest succeeded run" in out
    assert store.served_run().id == newest
    assert main(["promote", "no-such-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no run with id, id prefix or name 'no-such-run'" in err
    assert "\n" not in err
