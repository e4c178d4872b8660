"""Explanations: shapes and ranges, faithfulness on phantoms with known lesions, the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import shap as shap_lib

from db import RunStore
from pipeline.cli import main
from pipeline.data import synth
from pipeline.explain import faithfulness, heatmaps
from pipeline.serving.predictor import Predictor

SIZE = 64


@pytest.fixture(scope="module")
def lesion_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Predictor, Path, str]:
    """A small CNN trained on balanced phantoms (lesions large enough to see at 64 px).

    Returns the predictor, the phantom folder (with ``masks/``) and the store URL of the run.
    """
    from pipeline.config import preset
    from pipeline.training import train

    root = tmp_path_factory.mktemp("explain")
    data = root / "phantoms"
    synth.generate(data, 400, tb_ratio=1, size=128, seed=3)
    url = f"sqlite:///{root / 'runs' / 'tbxray.db'}"
    cfg = preset(
        "smoke",
        **{
            "data.path": str(data),
            "data.image_size": SIZE,
            "model.filters": (16, 32, 64),
            "train.epochs": 15,
            "train.early_stopping_patience": 0,
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TBXRAY_RUNS_DIR", str(root / "runs"))
        mp.setenv("TBXRAY_CACHE_DIR", str(root / "runs" / "cache"))
        run = train.run(cfg, RunStore(url))
    assert run.auc > 0.6, f"the phantom model did not learn (test AUC {run.auc:.2f})"
    return Predictor(run.artifacts_dir), data, url


def tb_test_images(predictor: Predictor, data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(model input, lesion mask at model size) for every TB image of the run's test split."""
    out = []
    with (predictor.run_dir / "predictions.csv").open() as f:
        for row in csv.DictReader(f):
            if row["split"] != "test" or row["label"] != "1":
                continue
            path = data / row["path"]
            mask = cv2.imread(str(data / "masks" / path.name), cv2.IMREAD_GRAYSCALE)
            mask = cv2.resize(mask, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 0
            out.append((predictor.prepare(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)), mask))
    return out


def test_every_method_returns_a_heatmap_of_the_image_size_and_range(lesion_model):
    predictor, data, _ = lesion_model
    image, _ = tb_test_images(predictor, data)[0]

    cam = heatmaps.gradcam(predictor.model, image)
    assert cam.shape == (SIZE, SIZE)
    assert cam.dtype == np.float32
    assert cam.min() >= 0
    assert cam.max() == pytest.approx(1.0)

    lime = heatmaps.lime(predictor.model, image, num_samples=200, top_k=3)
    assert lime.heatmap.shape == lime.segments.shape == lime.mask.shape == (SIZE, SIZE)
    assert lime.heatmap.min() >= 0
    assert lime.heatmap.max() <= 1
    assert lime.weights.shape == (lime.segments.max() + 1,)
    assert len(np.unique(lime.segments[lime.mask])) <= 3
    # The mask holds the superpixels with the largest positive weights.
    top = np.argsort(-lime.weights)[: len(np.unique(lime.segments[lime.mask]))]
    assert set(np.unique(lime.segments[lime.mask])) == set(top)

    values = heatmaps.shap(predictor.model, image, max_evals=200)
    assert values.shape == (SIZE, SIZE)
    assert values.dtype == np.float32
    # Efficiency: the values add up to P(TB) of the image minus P(TB) of the fully blurred one.
    (blurred,) = shap_lib.maskers.Image("blur(32,32)", (SIZE, SIZE, 1))(
        np.zeros(SIZE * SIZE, bool), image[..., None].astype(np.float32)
    )
    full, hidden = heatmaps.batch_scores(predictor.model, np.stack([image, blurred[0, ..., 0]]))
    assert values.sum() == pytest.approx(full - hidden, abs=0.02)

    signed_lime = lime.weights[lime.segments]
    for heat, signed in ((cam, False), (signed_lime, True), (values, True)):
        picture = heatmaps.overlay(image, heat, signed=signed)
        assert picture.shape == (SIZE, SIZE, 3)
        assert picture.dtype == np.uint8
        # One colour scale for all three: red towards TB, blue away, grey where nothing.
        gray = image.astype(int)
        scale = np.abs(heat).max() if signed else 1.0
        strong = np.abs(heat) > 0.5 * scale
        towards, away = strong & (heat > 0), strong & (heat < 0)
        red = picture[..., 0].astype(int) - picture[..., 2].astype(int)
        if towards.any():
            assert (red[towards] > 0).all()
        if away.any():
            assert (red[away] < 0).all()
        assert np.array_equal(picture[heat == 0][..., 0], gray[heat == 0])
    # No heat, no colour: the overlay of an all-zero map is the gray image itself.
    blank = heatmaps.overlay(image, np.zeros_like(cam))
    assert np.array_equal(blank, np.repeat(image[..., None], 3, axis=2))


def test_progress_is_reported_up_to_done(lesion_model):
    predictor, data, _ = lesion_model
    image, _ = tb_test_images(predictor, data)[0]
    for method, kwargs in (("lime", {"num_samples": 150}), ("shap", {"max_evals": 150})):
        seen: list[float] = []
        heatmaps.explain(predictor.model, image, method, progress=seen.append, **kwargs)
        assert seen == sorted(seen)
        assert seen[-1] == pytest.approx(1.0, abs=0.35)


def test_explanations_pause_before_every_batch_so_predictions_can_go_first(lesion_model):
    """The public app waits in ``pause`` while a prediction runs; it must come before each
    batch of model evaluations, not once per explanation."""
    predictor, data, _ = lesion_model
    image, _ = tb_test_images(predictor, data)[0]
    for method, kwargs in (("lime", {"num_samples": 160}), ("shap", {"max_evals": 160})):
        pauses: list[float] = []
        done: list[float] = []
        heatmaps.explain(
            predictor.model,
            image,
            method,
            batch_size=16,
            progress=done.append,
            pause=lambda p=pauses, d=done: p.append(d[-1] if d else 0.0),
            **kwargs,
        )
        assert len(pauses) >= 160 // 16 - 2  # about one pause per batch of 16
        assert pauses == sorted(pauses)  # each before the next batch's progress


def test_gradcam_and_lime_point_at_the_lesion_far_above_chance(lesion_model):
    """The pointing game on the phantoms' ground-truth masks (2 px tolerance at 64 px)."""
    predictor, data, _ = lesion_model
    cases = tb_test_images(predictor, data)
    assert len(cases) >= 20
    chance = np.mean([faithfulness.chance_pointing(mask, 2) for _, mask in cases])
    for method, kwargs in (("gradcam", {}), ("lime", {"num_samples": 300})):
        hits = [
            faithfulness.pointing_hit(
                heatmaps.explain(predictor.model, image, method, **kwargs).heatmap, mask, 2
            )
            for image, mask in cases
        ]
        rate = float(np.mean(hits))
        assert rate >= max(0.4, 4 * chance), f"{method}: pointing {rate:.2f}, chance {chance:.2f}"


def test_moving_the_lesion_moves_the_gradcam_maximum(lesion_model):
    """The same patient with its lesion on the other side: the heatmap's peak follows it."""
    predictor, _, _ = lesion_model
    followed = 0
    tried = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        sick = synth.render_phantom(np.random.default_rng(seed), 128, tb=True)
        healthy = synth.render_phantom(rng, 128, tb=False).image
        cols = np.flatnonzero(sick.lesion_mask.any(axis=0))
        if not (cols.max() < 56 or cols.min() > 72):  # lesion wholly in one half, off-centre
            continue
        delta = sick.image.astype(np.int16) - healthy.astype(np.int16)
        moved = np.clip(healthy + np.fliplr(delta), 0, 255).astype(np.uint8)
        peaks = []
        for img in (sick.image, moved):
            cam = heatmaps.gradcam(predictor.model, predictor.prepare(img))
            peaks.append(np.unravel_index(np.argmax(cam), cam.shape)[1] < SIZE / 2)
        lesion_left = cols.max() < 56
        followed += peaks == [lesion_left, not lesion_left]
        tried += 1
        if tried == 5:
            break
    assert tried == 5
    assert followed >= 4, f"the Grad-CAM peak followed the lesion in {followed} of 5 patients"


def test_faithfulness_measures_on_hand_made_maps():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 2:4] = True
    heat = np.zeros((10, 10))
    heat[3, 3] = 1.0
    assert faithfulness.pointing_hit(heat, mask)
    assert not faithfulness.pointing_hit(np.roll(heat, 5, axis=1), mask)
    assert faithfulness.pointing_hit(np.roll(heat, 2, axis=1), mask, tolerance_px=2)
    assert not faithfulness.pointing_hit(np.zeros((10, 10)), mask)
    assert faithfulness.energy_inside(heat, mask) == 1.0
    assert faithfulness.chance_pointing(mask) == pytest.approx(0.04)
    bottom = np.zeros((20, 20))
    bottom[-3:] = 1.0
    assert faithfulness.band_energy(bottom, 0.15) == 1.0
    assert faithfulness.band_energy(np.ones((20, 20)), 0.15) == pytest.approx(0.15)


def test_deletion_by_gradcam_lowers_the_tb_score_faster_than_random(lesion_model):
    predictor, data, _ = lesion_model
    guided, random = [], []
    for image, _ in tb_test_images(predictor, data)[:10]:
        heat = heatmaps.gradcam(predictor.model, image)
        fractions, scores = faithfulness.deletion_curve(predictor.model, image, heat)
        assert (fractions[0], fractions[-1]) == (0, 1)
        assert len(scores) == len(fractions)
        guided.append(faithfulness.curve_area(fractions, scores))
        random.append(
            faithfulness.curve_area(
                *faithfulness.deletion_curve(predictor.model, image, heat, seed=1)
            )
        )
    assert np.mean(guided) < np.mean(random)


def test_a_model_without_a_conv_layer_is_refused_clearly():
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x), name="flat")
    with pytest.raises(heatmaps.ExplainError, match="no convolutional layer named 'last_conv'"):
        heatmaps.gradcam(model, np.zeros((SIZE, SIZE), np.uint8))


def test_a_wrong_image_shape_is_refused_clearly(lesion_model):
    predictor, _, _ = lesion_model
    with pytest.raises(heatmaps.ExplainError, match=r"Predictor\.prepare"):
        heatmaps.gradcam(predictor.model, np.zeros((100, 80), np.uint8))
    with pytest.raises(heatmaps.ExplainError, match="unknown explanation method"):
        heatmaps.explain(predictor.model, np.zeros((SIZE, SIZE), np.uint8), "saliency")


def test_cli_writes_every_overlay_and_prints_the_probability(
    lesion_model, tmp_path, monkeypatch, capsys
):
    _, data, url = lesion_model
    monkeypatch.setenv("TBXRAY_DB_URL", url)
    (run,) = RunStore(url).list_runs()
    image = next((data / "Tuberculosis").glob("*.png"))
    out = tmp_path / "why"
    argv = ["explain", run.id, str(image), "--out", str(out), "--lime-samples", "100"]
    assert main([*argv, "--shap-evals", "100"]) == 0
    printed = capsys.readouterr().out
    for word in ("P(TB)", "gradcam", "lime", "shap"):
        assert word in printed
    for method in ("input", "gradcam", "lime", "shap"):
        picture = cv2.imread(str(out / f"{image.stem}-{method}.png"))
        assert picture is not None, method
        assert picture.shape == (SIZE, SIZE, 3)
    with np.load(out / f"{image.stem}-heatmaps.npz") as saved:
        assert set(saved.files) == {"gradcam", "lime", "shap"}


def test_cli_refuses_a_run_whose_model_has_no_conv_layer(tmp_path, capsys):
    folder = tmp_path / "flat-run"
    folder.mkdir()
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Flatten()(inputs)
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x)).save(folder / "model.keras")
    (folder / "config.json").write_text('{"data": {"image_size": 64}}')
    (folder / "metrics.json").write_text('{"threshold": 0.5}')
    store = RunStore()
    run = store.start_run(store.create_run({}, name="flat").id, worker="test")
    store.finish_run(
        run.id,
        metrics={"threshold": 0.5},
        artifacts_dir=str(folder),
        data_fingerprint="fp",
        versions={},
        duration_s=1.0,
    )
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((80, 80), 128, np.uint8))
    assert main(["explain", run.id, str(image), "--method", "gradcam", "--out", str(tmp_path)]) == 2
    assert "no convolutional layer named 'last_conv'" in capsys.readouterr().err


def test_cli_refuses_too_few_samples_and_writes_nothing(
    lesion_model, tmp_path, monkeypatch, capsys
):
    _, data, url = lesion_model
    monkeypatch.setenv("TBXRAY_DB_URL", url)
    (run,) = RunStore(url).list_runs()
    image = next((data / "Tuberculosis").glob("*.png"))
    out = tmp_path / "why"
    assert main(["explain", run.id, str(image), "--out", str(out), "--lime-samples", "5"]) == 2
    assert "LIME needs at least 10 samples, got 5" in capsys.readouterr().err
    assert not out.exists()
