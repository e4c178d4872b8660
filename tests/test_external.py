"""External sets belong to the run: evaluated at the end of training, stored, summarised; a
folder that shares images with the run's data is refused; a TB-only folder gives sensitivity."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import pytest

from dashboard import tables
from db import RunStore
from pipeline.cli import main
from pipeline.data import index_cache, overlap, synth


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An external phantom set (another seed), its TB images alone, and a copy of it that
    smuggles in one of the training images, resized and re-encoded as JPEG."""
    root = tmp_path_factory.mktemp("external")
    other = root / "other"
    synth.generate(other, 40, size=64, seed=9)
    tb_only = root / "tb-only" / "Tuberculosis"
    tb_only.mkdir(parents=True)
    for p in sorted((other / "Tuberculosis").glob("*.png")):
        shutil.copy(p, tb_only / p.name)
    leaky = root / "leaky"
    shutil.copytree(other, leaky)
    return {"other": other, "tb_only": tb_only.parent, "leaky": leaky}


def leak(phantoms: Path, leaky: Path) -> str:
    """Copy a training image into ``leaky`` as a resized JPEG; returns the copy's name."""
    source = sorted((phantoms / "Normal").glob("*.png"))[3]
    image = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(leaky / "Normal" / "scan-0001.jpg"), cv2.resize(image, (96, 96)))
    return "scan-0001.jpg"


def test_external_sets_are_evaluated_and_stored_at_the_end_of_a_run(phantoms, folders, capsys):
    args = ["train", "--preset", "smoke", "--data", str(phantoms)]
    args += ["--external", str(folders["other"]), "--external", str(folders["tb_only"])]
    assert main(args) == 0
    capsys.readouterr()
    store = RunStore()
    (run,) = store.list_runs()
    evals = {Path(e.dataset_path).name: e for e in store.external_evals(run.id)}
    assert set(evals) == {"other", "tb-only"}

    both = evals["other"]
    assert both.n_images == 40
    assert both.auc is not None
    assert both.specificity is not None
    # Evaluated at the run's own validated threshold, never one fitted on the external set.
    assert both.metrics["threshold"] == run.threshold
    tb = evals["tb-only"]
    n_tb = len(list((folders["tb_only"] / "Tuberculosis").iterdir()))
    assert tb.n_images == n_tb
    assert tb.sensitivity is not None
    assert tb.auc is None
    assert tb.specificity is None

    with (Path(run.artifacts_dir) / "external_predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 + n_tb

    frame = tables.leaderboard(store.list_runs(), {}, store.external_summaries())
    row = frame.iloc[0]
    assert row["ext_auc_mean"] == pytest.approx(both.auc)  # the TB-only folder has no AUC
    assert row["ext_sens_worst"] == pytest.approx(min(both.sensitivity, tb.sensitivity))
    assert row["ext_sets"] == 2

    assert main(["evaluate", run.id, "--data", str(folders["tb_only"])]) == 0
    assert "TB images only: sensitivity is measured" in capsys.readouterr().out


def test_an_external_folder_sharing_a_training_image_is_refused(phantoms, folders, capsys):
    name = leak(phantoms, folders["leaky"])
    training = index_cache.load_index(phantoms)
    shared = overlap.shared_images(training, index_cache.load_index(folders["leaky"]))
    assert [Path(s.path).name for s in shared] == [name]
    assert "near-duplicate" in shared[0].how

    args = ["train", "--preset", "smoke", "--data", str(phantoms)]
    assert main([*args, "--external", str(folders["leaky"])]) == 2
    err = capsys.readouterr().err
    assert "is not external to this run" in err
    assert name in err
    # Refused before any training: the run is failed, with no artifacts.
    (run,) = RunStore().list_runs()
    assert run.status == "failed"
    assert run.artifacts_dir is None

    assert main([*args, "--name", "clean"]) == 0
    clean = RunStore().list_runs(status="succeeded")[0]
    assert main(["evaluate", clean.id, "--data", str(folders["leaky"])]) == 2
    assert name in capsys.readouterr().err
    assert RunStore().external_evals(clean.id) == []


def test_training_and_a_later_evaluation_score_an_external_set_alike(phantoms, folders, capsys):
    """One scorer: the external figures a run records at the end of training (model in memory,
    PCA fitted there) are those `evaluate` gives later from the saved run folder."""
    args = ["train", "--preset", "smoke", "--data", str(phantoms), "--name", "pca-external"]
    args += ["--external", str(folders["other"]), "--set", "data.pca_components=8"]
    assert main(args) == 0
    store = RunStore()
    run = next(r for r in store.list_runs() if r.name == "pca-external")
    (at_training,) = store.external_evals(run.id)
    capsys.readouterr()
    assert main(["evaluate", run.id, "--data", str(folders["other"])]) == 0
    later = next(e for e in store.external_evals(run.id) if e.id != at_training.id)
    assert later.auc == pytest.approx(at_training.auc, abs=1e-9)
    assert later.sensitivity == at_training.sensitivity
    assert later.specificity == at_training.specificity
    with (Path(run.artifacts_dir) / "external_predictions.csv").open() as f:
        recorded = [float(row["score"]) for row in csv.DictReader(f)]
    from pipeline.serving.predictor import Predictor

    index = index_cache.load_index(folders["other"])
    rescored = Predictor(run.artifacts_dir).scorer.score_index(index)
    assert recorded == pytest.approx(rescored.tolist(), abs=1e-6)
