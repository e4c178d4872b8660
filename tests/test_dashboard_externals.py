"""External evaluation from the run page (#17 item 4): the page checks the folder and queues a
job, a worker evaluates it, and the page shows the progress, then the result or why it failed.

One smoke run is trained for the module; each test works on its own copy of that store.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from db import RunStore
from pipeline.config import preset
from pipeline.data import synth
from pipeline.runs.worker import WorkerOptions, work
from pipeline.training import train
from tests.pages import ROOT, copy_store, page, texts

OPTIONS = WorkerOptions(name="w1", once=True, poll_s=0.1, heartbeat_s=0.5)


@pytest.fixture(scope="module")
def trained(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("externals-store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TBXRAY_RUNS_DIR", str(base))
        mp.setenv("TBXRAY_CACHE_DIR", str(base / "cache"))
        mp.delenv("TBXRAY_DB_URL", raising=False)
        store = RunStore()
        run_id = train.run(preset("smoke", **{"data.path": str(phantoms)}), store).id
        store.engine.dispose()
    return base, run_id


@pytest.fixture
def run_id(trained, isolated_store) -> str:
    base, run_id = trained
    copy_store(base, isolated_store)
    return run_id


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another hospital's folder: 40 phantoms of another seed."""
    folder = tmp_path_factory.mktemp("other") / "other-hospital"
    synth.generate(folder, 40, size=64, seed=9)
    return folder


def progress_texts(at) -> str:
    return "\n".join(e.proto.text for e in at.get("progress"))


def test_the_page_queues_an_evaluation_a_worker_runs_it_and_the_page_shows_it(
    run_id, other, capsys
):
    at = page("views/run.py", run=run_id)
    at.text_input(key="ext.path").input(str(other)).run()
    assert not texts(at, "error"), texts(at, "error")
    at.button(key="ext.go").click().run()
    assert not at.exception, at.exception

    store = RunStore()
    (job,) = store.eval_jobs(run_id)
    assert (job.status, job.dataset_path) == ("queued", str(other))
    assert store.external_evals(run_id) == []  # the page itself evaluated nothing
    assert f"Evaluation on {other} is queued for a worker." in texts(at, "info")

    assert work(RunStore(), OPTIONS) == []  # no training run: only the evaluation
    assert "0 runs and 1 evaluation executed" in capsys.readouterr().out
    job = store.get_eval_job(job.id)
    assert (job.status, job.n_done, job.n_total) == ("succeeded", 40, 40)
    (result,) = store.external_evals(run_id)
    assert (result.id, result.n_images) == (job.external_eval_id, 40)

    at.run()
    assert not at.exception, at.exception
    (table,) = [d for d in at.dataframe if "dataset" in d.value.columns]
    assert list(table.value["dataset"]) == [str(other)]
    assert list(table.value["images"]) == [40]
    assert "queued for a worker" not in texts(at, "info")


def test_a_running_evaluation_shows_images_scored_of_the_total(run_id, other):
    store = RunStore()
    job = store.queue_eval(run_id, str(other))
    store.claim_next_eval("w7")
    store.eval_progress(job.id, 16, 40)
    at = page("views/run.py", run=run_id)
    assert f"{other}: 16 of 40 images scored · worker w7" in progress_texts(at)


def test_a_failed_evaluation_shows_its_reason_on_the_page(run_id, other, tmp_path):
    gone = tmp_path / "moved-away"
    shutil.copytree(other, gone)
    RunStore().queue_eval(run_id, str(gone))
    shutil.rmtree(gone)

    work(RunStore(), OPTIONS)
    (job,) = RunStore().eval_jobs(run_id)
    assert job.status == "failed"
    at = page("views/run.py", run=run_id)
    shown = texts(at, "error")
    assert f"The evaluation on {gone} failed:" in shown
    assert job.error in shown  # the reason, as the scan gave it, with where its log is
    assert "log:" in job.error


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("{tmp}/nowhere", "no such folder"),
        ("{phantoms}", "this is the folder the run was trained on"),
    ],
)
def test_a_bad_folder_is_refused_under_the_field_and_nothing_is_queued(
    run_id, phantoms, tmp_path, folder, message
):
    at = page("views/run.py", run=run_id)
    typed = folder.format(tmp=tmp_path, phantoms=phantoms)
    at.text_input(key="ext.path").input(typed).run()
    assert f"Cannot evaluate on {typed}: {message}" in texts(at, "error")
    assert at.button(key="ext.go").disabled
    assert RunStore().eval_jobs(run_id) == []


def test_the_terminal_hint_works_from_anywhere(run_id, isolated_store):
    captions = texts(page("views/run.py", run=run_id), "caption")
    assert f"cd {ROOT} && TBXRAY_RUNS_DIR={isolated_store}" in captions
    assert f"python -m pipeline evaluate {run_id} --data FOLDER" in captions


def test_a_killed_workers_evaluation_is_failed_by_the_next_worker(run_id, other):
    store = RunStore()
    job = store.queue_eval(run_id, str(other))
    store.claim_next_eval("killed")  # and never heart-beats again
    time.sleep(0.2)
    work(RunStore(), WorkerOptions(name="w2", once=True, poll_s=0.1, stale_after_s=0.1))
    job = store.get_eval_job(job.id)
    assert job.status == "failed"
    assert "worker 'killed' stopped sending heartbeats" in job.error
    assert "worker 'killed' stopped sending heartbeats" in texts(
        page("views/run.py", run=run_id), "error"
    )
