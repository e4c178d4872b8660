"""The Streamlit dashboard through AppTest, over a temporary store seeded with real runs.

Two tiny models are trained once for the module (64 px phantoms, one epoch); a failed, a
running and a queued run are added through the store's own lifecycle methods. Every test
works on its own copy of that store, so what one test enqueues or promotes no other sees.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard import imaging, ui
from db import RunStore
from pipeline import formats
from pipeline.config import preset
from pipeline.data import synth
from pipeline.evaluation.metrics import metrics as computed_metrics
from pipeline.experiments import plan, suites
from pipeline.training import train
from tests.pages import APP, ROOT, copy_store, metrics, page, seed_store, texts


@pytest.fixture(scope="module")
def seeded(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("dashboard-store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TBXRAY_RUNS_DIR", str(base))
        mp.setenv("TBXRAY_CACHE_DIR", str(base / "cache"))
        mp.delenv("TBXRAY_DB_URL", raising=False)
        ids = seed_store(phantoms)
    return base, ids


@pytest.fixture
def ids(seeded, isolated_store) -> dict[str, str]:
    """This test's own copy of the seeded store (TBXRAY_RUNS_DIR already points at it)."""
    base, run_ids = seeded
    copy_store(base, isolated_store)
    return run_ids


# Leaderboard -----------------------------------------------------------------------------------


def test_leaderboard_lists_every_run_with_status_and_live_epoch(ids):
    at = page()
    table = at.dataframe[0].value
    assert set(table.index) == set(ids.values())
    assert table.loc[ids["failed"], "status"] == "failed"
    assert table.loc[ids["running"], "progress"] == "epoch 2/5"
    assert table.loc[ids["queued"], "status"] == "queued"
    assert 0 <= table.loc[ids["clahe"], "auc"] <= 1
    assert "5 of 5 runs" in texts(at, "caption")


def test_leaderboard_opens_on_one_dataset_at_a_time(ids, tmp_path):
    store = RunStore()
    plain = store.get_run(ids["plain"])
    other = {**plain.config, "data": {**plain.config["data"], "path": str(tmp_path / "tb-cxr")}}
    newest = store.create_run(other, name="on tb-cxr")
    store.start_run(newest.id, worker="test")
    store.finish_run(
        newest.id,
        metrics=plain.metrics,
        artifacts_dir=plain.artifacts_dir,
        data_fingerprint="f" * 64,
        versions={},
        duration_s=1.0,
    )
    at = page()
    # The newest run's dataset first: its runs only, named by folder and contents.
    assert at.selectbox(key="lb.dataset").value == "tb-cxr · ffffffffff"
    assert list(at.dataframe[0].value.index) == [newest.id]
    assert at.dataframe[0].value.loc[newest.id, "dataset"] == "tb-cxr"
    phantoms = f"{Path(plain.config['data']['path']).name} · {plain.data_fingerprint[:10]}"
    assert phantoms in at.selectbox(key="lb.dataset").options
    # The phantom runs, queued and failed ones included (they go with their folder's name).
    at.selectbox(key="lb.dataset").set_value(phantoms).run()
    assert set(at.dataframe[0].value.index) == set(ids.values())
    at.selectbox(key="lb.dataset").set_value("all datasets").run()
    assert set(at.dataframe[0].value.index) == {*ids.values(), newest.id}
    assert {"roi", "init"} <= set(at.dataframe[0].value.columns)


def test_filter_expression_and_sort(ids):
    at = page()
    at.text_input(key="lb.expr").input('enhancement == "clahe" and auc >= 0').run()
    assert list(at.dataframe[0].value.index) == [ids["clahe"]]

    at.text_input(key="lb.expr").input('status in ["failed", "queued"]').run()
    assert set(at.dataframe[0].value.index) == {ids["failed"], ids["queued"]}

    at.text_input(key="lb.expr").input("").run()
    at.selectbox(key="lb.sort").set_value("name").run()
    at.toggle(key="lb.desc").set_value(False).run()
    names = list(at.dataframe[0].value["name"])
    assert names == sorted(names)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("auc >", "cannot parse"),
        ("__import__('os').system('true')", "is not allowed"),
        ("colour == 'red'", "unknown column 'colour'"),
        ("auc", "is not a condition"),
    ],
)
def test_a_bad_filter_expression_is_explained_under_its_input(ids, expression, message):
    at = page()
    at.text_input(key="lb.expr").input(expression).run()
    assert message in texts(at, "error")
    assert at.dataframe[0].value.empty


def test_a_filter_error_quotes_the_expression_as_typed_not_as_markdown(ids):
    """Streamlit reads an error as Markdown: ``__import__`` showed as a bold "import"."""
    at = page()
    at.text_input(key="lb.expr").input("__import__('os')").run()
    (error,) = [e.value for e in at.error]
    assert re.search(r"(?<!\\)[_*`]", error) is None  # nothing left for Markdown to read
    assert "__import__('os')" in re.sub(r"\\(.)", r"\1", error)  # what the reader sees


def test_grouping_runs_that_no_filter_leaves_says_so(ids):
    at = page()
    at.selectbox(key="lb.group").set_value("image_size").run()
    at.text_input(key="lb.expr").input("auc > 0.99").run()
    assert not at.exception
    assert "No run is left by the filters above to group." in texts(at, "info")
    at.text_input(key="lb.expr").input("auc >").run()  # an invalid filter: no rows either
    assert not at.exception
    assert "cannot parse" in texts(at, "error")


def test_ticked_rows_open_a_run_or_compare_runs(ids):
    at = page()
    at.text_input(key="lb.expr").input('status == "succeeded"').run()
    rows = list(at.dataframe[0].value.index)
    at.session_state["lb.table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert at.button(key="lb.compare").disabled
    at.button(key="lb.open").click().run()
    assert at.title[0].value == RunStore().get_run(rows[0]).name
    assert at.query_params["run"] == rows[0]

    at = page()
    at.session_state["lb.table"] = {"selection": {"rows": [0, 1], "columns": [], "cells": []}}
    at.run()
    picked = list(at.dataframe[0].value.index[:2])
    at.button(key="lb.compare").click().run()
    assert at.title[0].value == "Compare"
    assert at.query_params["runs"] == ",".join(picked)


def test_group_by_a_config_field_gives_mean_and_std(ids):
    at = page()
    at.selectbox(key="lb.group").set_value("enhancement").run()
    grouped = at.dataframe[1].value.set_index("enhancement")
    assert grouped.loc["none", "runs"] == 4
    assert grouped.loc["clahe", "runs"] == 1
    assert grouped.loc["clahe", "succeeded"] == 1


def test_an_empty_store_points_to_launch(isolated_store):
    at = page()
    assert "No runs yet" in texts(at, "info")
    assert [link.proto.page for link in at.get("page_link")] == ["launch"]


# Launch ----------------------------------------------------------------------------------------


def test_launch_form_enqueues_one_run_per_seed(ids, phantoms):
    store = RunStore()
    before = {r.id for r in store.list_runs()}
    at = page("views/launch.py")
    at.text_area(key="cfg.data.path").input(str(phantoms)).run()
    at.number_input(key="cfg.train.epochs").set_value(2).run()
    at.number_input(key="launch.repeats").set_value(3).run()
    button = at.button(key="launch.enqueue")
    assert button.label == "Queue 3 runs"
    button.click().run()
    new = [r for r in store.list_runs() if r.id not in before]
    assert len(new) == 3
    assert {r.status for r in new} == {"queued"}
    assert sorted(r.config["seed"] for r in new) == [0, 1, 2]
    assert {r.config["train"]["epochs"] for r in new} == {2}
    assert {r.config["data"]["path"] for r in new} == {str(phantoms.resolve())}
    assert "Queued 3 run(s)" in texts(at, "success")


def test_launch_form_takes_several_dataset_folders_one_per_line(ids, phantoms, tmp_path):
    second = tmp_path / "second"
    synth.generate(second, 12, size=64, seed=5)
    store = RunStore()
    before = {r.id for r in store.list_runs()}
    at = page("views/launch.py")
    at.text_area(key="cfg.data.path").input(f"{phantoms}\n\n{second}\n").run()
    at.button(key="launch.enqueue").click().run()
    (new,) = [r for r in store.list_runs() if r.id not in before]
    assert new.config["data"]["path"] == [str(phantoms.resolve()), str(second.resolve())]
    at.text_area(key="cfg.data.path").input(f"{phantoms}\n/no/such/folder").run()
    assert "data.path: no such folder '/no/such/folder'" in texts(at, "error")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cfg.model.dropout", 1.5, "model.dropout: Input should be less than 1 (got 1.5)"),
        ("cfg.data.image_size", 16, "data.image_size: Input should be greater than or equal to 32"),
        ("cfg.data.val_fraction", 0.4, "val_fraction + test_fraction must be at most 0.7"),
        ("cfg.data.path", "/no/such/folder", "data.path: no such folder"),
        ("cfg.model.filters", "8, x", "model.filters: write whole numbers separated by commas"),
    ],
)
def test_launch_form_refuses_bad_values_with_the_fields_message(ids, key, value, message):
    at = page("views/launch.py")
    if isinstance(value, float | int):
        widget = at.number_input(key=key)
    elif key == "cfg.data.path":
        widget = at.text_area(key=key)  # one folder per line
    else:
        widget = at.text_input(key=key)
    if key == "cfg.data.val_fraction":
        at.number_input(key="cfg.data.test_fraction").set_value(0.4)
    widget.set_value(value).run()
    assert message in texts(at, "error")
    assert at.button(key="launch.enqueue").disabled
    assert len(RunStore().list_runs()) == len(ids)


def test_launch_suite_enqueues_settings_times_seeds(ids, phantoms):
    at = page("views/launch.py")
    at.selectbox(key="suite.name").set_value("pooling")
    at.text_area(key="suite.data").input(str(phantoms))
    at.number_input(key="suite.seeds").set_value(2).run()
    assert "4 runs will be queued: 2 settings × 2 seeds" in texts(at, "info")
    at.text_area(key="suite.overrides").input("model.pooling=avg").run()
    assert "model.pooling is what suite 'pooling' varies" in texts(at, "error")
    assert at.button(key="suite.enqueue").disabled
    at.text_area(key="suite.overrides").input("train.epochs=2").run()
    at.button(key="suite.enqueue").click().run()
    (suite,) = RunStore().list_suites()
    queued = RunStore().list_runs(suite_id=suite.id)
    assert suite.name == "pooling"
    assert len(queued) == 4
    assert {r.config["model"]["pooling"] for r in queued} == {"max", "avg"}
    assert {r.config["train"]["epochs"] for r in queued} == {2}


def test_launch_suite_run_cap_limits_settings(ids, phantoms):
    at = page("views/launch.py")
    at.selectbox(key="suite.name").set_value("hyperparams")
    at.text_area(key="suite.data").input(str(phantoms))
    at.number_input(key="suite.cap").set_value(3)
    at.number_input(key="suite.seeds").set_value(2).run()
    assert "6 runs will be queued: 3 settings × 2 seeds" in texts(at, "info")


def test_queue_cancel_buttons_cancel_runs(ids):
    at = page("views/launch.py")
    at.button(key=f"cancel.{ids['queued']}").click().run()
    assert RunStore().get_run(ids["queued"]).status == "cancelled"
    assert RunStore().get_run(ids["running"]).status == "running"


def test_start_a_worker_when_none_is_alive(ids, monkeypatch, isolated_store):
    started = {}

    class FakePopen:
        pid = 4242

        def __init__(self, args, **kwargs):
            started.update(args=args, **kwargs)

    monkeypatch.setattr(ui.subprocess, "Popen", FakePopen)
    at = page("views/launch.py")
    assert "No worker is alive" in texts(at, "warning")
    at.button(key="launch.start_worker").click().run()
    assert started["args"] == [sys.executable, "-m", "pipeline", "worker"]
    assert started["env"]["TBXRAY_RUNS_DIR"] == str(isolated_store)
    assert started["start_new_session"] is True
    assert "worker started (pid 4242)" in texts(at, "caption")


def test_a_live_worker_replaces_the_start_button(ids):
    RunStore().worker_alive("host:1", current_run=ids["running"])
    at = page("views/launch.py")
    assert "1 worker alive: host:1 (training" in texts(at, "caption")
    assert not [b for b in at.button if b.key == "launch.start_worker"]


# Run -------------------------------------------------------------------------------------------


def test_run_page_shows_metrics_and_a_live_threshold(ids):
    run = RunStore().get_run(ids["plain"])
    at = page("views/run.py", run=run.id)
    shown = metrics(at)
    assert shown["AUC (test)"] == f"{run.auc:.3f}"
    assert shown["threshold"] == f"{run.threshold:.4f}"

    labels, scores = ui.test_scores(run)
    for threshold in (0.0, 0.5):
        at.slider(key="run.threshold").set_value(threshold).run()
        expected = computed_metrics(labels, scores, threshold)
        shown = {m.label: m.value for m in at.metric[7:]}
        assert shown["sensitivity"] == formats.number(expected["sensitivity"])
        assert shown["specificity"] == formats.number(expected["specificity"])
        assert shown["PPV"] == formats.number(expected["precision"])
        assert shown["NPV"] == formats.number(expected["npv"])
    assert at.image or "No test image is misclassified" in texts(at, "success")


def test_run_page_of_a_two_source_run_finds_its_test_images(ids, phantoms, tmp_path):
    second = tmp_path / "second"
    synth.generate(second, 40, tb_ratio=1.0, size=64, seed=6)
    cfg = preset("smoke", **{"data.path": [str(phantoms), str(second)], "name": "two sources"})
    run = train.run(cfg, RunStore())
    # Saved paths are relative to the folders' common parent and resolve to the images.
    files = ui.predictions(run)["file"]
    assert all(Path(f).is_file() for f in files)
    assert {Path(f).parents[1] for f in files} == {phantoms.resolve(), second.resolve()}
    at = page("views/run.py", run=run.id)
    assert metrics(at)["AUC (test)"] == f"{run.auc:.3f}"


def test_run_page_shows_a_failed_runs_traceback(ids):
    at = page("views/run.py", run=ids["failed"])
    assert "This run failed" in texts(at, "error")
    assert "ValueError: boom" in texts(at, "code")


def test_run_page_shows_a_running_runs_epoch(ids):
    at = page("views/run.py", run=ids["running"])
    (bar,) = at.get("progress")
    assert "epoch 2 of at most 5" in bar.proto.text


def test_relaunch_opens_the_form_filled_with_the_runs_config(ids):
    at = page("views/run.py", run=ids["clahe"])
    at.button(key="run.relaunch").click().run()
    assert not at.exception
    assert at.text_input(key="cfg.name").value == "clahe"
    assert at.selectbox(key="cfg.data.enhancement").value == "clahe"
    assert at.selectbox(key="launch.base").value.startswith("run clahe")


def test_misclassified_images_get_gradcam_overlays(ids):
    at = page("views/run.py", run=ids["plain"])
    if "No test image is misclassified" in texts(at, "success"):
        pytest.skip("the smoke model misclassified nothing")
    plain = [url for img in at.image for url in img.value]
    at.toggle(key="run.gradcam").set_value(True).run()
    assert not at.exception
    overlaid = [url for img in at.image for url in img.value]
    assert len(overlaid) == len(plain)
    assert overlaid != plain


# Compare ---------------------------------------------------------------------------------------


def test_compare_shows_only_differing_config_fields(ids):
    at = page("views/compare.py", runs=f"{ids['plain']},{ids['clahe']}")
    metrics_table, diff = at.dataframe[0].value, at.dataframe[1].value
    assert "AUC (95% CI)" in metrics_table.index
    assert {"data.enhancement", "seed", "name"} == set(diff.index)


def test_compare_warns_when_the_runs_were_tested_on_different_images(ids):
    store = RunStore()
    # Seeds 0 and 1 split the phantoms differently: two test sets.
    at = page("views/compare.py", runs=f"{ids['plain']},{ids['clahe']}")
    (warning,) = [w.value for w in at.warning]
    assert "tested on different images" in warning
    assert "plain · " in warning
    assert "clahe · " in warning
    # A run scored on the very same test images as "plain" compares without the warning.
    plain = store.get_run(ids["plain"])
    twin = store.create_run(plain.config, name="twin")
    store.start_run(twin.id, worker="test")
    store.finish_run(
        twin.id,
        metrics=plain.metrics,
        artifacts_dir=plain.artifacts_dir,
        data_fingerprint=plain.data_fingerprint,
        versions={},
        duration_s=1.0,
    )
    at = page("views/compare.py", runs=f"{ids['plain']},{twin.id}")
    assert not at.warning


def test_compare_suite_summary_and_factor_chart(ids, phantoms):
    store = RunStore()
    spec = suites.SUITES["pooling"]
    suite, _ = plan.enqueue(store, spec, plan.expand(spec, data_path="x"))
    at = page("views/compare.py", suite=suite.id)
    summary = at.dataframe[-1].value
    assert set(summary["setting"]) == {"model.pooling=max", "model.pooling=avg"}
    assert list(summary["ok / runs"]) == ["0/1", "0/1"]


# Explain ---------------------------------------------------------------------------------------


def test_explain_scores_a_test_image_with_gradcam_then_lime(ids):
    run = RunStore().get_run(ids["plain"])
    at = page("views/explain.py", run=run.id)
    shown = metrics(at)
    first = ui.predictions(run).query("split == 'test'")["file"].iloc[0]
    p = ui.predictor(run).predict(Path(first))
    # P(TB) and the threshold with the same decimals, as many as it takes to tell them apart.
    assert (shown["P(TB)"], shown["threshold"]) == formats.probability_and_threshold(
        p.probability, run.threshold
    )
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("Grad-CAM") and "in the lungs" in c for c in captions)
    at.button(key="ex.lime").click().run()
    assert not at.exception
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("LIME") for c in captions)


def test_explain_scores_a_dicom_upload_like_its_png_export_and_notes_burned_in_text(ids):
    from PIL import Image

    from tests.dicom_files import displayed_as

    run = RunStore().get_run(ids["plain"])
    first = ui.predictions(run).query("split == 'test'")["file"].iloc[0]
    image = np.asarray(Image.open(first).convert("L"))
    at = page("views/explain.py", run=run.id)
    at.segmented_control(key="ex.source").set_value("upload").run()
    dicom = displayed_as(image, BurnedInAnnotation="YES")
    at.file_uploader(key="ex.upload").set_value(("chest.dcm", dicom, "application/dicom")).run()
    assert not at.exception
    assert metrics(at)["P(TB)"] == f"{ui.predictor(run).predict(Path(first)).probability:.3f}"
    assert "burned into the image" in texts(at, "warning")


def test_explain_gives_noise_the_public_apps_cannot_assess_not_a_verdict(ids):
    """One assessment everywhere: what the public app cannot assess gets no verdict here."""
    import io

    from PIL import Image

    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (128, 128), np.uint8))
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    at = page("views/explain.py", run=ids["plain"])
    at.segmented_control(key="ex.source").set_value("upload").run()
    at.file_uploader(key="ex.upload").set_value(("noise.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    error = texts(at, "error")
    assert "Cannot assess" in error
    assert "noise" in error
    assert "verdict" not in metrics(at)  # no "normal" or "TB" for a picture of noise
    at.toggle(key="ex.anyway").set_value(True).run()
    assert not at.exception
    assert metrics(at)["verdict"] == "none"


def test_explain_assesses_an_image_once_not_on_every_slider_move(ids, monkeypatch):
    from pipeline.serving.assess import Assessor

    calls: list[int] = []
    screen = Assessor.screen
    monkeypatch.setattr(
        Assessor, "screen", lambda self, *a, **k: calls.append(1) or screen(self, *a, **k)
    )
    at = page("views/explain.py", run=ids["plain"])
    assert len(calls) == 1
    at.slider(key="ex.alpha").set_value(0.8).run()
    assert not at.exception
    assert len(calls) == 1  # the same image: decoded, segmented and scored once


def test_explain_refuses_an_unreadable_upload_next_to_it(ids):
    at = page("views/explain.py", run=ids["plain"])
    at.segmented_control(key="ex.source").set_value("upload").run()
    at.file_uploader(key="ex.upload").set_value(("notes.png", b"not pixels", "image/png")).run()
    assert "notes.png:" in texts(at, "error")


def test_explain_refuses_a_truncated_jpeg_upload_with_its_reason(ids):
    at = page("views/explain.py", run=ids["plain"])
    at.segmented_control(key="ex.source").set_value("upload").run()
    upload = ("cut.jpg", header_cut_jpeg(), "image/jpeg")
    at.file_uploader(key="ex.upload").set_value(upload).run()
    assert not at.exception
    error = texts(at, "error")
    assert error.startswith("cut.jpg: the file is truncated or corrupt"), error
    assert "fetch it again" in error


# Publish ---------------------------------------------------------------------------------------


def test_promote_warns_asks_who_and_why_then_changes_the_served_run(ids):
    store = RunStore()
    at = page("views/publish.py", run=ids["clahe"])
    assert store.served_run() is None
    # Phantom-trained and never evaluated elsewhere: both said before anything is promoted.
    warning = texts(at, "warning")
    assert "no external evaluation" in warning
    assert "trained on synthetic phantoms" in warning
    assert at.button(key="pub.promote").disabled  # no name, no reason, not confirmed
    at.text_input(key="pub.who").input("Dr Lee")
    at.text_input(key="pub.note").input("better contrast").run()
    assert at.button(key="pub.promote").disabled  # the warning is not confirmed yet
    at.checkbox(key="pub.confirm").check().run()
    at.button(key="pub.promote").click().run()
    served = store.served_run()
    assert served is not None
    assert served.id == ids["clahe"]
    promotion = store.promotions()[0]
    assert (promotion.note, promotion.promoted_by) == ("better contrast", "Dr Lee")
    assert "is now served" in texts(at, "success")
    assert at.button(key="pub.promote").disabled
    # The threshold it is served at still reads as chosen (it fell back to "Choose an option").
    assert at.selectbox(key="pub.calibration").value is not None
    assert (
        at.selectbox(key="pub.calibration")
        .format_func(at.selectbox(key="pub.calibration").value)
        .startswith("validated on the run's own data")
    )
    history = at.dataframe[-1].value
    assert list(history["by"]) == ["Dr Lee"]
    assert list(history["why"]) == ["better contrast"]
    assert history["threshold"].iloc[0] == pytest.approx(store.get_run(ids["clahe"]).threshold)
    assert list(history["calibrated for"]) == ["— (validated)"]


def test_calibrate_a_run_for_a_site_then_publish_it_at_that_threshold(ids, tmp_path):
    site = tmp_path / "clinic"
    synth.generate(site, 60, size=64, seed=9, tb_ratio=1.0)
    at = page("views/run.py", run=ids["plain"])
    at.text_input(key="cal.path").input(str(site))
    at.text_input(key="cal.site").input("Clinic C")
    at.button(key="cal.go").click().run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert "site threshold" in shown
    assert "sensitivity (check)" in shown
    assert RunStore().calibrations(ids["plain"]) == []  # a preview until it is saved
    at.button(key="cal.save").click().run()
    (cal,) = RunStore().calibrations(ids["plain"])
    assert (cal.site, cal.n_images) == ("Clinic C", 60)
    assert f"{cal.threshold:.4f}" == shown["site threshold"]

    pub = page("views/publish.py", run=ids["plain"])
    pub.selectbox(key="pub.calibration").set_value(cal.id)
    pub.text_input(key="pub.who").input("Dr Lee")
    pub.text_input(key="pub.note").input("site threshold for Clinic C")
    pub.checkbox(key="pub.confirm").check().run()
    pub.button(key="pub.promote").click().run()
    assert RunStore().served_calibration() == cal
    assert "calibrated for **Clinic C**" in texts(pub, "caption")


# Dataset ---------------------------------------------------------------------------------------


def test_dataset_page_describes_a_folder_and_lists_bad_files(isolated_store, tmp_path):
    data = tmp_path / "data"
    synth.generate(data, 24, size=64, seed=3)
    (data / "Normal" / "broken.png").write_bytes(b"not an image")
    at = page("views/dataset.py")
    at.text_input(key="ds.path").input(str(data)).run()
    assert not at.exception
    shown = metrics(at)
    assert (shown["normal"], shown["TB"]) == ("20", "4")
    assert shown["bad files"] == "1"
    bad = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(bad["file"]) == ["Normal/broken.png"]
    # Burned-in marks per class: the phantoms carry none.
    marks = next(d.value for d in at.dataframe if "solid boxes" in d.value.index)
    assert set(marks.index) == {"solid boxes", "text and markers"}
    assert (marks.to_numpy() == 0).all()
    # Lung fields of the sample, on request: counted per class, outlines on the thumbnails.
    assert not any("mean_share" in d.value.columns for d in at.dataframe)
    at.toggle(key="ds.lungs_on").set_value(True).run()
    assert not at.exception
    lungs = next(d.value for d in at.dataframe if "mean_share" in d.value.columns)
    assert lungs.loc["normal", "images"] == 20
    assert lungs.loc["tb", "images"] == 4
    assert 0.1 < lungs["mean_share"].min() < 0.6
    assert (lungs["low_confidence"] == 0).all()  # phantoms' lungs are outlined with confidence


def test_dataset_page_shows_lungs_outlined_with_low_confidence_as_such(
    isolated_store, tmp_path, monkeypatch
):
    from pipeline.lungs.segmenter import Segmenter

    data = tmp_path / "data"
    synth.generate(data, 24, size=64, seed=5)
    sure = Segmenter.probabilities

    def unsure(self, batch):  # the same outlines at 0.5, but every pixel near 0.5
        return 0.5 + 0.3 * (sure(self, batch) - 0.5)

    monkeypatch.setattr(Segmenter, "probabilities", unsure)
    at = page("views/dataset.py")
    at.text_input(key="ds.path").input(str(data)).run()
    at.toggle(key="ds.lungs_on").set_value(True).run()
    assert not at.exception
    lungs = next(d.value for d in at.dataframe if "mean_share" in d.value.columns)
    assert lungs.loc["normal", "low_confidence"] == 20
    assert lungs.loc["normal", "implausible"] == 20  # a guessed outline is not a plausible one
    bad = next(d.value for d in at.dataframe if "why not" in d.value.columns)
    assert bad["why not"].str.contains("the lung outline is uncertain").all()
    captions = [c for img in at.image for c in img.captions]
    assert any(c.endswith("· low-confidence lungs") for c in captions)


def header_cut_jpeg() -> bytes:
    """A JPEG cut short inside its header, as an interrupted download leaves it."""
    buf = io.BytesIO()
    Image.fromarray(synth.render_phantom(np.random.default_rng(0), 64, False).image).save(
        buf, format="JPEG"
    )
    return buf.getvalue()[:100]


def test_dataset_page_lists_a_truncated_jpeg_and_describes_the_rest(isolated_store, tmp_path):
    # The scan stopped at the file, and the page showed "Truncated File Read" and nothing else.
    data = tmp_path / "data"
    synth.generate(data, 24, size=64, seed=3)
    (data / "Tuberculosis" / "cut.jpg").write_bytes(header_cut_jpeg())
    at = page("views/dataset.py")
    at.text_input(key="ds.path").input(str(data)).run()
    assert not at.exception
    assert not at.error
    shown = metrics(at)
    assert (shown["normal"], shown["TB"], shown["bad files"]) == ("20", "4", "1")
    bad = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(bad["file"]) == ["Tuberculosis/cut.jpg"]
    assert "truncated or corrupt" in bad["reason"].iloc[0]
    assert "fetch it again" in bad["reason"].iloc[0]
    assert any("solid boxes" in d.value.index for d in at.dataframe)  # the audit goes on


@pytest.mark.parametrize(
    ("rows", "cols", "edge"),
    [
        (slice(110, 120), slice(40, 70), "bottom"),
        (slice(4, 14), slice(40, 70), "top"),
        (slice(40, 70), slice(4, 14), "left"),
        (slice(40, 70), slice(114, 124), "right"),
    ],
)
def test_border_box_check_names_the_edge_it_is_on(rows, cols, edge):
    img = np.full((128, 128), 90, np.uint8)
    img[rows, cols] = 255
    assert imaging.bright_boxes(img) == [edge]
    assert imaging.bright_boxes(np.full((128, 128), 90, np.uint8)) == []


def test_dataset_page_explains_a_bad_path(isolated_store):
    at = page("views/dataset.py")
    at.text_input(key="ds.path").input("/no/such/folder").run()
    assert "no such folder '/no/such/folder'" in texts(at, "error")


# Qualities -------------------------------------------------------------------------------------

NO_TF = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({app!r}, default_timeout=90)
at.query_params["run"] = {run!r}
at.run()
for path in ("views/run.py", "views/compare.py", "views/launch.py", "views/dataset.py",
             "views/publish.py"):
    at.switch_page(path).run()
    assert not at.exception, (path, at.exception)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print("LOADED", loaded)
"""


def test_pages_without_a_model_never_import_tensorflow(ids, isolated_store):
    script = NO_TF.format(app=str(APP), run=ids["plain"])
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED []" in out.stdout


def test_store_copy_is_private(ids, seeded):
    RunStore().promote(ids["plain"])
    base, _ = seeded
    assert RunStore(f"sqlite:///{base / 'tbxray.db'}").promotions() == []


def test_a_wrong_link_says_no_such_run_and_keeps_the_address(ids):
    for view, param, value in (
        ("views/run.py", "run", "nope"),
        ("views/explain.py", "run", "nope"),
        ("views/compare.py", "runs", "nope,alsonope"),
    ):
        at = AppTest.from_file(str(APP), default_timeout=90)
        at.run()
        at.switch_page(view)
        at.query_params[param] = value
        at.run()
        assert not at.exception, (view, at.exception)
        assert "No run `nope`" in texts(at, "error"), view
        assert at.query_params[param] == value, view  # the address is left as it was
        assert not at.metric or view == "views/compare.py", view  # no other run's figures
