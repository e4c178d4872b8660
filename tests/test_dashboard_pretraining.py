"""Pretraining runs on the dashboard: their own table under the leaderboard, a page with the
loss terms and the encoder card, and their encoder offered as model.init on the Launch page."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import RunStore
from tests.pages import page, texts

CARD = {
    "method": "VICReg (Bardes et al. 2022), 3 x 256 projector",
    "n_images": 1200,
    "images": {"cxr-unlabelled": 1000, "tb-cxr": 200},
    "epochs": 2,
    "seconds": 75.0,
    "device": "CPU (2 cores)",
    "views": "crop, rotation",
    "linear_probe": {"tb-cxr": {"auc": 0.8123, "auc_scratch": 0.7011, "n": 200}},
}


@pytest.fixture
def pretrain_run(isolated_store: Path):
    store = RunStore()
    folder = isolated_store / "enc"
    folder.mkdir(parents=True)
    (folder / "encoder.keras").write_bytes(b"placeholder: the page reads only the card")
    run = store.create_run({"kind": "pretrain"}, name="cxr-encoder", kind="pretrain")
    store.start_run(run.id, worker="cli:1")
    for epoch, loss in ((1, 30.5), (2, 27.25)):
        store.log_epoch(run.id, epoch, {"loss": loss})
    history = {"loss": [30.5, 27.25], "invariance": [0.3, 0.2], "variance": [0.9, 0.6]}
    return store.finish_run(
        run.id,
        metrics={"pretrain": CARD, "history": history},
        artifacts_dir=str(folder),
        data_fingerprint="fp",
        versions={},
        duration_s=75.0,
    )


def test_the_leaderboard_lists_pretraining_runs_apart_with_their_probe(pretrain_run):
    at = page()
    frames = [df.value for df in at.dataframe]
    table = next(f for f in frames if "linear probe AUC" in f.columns)
    row = table.iloc[0]
    assert row["name"] == "cxr-encoder"
    assert row["final loss"] == "27.250"
    assert row["linear probe AUC"] == "tb-cxr 0.812"
    assert "Pretraining runs" in texts(at, "subheader")


def test_a_pretraining_run_page_shows_its_loss_and_card_and_no_threshold(pretrain_run):
    at = page("views/run.py", run=pretrain_run.id)
    assert at.title[0].value == "cxr-encoder"
    assert "Encoder card" in texts(at, "subheader")
    assert "1,200 images" in texts(at, "markdown")
    probe = at.dataframe[0].value.iloc[0]
    assert (probe["AUC, pretrained"], probe["AUC, same encoder untrained"]) == ("0.812", "0.701")
    assert "model.init=" in texts(at, "code")
    assert not at.slider  # no threshold explorer: there is no classifier
    assert len(at.get("plotly_chart")) == 1


def test_launch_offers_the_pretraining_runs_encoder_as_model_init(pretrain_run):
    at = page("views/launch.py")
    init = at.selectbox(key="cfg.model.init")
    path = str(Path(pretrain_run.artifacts_dir) / "encoder.keras")
    assert "scratch" in init.options[0]
    assert any("cxr-encoder" in option for option in init.options)
    init.set_value(path).run()
    assert not at.exception
    assert at.selectbox(key="cfg.model.init").value == path
