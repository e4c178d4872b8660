"""The screening recipe: several sources chosen on a per-source-balanced validation score, the
preset that finds its sources under the data roots, and leave-one-source-out figures stored with
the run and shown wherever its metrics are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import preset
from pipeline.data import synth
from pipeline.evaluation import by_source, metrics


def sources_of(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def test_balanced_weights_give_every_source_the_same_weight_within_each_class():
    labels = np.array([0] * 80 + [1] * 40 + [0] * 10 + [1] * 10)
    sources = np.array([0] * 120 + [1] * 20)
    w = by_source.balanced_weights(labels, sources)
    for c in (0, 1):
        in_class = labels == c
        assert w[in_class].sum() == pytest.approx(in_class.sum())
        assert w[in_class & (sources == 0)].sum() == pytest.approx(
            w[in_class & (sources == 1)].sum()
        )


def test_the_balanced_auc_ignores_how_the_sources_score_against_each_other():
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 100)
    sources = np.repeat([0, 1], 100)
    # Within each source TB ranks above normal; source 1 scores higher across the board, and
    # its normals above source 0's TB films.
    scores = labels * 0.2 + rng.uniform(0, 0.1, 200) + sources * 0.5
    assert by_source.balanced_auc(labels, scores, sources) == pytest.approx(1.0)
    assert metrics.metrics(labels, scores, 0.5)["auc"] < 0.9
    assert by_source.per_source_auc(labels, scores, np.zeros(200, int)) == {
        0: pytest.approx(metrics.metrics(labels, scores, 0.5)["auc"])
    }


def test_a_balanced_threshold_finds_the_small_sources_tb_that_a_pooled_one_misses():
    rng = np.random.default_rng(1)
    # A large source whose TB scores high, and a small one whose TB scores lower (another
    # scanner): 90 % sensitivity pooled is met on the large source alone.
    big_y, small_y = np.tile([0, 1], 200), np.tile([0, 1], 20)
    big_s = np.where(big_y == 1, rng.uniform(0.6, 1.0, 400), rng.uniform(0.0, 0.4, 400))
    small_s = np.zeros(40)
    small_s[small_y == 1] = np.linspace(0.3, 0.5, 20)
    small_s[small_y == 0] = np.linspace(0.0, 0.45, 20)
    y, s = np.concatenate([big_y, small_y]), np.concatenate([big_s, small_s])
    src = sources_of([400, 40])
    pooled = metrics.choose_threshold(y, s, "who", 0.9)
    balanced = metrics.choose_threshold(
        y, s, "who", 0.9, weights=by_source.balanced_weights(y, src)
    )

    def small_sensitivity(t: float) -> float:
        return float((small_s[small_y == 1] >= t).mean())

    assert small_sensitivity(pooled) < 0.5
    assert small_sensitivity(balanced) >= 0.8
    # Unit weights choose exactly what no weights choose.
    assert metrics.choose_threshold(y, s, "youden", weights=np.ones(y.size)) == pytest.approx(
        metrics.choose_threshold(y, s, "youden")
    )
    with pytest.raises(ValueError, match="weights"):
        metrics.choose_threshold(y, s, weights=np.ones(3))


def three_sources(root: Path) -> list[Path]:
    """Phantom sets named as the screening preset's sources, in their own layouts."""
    folders = [root / "tb-cxr", root / "nlm-224", root / "montgomery"]
    synth.generate(folders[0], 60, size=64, seed=1)
    synth.generate(folders[1], 40, tb_ratio=1.0, size=64, seed=2)
    synth.generate(folders[2], 30, tb_ratio=0.7, size=64, seed=3)
    (folders[1] / "Normal").rename(folders[1] / "healthy")
    (folders[1] / "Tuberculosis").rename(folders[1] / "tb")
    return folders


def test_a_multi_source_run_stops_on_the_per_source_score_and_reports_each_source(
    tmp_path, monkeypatch
):
    import keras

    from db import RunStore
    from pipeline.training import train

    folders = three_sources(tmp_path)
    monitored = []
    stopper = keras.callbacks.EarlyStopping

    def spy(**kwargs):
        monitored.append(kwargs["monitor"])
        return stopper(**kwargs)

    monkeypatch.setattr(keras.callbacks, "EarlyStopping", spy)
    cfg = preset(
        "smoke",
        **{
            "data.path": [str(f) for f in folders],
            "eval.per_source": True,
            "train.epochs": 3,
            "train.early_stopping_patience": 2,
        },
    )
    run = train.run(cfg, RunStore())
    assert run.status == "succeeded"
    assert monitored == ["val_source_auc"]
    history = json.loads((Path(run.artifacts_dir) / "history.json").read_text())
    assert len(history["val_source_auc"]) == len(history["loss"]) == 3
    assert set(run.metrics["val"]["by_source"]) == {"tb-cxr", "nlm-224", "montgomery"}

    # Pooled, as asked: the pooled validation AUC is monitored.
    monitored.clear()
    train.run(preset("smoke", **{"data.path": [str(f) for f in folders]}), RunStore())
    assert monitored == []  # the smoke preset has no early stopping
    pooled = train.run(
        preset(
            "smoke",
            **{"data.path": [str(f) for f in folders], "train.early_stopping_patience": 1},
        ),
        RunStore(),
    )
    assert monitored == ["val_auc"]
    assert "val_source_auc" not in json.loads(
        (Path(pooled.artifacts_dir) / "history.json").read_text()
    )


def test_the_screening_preset_finds_its_sources_under_the_data_roots(tmp_path, monkeypatch):
    from pipeline.cli import _parser, common

    root = tmp_path / "datasets"
    folders = three_sources(root)
    monkeypatch.setenv("TBXRAY_DATA_DIRS", str(root))
    args = _parser().parse_args(["train", "--preset", "screening"])
    cfg = common.build_config(args)
    assert cfg.data.sources == tuple(str(f.resolve()) for f in folders)
    assert cfg.data.roi == "lung_mask"

    monkeypatch.setenv("TBXRAY_DATA_DIRS", str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match=r"cannot find tb-cxr, nlm-224, montgomery.*--data"):
        common.build_config(args)


@pytest.fixture
def trained_on_three(tmp_path, monkeypatch, capsys):
    """A smoke run trained on three phantom sources through the CLI, as a user would."""
    from db import RunStore
    from pipeline.cli import main

    folders = three_sources(tmp_path)
    args = ["train", "--preset", "smoke", "--data", *map(str, folders), "--name", "three"]
    assert main(args) == 0
    capsys.readouterr()
    (run,) = RunStore().list_runs()
    return run, folders


def test_loso_trains_each_fold_stores_the_figures_and_reuses_folds(trained_on_three, capsys):
    from db import RunStore
    from pipeline.cli import main

    run, folders = trained_on_three
    assert main(["loso", run.id]) == 0
    out = capsys.readouterr().out
    assert "on hospitals it did not train on" in out
    store = RunStore()
    figures = store.get_run(run.id).metrics["leave_one_source_out"]
    assert list(figures["folds"]) == ["tb-cxr", "nlm-224", "montgomery"]
    assert [f["n"] for f in figures["folds"].values()] == [60, 40, 30]
    for name, fold in figures["folds"].items():
        fold_run = store.get_run(fold["run_id"])
        assert fold_run.name == f"three · without {name}"
        trained_on = {Path(p).name for p in fold_run.config["data"]["path"]}
        assert trained_on == {f.name for f in folders} - {name}
        assert fold_run.metrics["loso_of"] == run.id
        assert fold["threshold"] == pytest.approx(fold_run.threshold)
    assert figures["auc_worst"] == min(f["auc"] for f in figures["folds"].values())
    # The run's other metrics are kept.
    assert store.get_run(run.id).auc == pytest.approx(run.auc)

    # Asked again: the folds are found in the store, nothing is trained.
    before = len(store.list_runs())
    assert main(["loso", run.id]) == 0
    assert "reused fold runs" in capsys.readouterr().out
    assert len(store.list_runs()) == before


def test_loso_of_a_one_folder_run_says_why_not(tmp_path, capsys):
    from db import RunStore
    from pipeline.cli import main

    folder = tmp_path / "one"
    synth.generate(folder, 40, size=64, seed=4)
    assert main(["train", "--preset", "smoke", "--data", str(folder)]) == 0
    (run,) = RunStore().list_runs()
    capsys.readouterr()
    assert main(["loso", run.id]) != 0
    err = capsys.readouterr().err
    assert "trained on one folder" in err
    assert "Traceback" not in err


def test_the_figures_show_on_the_leaderboard_run_page_and_public_card(trained_on_three):
    from dashboard import tables
    from db import RunStore
    from gradio_app.card import model_card
    from gradio_app.service import ModelSource
    from pipeline.runs import loso
    from pipeline.training import train
    from tests.pages import page, texts

    run, _ = trained_on_three
    store = RunStore()
    at = page("views/run.py", run=run.id)
    assert f"python -m pipeline loso {run.id}" in texts(at, "caption")

    run, _ = loso.leave_one_source_out(
        store, run.id, lambda cfg, notes: train.run(cfg, store, notes=notes)
    )
    figures = run.metrics["leave_one_source_out"]
    frame = tables.leaderboard([run])
    assert frame.loc[0, "loso_auc_worst"] == pytest.approx(figures["auc_worst"])
    assert "loso_auc_worst" in tables.DEFAULT_COLUMNS

    at = page("views/run.py", run=run.id)
    (shown,) = [d.value for d in at.dataframe if "held out" in d.value.columns]
    assert list(shown["held out"]) == ["tb-cxr", "nlm-224", "montgomery"]
    assert "Unseen-hospital AUC mean" in texts(at, "caption")

    store.promote(run.id, note="the screening model")
    card = model_card(ModelSource(store, refresh_s=0).current(), [])
    assert "On hospitals it did not train on" in card
    assert "Held-out test set of the same collections" in card
    assert "not measured" not in card
    for name in ("tb-cxr", "nlm-224", "montgomery"):
        assert f"{name} (" in card


def test_a_0007_store_gains_the_per_source_epoch_column_and_keeps_its_epochs(tmp_path):
    import importlib
    import shutil

    from db import RunStore, make_engine, migrate

    legacy = Path(__file__).parent / "fixtures" / "store-pre-migrations.db"
    path = tmp_path / "tbxray.db"
    shutil.copy(legacy, path)
    previous = importlib.import_module("db.migrations.versions.0008_val_source_auc").down_revision
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, previous)
    engine.dispose()
    store = RunStore(f"sqlite:///{path}")
    assert store.backup_path == path.with_name(f"tbxray.db.bak-{previous}")
    runs = [r for r in store.list_runs() if store.epochs(r.id)]
    assert runs, "the fixture's runs have epochs"
    kept = store.epochs(runs[0].id)
    assert all(e.val_source_auc is None for e in kept)
    assert all(e.loss is not None for e in kept)
    store.log_epoch(runs[0].id, len(kept) + 1, {"loss": 0.5, "val_source_auc": 0.81})
    assert store.epochs(runs[0].id)[-1].val_source_auc == pytest.approx(0.81)


def test_the_launch_page_fills_the_screening_presets_sources_from_the_data_roots(
    tmp_path, monkeypatch
):
    from tests.pages import page

    root = tmp_path / "datasets"
    folders = three_sources(root)
    monkeypatch.setenv("TBXRAY_DATA_DIRS", str(root))
    at = page("views/launch.py")
    base = at.selectbox(key="launch.base")
    (screening,) = [o for o in base.options if o.startswith("preset screening")]
    base.set_value(screening).run()
    assert at.text_area(key="cfg.data.path").value.splitlines() == [
        str(f.resolve()) for f in folders
    ]
    assert at.selectbox(key="cfg.data.roi").value == "lung_mask"


def test_a_fold_starts_from_an_encoder_that_never_saw_the_held_out_source_where_one_is_shipped(
    tmp_path, monkeypatch
):
    from pipeline import encoder
    from pipeline.runs import loso

    weights = tmp_path / "weights"
    weights.mkdir()
    seen_all = {"images": {"cxr-unlabelled": 100, "tb-cxr": 9, "nlm-224": 4, "montgomery": 1}}
    honest = {
        "images": {"cxr-unlabelled": 100, "tb-cxr": 9, "montgomery": 1},
        "without": ["nlm-224"],
    }
    for name, made in (("enc", seen_all), ("enc-without-nlm-224", honest)):
        (weights / f"{name}.keras").write_bytes(b"")
        (weights / f"{name}.json").write_text(json.dumps(made))
    monkeypatch.setattr(encoder, "SHIPPED", weights)
    folders = [str(tmp_path / n) for n in ("tb-cxr", "nlm-224", "montgomery")]
    by_held = {
        Path(f.held_out).name: f
        for f in loso.folds(preset("baseline", **{"data.path": folders, "model.init": "enc"}))
    }
    assert by_held["nlm-224"].config.model.init == "enc-without-nlm-224"
    assert by_held["nlm-224"].encoder_saw_held_out is False
    assert by_held["montgomery"].config.model.init == "enc"
    assert by_held["montgomery"].encoder_saw_held_out is True
    scratch = loso.folds(preset("baseline", **{"data.path": folders}))
    assert {f.encoder_saw_held_out for f in scratch} == {None}
