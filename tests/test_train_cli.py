"""End to end through the CLI: train a smoke run on phantoms, list it, predict, evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from db import RunStore
from pipeline import model
from pipeline.cli import main
from pipeline.data import synth
from pipeline.imaging import decode


def train(data: Path, *extra: str) -> int:
    return main(["train", "--preset", "smoke", "--data", str(data), *extra])


@pytest.fixture
def smoke_run(phantoms, capsys):
    assert train(phantoms, "--name", "first") == 0
    capsys.readouterr()
    (run,) = RunStore().list_runs()
    return run


def test_smoke_train_records_a_complete_run(smoke_run, isolated_store):
    run = smoke_run
    assert run.status == "succeeded"
    folder = Path(run.artifacts_dir)
    assert folder.parent == isolated_store.resolve()
    for name in ("model.keras", "config.json", "split.json", "predictions.csv", "history.json"):
        assert (folder / name).is_file(), name
    assert not list(isolated_store.glob(".partial-*"))

    config = json.loads((folder / "config.json").read_text())
    assert config["data"]["image_size"] == 64
    split = json.loads((folder / "split.json").read_text())
    assert split["data_fingerprint"] == run.data_fingerprint
    assert not set(split["train"]) & set(split["test"])

    with (folder / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    test_rows = [r for r in rows if r["split"] == "test"]
    assert [r["path"] for r in test_rows] == split["test"]
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)

    assert 0.0 <= run.auc <= 1.0
    assert run.metrics["n"] == len(split["test"])
    assert run.threshold in {float(r["score"]) for r in rows if r["split"] == "val"}
    assert run.versions["tensorflow"]
    epochs = RunStore().epochs(run.id)
    assert [e.epoch for e in epochs] == [1]
    assert epochs[0].val_auc is not None


def test_runs_show_predict_and_external_evaluate(smoke_run, phantoms, tmp_path, capsys):
    run = smoke_run
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert run.id in out
    assert "succeeded" in out

    image = next((phantoms / "Tuberculosis").glob("*.png"))
    assert main(["predict", run.id[:6], str(image)]) == 0
    out = capsys.readouterr().out
    assert "TB" in out
    assert image.name in out

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not pixels")
    # A bad file among good ones: its row says why, the others are still scored, exit status 2.
    assert main(["predict", run.id, str(not_an_image), str(image)]) == 2
    out = capsys.readouterr().out
    assert "cannot read" in out
    assert image.name in out

    # The public app's assessment: random noise is no X-ray, on the command line too.
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(noise)
    assert main(["predict", run.id, str(noise)]) == 0
    out = capsys.readouterr().out
    assert "Cannot assess" in out
    assert "noise" in out

    external = tmp_path / "external"
    synth.generate(external, 30, size=64, seed=9)
    assert main(["evaluate", run.id, "--data", str(external)]) == 0
    out = capsys.readouterr().out
    assert "external" in out
    (ev,) = RunStore().external_evals(run.id)
    assert ev.n_images == 30
    assert ev.data_fingerprint != run.data_fingerprint

    assert main(["show", run.id]) == 0
    assert "external" in capsys.readouterr().out


def test_second_run_reuses_the_cache_without_decoding(smoke_run, phantoms, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("a warm-cache run decoded an image")

    monkeypatch.setattr(decode, "read_image", no_decoding)
    assert train(phantoms, "--seed", "1") == 0
    runs = RunStore().list_runs(status="succeeded")
    assert len(runs) == 2


def test_a_crash_mid_training_leaves_a_failed_run_and_no_artifacts(
    phantoms, monkeypatch, isolated_store, capsys
):
    def broken(cfg):
        raise RuntimeError("out of memory in block 2")

    monkeypatch.setattr("pipeline.training.train.build_model", broken)
    with pytest.raises(RuntimeError):
        train(phantoms)
    (run,) = RunStore().list_runs()
    assert run.status == "failed"
    assert "out of memory in block 2" in run.error
    assert run.artifacts_dir is None
    # Nothing half-written: no run folder and no partial folder, only the store and the cache.
    assert sorted(p.name for p in isolated_store.iterdir() if p.is_dir()) == ["cache"]


def test_user_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err
    assert "Traceback" not in err

    assert main(["train", "--preset", "smoke", "--set", "model.pooling=median"]) == 2
    assert "model.pooling" in capsys.readouterr().err

    assert main(["predict", "nosuchrun", "x.png"]) == 2
    assert "nosuchrun" in capsys.readouterr().err


def test_last_conv_layer_is_named_for_grad_cam(smoke_run):
    import keras

    loaded = keras.saving.load_model(Path(smoke_run.artifacts_dir) / "model.keras")
    assert loaded.get_layer(model.LAST_CONV).output.shape[-1] == 16


def tensorboard_scalars(folder: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(train|validation, tag) -> [(epoch, value)] as TensorBoard itself reads the run's event
    files (its event accumulator, what ``tensorboard --logdir`` serves)."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for part in sorted(p for p in folder.iterdir() if p.is_dir()):
        events = EventAccumulator(str(part)).Reload()
        # TF2 summaries are tensors; TensorBoard charts those its scalars plugin claims.
        for tag in events.Tags()["tensors"]:
            assert events.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
            scalars[(part.name, tag)] = [
                (e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)
            ]
    return scalars


def test_a_run_writes_tensorboard_scalars_per_epoch(phantoms, isolated_store, capsys):
    assert train(phantoms, "--set", "train.epochs=2") == 0
    (run,) = RunStore().list_runs()
    scalars = tensorboard_scalars(Path(run.artifacts_dir) / "tensorboard")
    for key in (("train", "epoch_loss"), ("train", "epoch_auc"), ("validation", "epoch_auc")):
        assert [step for step, _ in scalars[key]] == [0, 1], key
    # The same numbers as the store's history, so TensorBoard and the dashboard agree.
    val_auc = [value for _, value in scalars[("validation", "epoch_auc")]]
    assert val_auc == pytest.approx([e.val_auc for e in RunStore().epochs(run.id)], abs=1e-6)
