"""The Launch, Dataset and Leaderboard pages as a team uses them (issue 17): folders are
checked by the scan before anything is queued, every problem of the form shows at once, the
datasets under the data roots are offered, and runs launched elsewhere appear.

The store holds runs made through its own lifecycle methods (nothing is trained here); the
phantom dataset is the session's small one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import RunStore
from pipeline.config import preset
from pipeline.data import synth
from tests.pages import page, texts


@pytest.fixture
def runs(isolated_store, phantoms) -> dict[str, str]:
    """A run that succeeded on the phantoms, one running, one queued; ids by role."""
    store = RunStore()
    base = json.loads(preset("smoke", **{"data.path": str(phantoms)}).to_json())
    ids = {}
    for role in ("done", "running", "queued"):
        ids[role] = store.create_run({**base, "name": role}, name=role).id
    for role in ("done", "running"):
        store.start_run(ids[role], worker="test")
    store.finish_run(
        ids["done"],
        metrics={"auc": 0.9},
        artifacts_dir=str(isolated_store / ids["done"]),
        data_fingerprint="f",
        versions={},
        duration_s=1.0,
    )
    return ids


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """A data root of this test's own, named in TBXRAY_DATA_DIRS."""
    root = tmp_path / "datasets"
    root.mkdir()
    monkeypatch.setenv("TBXRAY_DATA_DIRS", str(root))
    return root


def flat(at: AppTest) -> list[tuple[str, str, str]]:
    """The page's elements in drawing order as (type, key, text)."""
    out: list[tuple[str, str, str]] = []

    def walk(node) -> None:
        for child in getattr(node, "children", {}).values():
            if child.type != "block":
                value = child.value if child.type in ("error", "caption") else ""
                out.append((child.type, getattr(child, "key", None) or "", str(value)))
            walk(child)

    walk(at.main)
    return out


def under(at: AppTest, key: str) -> str:
    """The error drawn right under the widget ``key`` (empty when there is none)."""
    elements = flat(at)
    i = next(i for i, (_, k, _) in enumerate(elements) if k == key)
    kind, _, text = elements[i + 1]
    return text if kind == "error" else ""


# Item 8: Launch refuses what the scan refuses, all problems at once ----------------------------


def test_an_empty_folder_is_refused_under_its_field_and_nothing_is_queued(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    at = page("views/launch.py")
    at.text_area(key="cfg.data.path").input(str(empty)).run()
    assert f"data.path: {empty} is empty" in under(at, "cfg.data.path")
    assert at.button(key="launch.enqueue").disabled
    assert len(RunStore().list_runs()) == len(runs)


def test_every_problem_of_the_form_shows_in_one_go(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    at = page("views/launch.py")
    at.text_area(key="cfg.data.path").input(str(empty))
    at.text_area(key="cfg.data.external").input("/no/such/site")
    at.text_input(key="cfg.model.filters").input("8, x")
    at.number_input(key="cfg.model.dropout").set_value(1.5)
    at.run()
    assert f"{empty} is empty" in under(at, "cfg.data.path")
    assert "no such folder '/no/such/site'" in under(at, "cfg.data.external")
    assert "write whole numbers separated by commas" in under(at, "cfg.model.filters")
    assert "Input should be less than 1 (got 1.5)" in under(at, "cfg.model.dropout")
    assert at.button(key="launch.enqueue").disabled


def test_one_external_folder_is_checked_as_a_folder_and_queued(runs, phantoms, tmp_path):
    site = tmp_path / "site"
    synth.generate(site, 12, size=64, seed=7)
    at = page("views/launch.py")
    at.text_area(key="cfg.data.path").input(str(phantoms))
    at.text_area(key="cfg.data.external").input(str(site)).run()
    assert not texts(at, "error").count("data.external")
    at.button(key="launch.enqueue").click().run()
    (new,) = [r for r in RunStore().list_runs() if r.id not in runs.values()]
    assert new.config["data"]["external"] == [str(site.resolve())]


def test_a_suite_lists_every_bad_dataset_folder(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    at = page("views/launch.py")
    at.text_area(key="suite.data").input(f"{empty}\n/no/such/folder").run()
    shown = under(at, "suite.data")
    assert f"{empty} is empty" in shown
    assert "no such folder '/no/such/folder'" in shown
    assert at.button(key="suite.enqueue").disabled


# Item 10: the datasets under the data roots --------------------------------------------------


def test_datasets_under_the_data_roots_are_offered_and_failed_folders_are_not(
    runs, data_root, tmp_path, monkeypatch
):
    synth.generate(data_root / "mini", 12, size=64, seed=3)
    (data_root / "empty").mkdir()
    other_root = tmp_path / "by-itself"  # a root that is itself a dataset
    synth.generate(other_root, 18, size=64, seed=4)
    monkeypatch.setenv("TBXRAY_DATA_DIRS", os.pathsep.join([str(data_root), str(other_root)]))
    store = RunStore()
    failed = store.create_run(
        {**store.get_run(runs["queued"]).config, "data": {"path": str(tmp_path / "empty")}},
        name="queued from the CLI on an empty folder",
    )
    store.fail_run(failed.id, "DatasetLayoutError: empty")
    (tmp_path / "empty").mkdir()
    phantoms = store.get_run(runs["done"]).config["data"]["path"]
    expected = [str(data_root / "mini"), str(other_root), str(Path(phantoms).resolve())]

    at = page("views/launch.py")
    picker = at.selectbox(key="launch.found")
    assert [o.split(" — ")[0] for o in picker.options] == ["mini", "by-itself", "phantoms0"]
    picker.set_value(expected[0]).run()
    assert at.text_area(key="cfg.data.path").value == expected[0]
    assert at.selectbox(key="launch.found").value is None  # the field shows what is queued
    assert str(data_root) in texts(at, "caption")

    at = page("views/dataset.py")
    assert at.radio(key="ds.source").value == "a dataset found"
    assert at.selectbox(key="ds.pick").options == picker.options
    assert {m.label: m.value for m in at.metric}["normal"] == "10"  # mini: 10 normal, 2 TB


def test_a_typed_folder_replaces_the_picked_one_in_view(runs, data_root, tmp_path):
    synth.generate(data_root / "mini", 12, size=64, seed=3)
    typed = tmp_path / "typed"
    synth.generate(typed, 18, size=64, seed=4)
    at = page("views/dataset.py")
    assert {m.label: m.value for m in at.metric}["normal"] == "10"
    at.radio(key="ds.source").set_value("another folder").run()
    assert not [s for s in at.selectbox if s.key == "ds.pick"]  # no hidden choice left
    at.text_input(key="ds.path").input(str(typed)).run()
    assert {m.label: m.value for m in at.metric}["normal"] == "15"
    at.radio(key="ds.source").set_value("a dataset found").run()
    assert {m.label: m.value for m in at.metric}["normal"] == "10"


def test_a_missing_data_root_is_named(isolated_store, monkeypatch, tmp_path):
    monkeypatch.setenv("TBXRAY_DATA_DIRS", str(tmp_path / "nowhere"))
    at = page("views/dataset.py")
    assert f"TBXRAY_DATA_DIRS names `{tmp_path / 'nowhere'}`, which does not exist" in texts(
        at, "caption"
    )


# Item 5: pages opened before a run was launched ----------------------------------------------


def enqueue_from_the_cli(name: str) -> str:
    """What ``python -m pipeline enqueue`` does: a run row, nothing else."""
    store = RunStore()
    config = store.list_runs()[0].config
    return store.create_run({**config, "name": name}, name=name).id


def test_the_leaderboard_shows_runs_launched_after_it_was_opened(runs):
    store = RunStore()
    for role in ("running", "queued"):
        store.cancel_run(runs[role])
    at = page()
    assert "refreshes every 10 s" in texts(at, "caption")
    new = enqueue_from_the_cli("from the CLI")
    at.button(key="lb.refresh").click().run()
    table = at.dataframe[0].value
    assert table.loc[new, "status"] == "queued"
    assert "refreshes every 3 s" in texts(at, "caption")
    store.cancel_run(new)
    at.button(key="lb.refresh").click().run()
    assert at.dataframe[0].value.loc[new, "status"] == "cancelled"


def test_an_empty_leaderboard_shows_the_first_run_launched(isolated_store, phantoms):
    at = page()
    assert "No runs yet" in texts(at, "info")
    config = json.loads(preset("smoke", **{"data.path": str(phantoms)}).to_json())
    new = RunStore().create_run(config, name="first").id
    at.button(key="lb.refresh").click().run()
    assert new in at.dataframe[0].value.index


def test_the_queue_shows_runs_launched_elsewhere_and_idle_workers(runs):
    store = RunStore()
    store.worker_alive("host:1", current_run=runs["running"])
    at = page("views/launch.py")
    assert "host:1 (training" in texts(at, "caption")
    store.cancel_run(runs["running"])
    store.worker_alive("host:1", current_run=None)
    new = enqueue_from_the_cli("from another tab")
    at.button(key="launch.refresh").click().run()
    links = [link.proto.label for link in at.get("page_link")]
    assert any(label.startswith("from another tab") for label in links)
    assert not any(label.startswith("running") for label in links)
    assert "host:1 (idle)" in texts(at, "caption")
    assert new in {k.removeprefix("cancel.") for k in (b.key for b in at.button) if k}
