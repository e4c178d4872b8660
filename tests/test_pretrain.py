"""Pretraining (pipeline.pretraining) on a tiny phantom set, in seconds: the loss falls, an
interrupted run resumes from its checkpoint, and the encoder starts a classifier — frozen for as
many epochs as asked. The shipped encoder is made by the real command, not here."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from db import RunStore
from pipeline import encoder
from pipeline.cli import main
from pipeline.config import preset
from pipeline.model import build_encoder, build_model
from pipeline.pretraining import pretrain
from pipeline.pretraining.views import Views
from pipeline.training import callbacks, train

TINY = {"model.filters": (8, 16), "model.dense_units": (8,), "data.image_size": 64}


def _options(folder: Path, **changes) -> pretrain.Options:
    values = {
        "folders": (str(folder),),
        "epochs": 4,
        "batch_size": 16,
        "view_side": 48,
        "probe": (str(folder),),
        "name": "tiny-pretrain",
    } | changes
    return pretrain.Options(**values)


@pytest.fixture
def pretrained(phantoms):
    cfg = preset("smoke", **TINY)
    run = pretrain.run(cfg, _options(phantoms), RunStore())
    return cfg, run


def test_views_are_different_crops_of_the_same_grey_image():
    x = np.tile(np.linspace(0, 255, 64, dtype=np.float32), (2, 64, 1))[..., np.newaxis]
    views = Views(32)
    a, b = np.asarray(views(x)), np.asarray(views(x))
    assert a.shape == (2, 32, 32, 1)
    assert a.min() >= 0
    assert a.max() <= 255
    assert not np.allclose(a, b)


def test_pretraining_lowers_the_loss_and_records_a_pretrain_run(pretrained):
    _cfg, run = pretrained
    assert run.status == "succeeded"
    assert run.kind == "pretrain"
    losses = [e.loss for e in RunStore().epochs(run.id)]
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    card = json.loads((Path(run.artifacts_dir) / "encoder.json").read_text())
    assert card["method"].startswith("VICReg")
    assert card["n_images"] == 120
    assert card["epochs"] == 4
    assert card["device"].startswith(("CPU", "GPU"))
    probe = card["linear_probe"][Path(run.config["pretrain"]["folders"][0]).name]
    assert 0 <= probe["auc"] <= 1
    assert probe["n"] == 120
    # Never offered as a classifier.
    assert run.id not in {r.id for r in RunStore().list_runs()}


def test_an_interrupted_pretraining_resumes_where_it_stopped(phantoms, monkeypatch):
    cfg = preset("smoke", **TINY)
    options = _options(phantoms, probe=())
    real = callbacks.StoreLogger.on_epoch_end

    def crash_after_two(self, epoch, logs=None):
        real(self, epoch, logs)
        if epoch == 1:
            raise RuntimeError("the machine went down")

    monkeypatch.setattr(callbacks.StoreLogger, "on_epoch_end", crash_after_two)
    with pytest.raises(RuntimeError):
        pretrain.run(cfg, options, RunStore())
    (failed,) = RunStore().list_runs(kind="pretrain")
    assert failed.status == "failed"
    assert pretrain.checkpoint_dir(pretrain._stored_config(cfg, options)).is_dir()
    monkeypatch.setattr(callbacks.StoreLogger, "on_epoch_end", real)
    resumed = pretrain.run(cfg, options, RunStore())
    assert [e.epoch for e in RunStore().epochs(resumed.id)] == [3, 4]
    assert not pretrain.checkpoint_dir(pretrain._stored_config(cfg, options)).exists()


def test_the_encoder_starts_a_classifier_and_stays_frozen_while_asked(pretrained, phantoms):
    cfg, run = pretrained
    path = str(Path(run.artifacts_dir) / "encoder.keras")
    trained = keras.saving.load_model(path, compile=False)
    model = build_model(preset("smoke", **TINY, **{"model.init": path}))
    for name in encoder.encoder_layers(cfg):
        for mine, theirs in zip(
            model.get_layer(name).get_weights(), trained.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(mine, theirs)
    frozen = preset(
        "smoke",
        **TINY,
        **{
            "model.init": path,
            "model.freeze_encoder_epochs": 2,
            "train.epochs": 2,
            "data.path": str(phantoms),
        },
    )
    done = train.run(frozen, RunStore())
    assert done.status == "succeeded"
    served = keras.saving.load_model(Path(done.artifacts_dir) / "model.keras", compile=False)
    conv = served.get_layer("block1_conv").get_weights()[0]
    np.testing.assert_array_equal(conv, trained.get_layer("block1_conv").get_weights()[0])
    head = served.get_layer("tb_probability").get_weights()[0]
    fresh = build_model(preset("smoke", **TINY)).get_layer("tb_probability").get_weights()[0]
    assert not np.allclose(head, fresh)


def test_an_encoder_for_another_architecture_is_refused_by_name(pretrained):
    _, run = pretrained
    path = str(Path(run.artifacts_dir) / "encoder.keras")
    wider = preset("smoke", **(TINY | {"model.filters": (8, 32), "model.init": path}))
    with pytest.raises(ValueError, match=r"model.filters: encoder \[8, 16\], classifier \[8, 32\]"):
        build_model(wider)
    with pytest.raises(ValueError, match="no encoder 'nowhere'"):
        build_model(preset("smoke", **TINY, **{"model.init": "nowhere"}))


def test_the_cli_pretrains_and_says_how_to_use_the_encoder(phantoms, capsys):
    code = main(
        [
            "pretrain",
            "--data",
            str(phantoms),
            "--preset",
            "smoke",
            "--set",
            "model.filters=[8, 16]",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--view-side",
            "32",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "linear probe on" in out
    assert "--set model.init=" in out
    (run,) = RunStore().list_runs(kind="pretrain")
    assert Path(run.artifacts_dir, "encoder.keras").is_file()


def test_the_cli_names_a_missing_folder(capsys, tmp_path):
    assert main(["pretrain", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_an_untrained_encoder_has_the_classifier_layers():
    cfg = preset("smoke", **TINY)
    names = {layer.name for layer in build_encoder(cfg).layers}
    assert set(encoder.encoder_layers(cfg)) <= names


def test_the_shipped_encoder_starts_the_baseline_and_its_card_says_how_it_was_made():
    assert "cxr-vicreg" in encoder.shipped_names()
    path = encoder.resolve("cxr-vicreg")
    assert path.stat().st_size <= 20 * 2**20
    card = encoder.card("cxr-vicreg")
    for field in ("method", "images", "epochs", "seconds", "device", "linear_probe", "command"):
        assert card[field], field
    assert card["command"].startswith("python -m pipeline pretrain")
    cfg = preset("baseline", **{"model.init": "cxr-vicreg"})
    model = build_model(cfg)
    shipped = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(
        model.get_layer("block4_conv").get_weights()[0],
        shipped.get_layer("block4_conv").get_weights()[0],
    )


def test_ctrl_c_stops_pretraining_with_one_line_and_the_same_command_resumes(
    phantoms, capsys, monkeypatch
):
    real = callbacks.StoreLogger.on_epoch_end

    def ctrl_c_after_one(self, epoch, logs=None):
        real(self, epoch, logs)
        raise KeyboardInterrupt

    command = ["pretrain", "--data", str(phantoms), "--preset", "smoke", "--epochs", "2"]
    command += ["--set", "model.filters=[8, 16]", "--batch-size", "16", "--view-side", "32"]
    monkeypatch.setattr(callbacks.StoreLogger, "on_epoch_end", ctrl_c_after_one)
    assert main(command) == 130
    assert "the same command resumes it" in capsys.readouterr().err
    (stopped,) = RunStore().list_runs(kind="pretrain")
    assert stopped.status == "failed"
    assert "stopped" in stopped.error
    monkeypatch.setattr(callbacks.StoreLogger, "on_epoch_end", real)
    assert main(command) == 0
    resumed = next(r for r in RunStore().list_runs(kind="pretrain") if r.id != stopped.id)
    assert [e.epoch for e in RunStore().epochs(resumed.id)] == [2]


def test_runs_lists_pretraining_runs_when_asked(pretrained, capsys):
    _, run = pretrained
    assert main(["runs"]) == 0
    assert run.id not in capsys.readouterr().out
    assert main(["runs", "--kind", "pretrain"]) == 0
    assert run.id in capsys.readouterr().out


def test_an_encoder_can_be_made_without_one_collection_even_where_folders_mix_them(
    tmp_path, monkeypatch
):
    import cv2

    from pipeline.pretraining import images

    root = tmp_path / "data"
    mixed = root / "lung-masks" / "images"
    mixed.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("montgomery-1", "montgomery-2", "jsrt-1", "jsrt-2", "jsrt-3"):
        cv2.imwrite(str(mixed / f"{name}.png"), rng.integers(0, 255, (64, 64), np.uint8))
    (root / "montgomery").mkdir()
    monkeypatch.setenv("TBXRAY_DATA_DIRS", str(root))
    assert [f.name for f in images.default_folders()] == ["montgomery", "lung-masks"]
    assert [f.name for f in images.default_folders(without=("montgomery",))] == ["lung-masks"]
    cfg = preset("smoke")
    arrays, counts = images.pretraining_arrays(
        [root / "lung-masks"],
        cfg.data,
        max_images=None,
        seed=0,
        progress=False,
        without=("montgomery",),
    )
    assert len(arrays) == 3
    assert counts == {"lung-masks": 3}
