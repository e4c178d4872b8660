"""The lung segmenter: mask scores, clean-up, plausibility, phantom training, the shipped model."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.data import synth
from pipeline.imaging import decode
from pipeline.lungs import masks, segmenter
from pipeline.lungs.data import load_pairs
from tests.conftest import shared_dataset


def test_dice_and_iou_on_hand_made_masks():
    # pred covers 4 pixels, truth 2 of them plus 1 more:
    #   |A∩B| = 2, |A| = 4, |B| = 3, |A∪B| = 5 -> Dice 4/7, IoU 2/5.
    pred = np.zeros((4, 4), bool)
    pred[0, :4] = True
    truth = np.zeros((4, 4), bool)
    truth[0, :2] = truth[1, 0] = True
    assert masks.dice(pred, truth) == pytest.approx(4 / 7)
    assert masks.iou(pred, truth) == pytest.approx(2 / 5)
    assert masks.dice(pred, pred) == masks.iou(pred, pred) == 1.0
    assert masks.dice(pred, ~pred) == 0.0
    empty = np.zeros((4, 4), bool)
    assert masks.dice(empty, empty) == 1.0  # both agree that there is nothing
    with pytest.raises(ValueError, match="shape"):
        masks.dice(pred, np.zeros((3, 3), bool))


def _two_lungs(size: int = 100) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[20:75, 15:45] = True  # 55 × 30
    m[22:78, 55:85] = True  # 56 × 30
    return m


def test_postprocess_keeps_the_two_largest_parts_and_fills_their_holes():
    m = _two_lungs()
    m[40:45, 25:30] = False  # a lesion punched a hole in the left lung
    m[2:6, 2:6] = True  # a stray blob in the corner
    out = masks.postprocess(m)
    n, _ = cv2.connectedComponents(out.astype(np.uint8))
    assert n - 1 == 2
    assert out[42, 27]  # the hole is filled
    assert not out[3, 3]  # the blob is gone
    assert np.array_equal(out, _two_lungs())
    assert not masks.postprocess(np.zeros((10, 10), bool)).any()


def test_plausibility_wants_two_balanced_lungs_of_sensible_size():
    ok = masks.plausibility(_two_lungs())
    assert ok.ok
    assert ok.n_lungs == 2
    assert not ok.reasons
    one = _two_lungs()
    one[:, 50:] = False
    bad = masks.plausibility(one)
    assert not bad.ok
    assert "1 lung fields found instead of 2" in bad.reasons
    tiny = np.zeros((100, 100), bool)
    tiny[40:45, 20:25] = tiny[40:45, 70:75] = True
    assert any("cover" in r for r in masks.plausibility(tiny).reasons)
    lopsided = _two_lungs()
    lopsided[22:78, 55:80] = False
    assert any("size of the other" in r for r in masks.plausibility(lopsided).reasons)
    # An X-ray turned by 90°: two fields, balanced, but lying down.
    turned = masks.plausibility(np.rot90(_two_lungs()))
    assert not turned.ok
    assert any("turned on its side" in r for r in turned.reasons)


def test_roi_box_grows_by_the_margin_and_empty_mask_keeps_the_image():
    m = np.zeros((100, 200), bool)
    m[20:60, 50:150] = True
    assert masks.bounding_box(m, 0.0) == (20, 60, 50, 150)
    assert masks.bounding_box(m, 0.1) == (16, 64, 40, 160)
    assert masks.bounding_box(m, 1.0) == (0, 100, 0, 200)
    assert masks.bounding_box(np.zeros((10, 20), bool), 0.1) == (0, 10, 0, 20)


def test_synth_saves_the_lung_fields_of_every_image(phantoms):
    pairs = load_pairs(phantoms, 64)
    assert len(pairs.names) == 120
    assert set(pairs.sources) == {"phantom"}
    share = pairs.masks.mean(axis=(1, 2))
    assert share.min() > 0.1
    assert share.max() < 0.5
    # Two lungs, one each side, of comparable size: the plausibility check agrees.
    assert all(masks.plausibility(m).ok for m in pairs.masks)


def test_the_segmenter_learns_phantom_lungs_and_beats_a_fixed_threshold(tmp_path):
    from pipeline.lungs.train import fit, score

    synth.generate(tmp_path / "ph", 60, size=64, seed=3)
    pairs = load_pairs(tmp_path / "ph", 64)
    train, test = pairs.subset(np.arange(60) < 45), pairs.subset(np.arange(60) >= 45)
    model = fit(train, epochs=20, base=8, batch_size=8, learning_rate=5e-3)
    learned = score(model, test).dice["all"]
    # The best single grey level, chosen on the training images: lungs are dark, but so is the
    # air around the body.
    best = max(
        (np.mean([masks.dice(i < t, m) for i, m in zip(train.images, train.masks, strict=True)]), t)
        for t in range(10, 250, 10)
    )[1]
    fixed = np.mean([masks.dice(i < best, m) for i, m in zip(test.images, test.masks, strict=True)])
    # Measured: 0.94 learned vs 0.58 for the best fixed threshold.
    assert learned > 0.85
    assert learned > fixed + 0.2


def test_the_shipped_model_loads_safely_with_its_card():
    seg = segmenter.shipped()
    assert seg.size == 256
    card = json.loads(segmenter.CARD.read_text())
    assert card["input_size"] == 256
    assert card["command"].startswith("python -m pipeline lungs train")
    # Trained on all four sources of lung-masks, each also held out in turn for the card.
    assert card["held_out_source"].keys() == {"jsrt", "montgomery", "covid", "chestxraycom"}
    assert card["training_data"]["sources"]["chestxraycom"] == 275
    assert card["recipe"] in {"basic", "strong", "opacities", "equalised"}
    assert seg.standardisation == card["input_standardisation"]
    assert segmenter.WEIGHTS.stat().st_size < 8_000_000


def test_the_shipped_model_segments_real_x_rays_it_never_saw(tmp_path, capsys):
    data = shared_dataset("lung-masks")
    unseen = set(segmenter.shipped().card["test_part"]["names"])
    # A lung-mask folder holding only the pairs the shipped model was not trained on.
    folder = tmp_path / "unseen"
    with (data / "manifest.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if Path(r["image"]).stem in unseen]
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for r in rows:
        shutil.copy(data / r["image"], folder / r["image"])
        shutil.copy(data / r["mask"], folder / r["mask"])
    with (folder / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert len(rows) >= 40
    assert main(["lungs", "eval", "--data", str(folder)]) == 0
    out = capsys.readouterr().out
    # Table rows: source │ pairs │ Dice │ IoU
    dice = {
        cells[0]: float(cells[2])
        for line in out.splitlines()
        if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 4
        and cells[1].isdigit()
    }
    assert {"jsrt", "montgomery", "covid", "chestxraycom", "all"} <= dice.keys()
    assert dice["all"] >= 0.90
    # Beside it, what to expect at a hospital it never saw: the card's leave-one-source-out.
    assert "Leave-one-source-out" in out
    assert "mean of sources" in out


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a keras zip"])
def test_missing_or_corrupt_weights_give_one_line_saying_how_to_retrain(tmp_path, capsys, content):
    bad = tmp_path / "lungs.keras"
    if content:
        bad.write_bytes(content)
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((64, 64), 128, np.uint8))
    assert main(["lungs", "predict", str(image), "--weights", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "Traceback" not in err
    assert segmenter.RETRAIN in err
    assert ("missing" if not content else "cannot be loaded") in err


def test_lungs_predict_writes_a_mask_and_an_outline(tmp_path, capsys):
    image = tmp_path / "chest.png"
    phantom = synth.render_phantom(np.random.default_rng(0), 256, tb=False)
    cv2.imwrite(str(image), phantom.image)
    notes = tmp_path / "notes.png"
    notes.write_text("not pixels")
    # A bad file among good ones: its row says why, the other is still segmented, exit status 2.
    assert main(["lungs", "predict", str(notes), str(image), "--out", str(tmp_path / "out")]) == 2
    mask = cv2.imread(str(tmp_path / "out" / "chest-lungs.png"), cv2.IMREAD_GRAYSCALE)
    overlay = cv2.imread(str(tmp_path / "out" / "chest-outline.png"))
    assert mask.shape == (256, 256)
    assert set(np.unique(mask)) <= {0, 255}
    assert overlay.shape == (256, 256, 3)
    out = capsys.readouterr().out
    assert "cannot read" in out
    assert f"{(mask > 0).mean():.1%}" in out  # the lung share of the image it segmented


def test_inspect_lists_the_images_without_two_plausible_lungs(tmp_path, capsys):
    data = tmp_path / "data"
    synth.generate(data, 24, size=128, seed=4)
    blank = np.tile(np.linspace(60, 200, 128, dtype=np.uint8), (128, 1))  # no chest at all
    cv2.imwrite(str(data / "Normal" / "normal-0001.png"), blank)
    assert main(["inspect", "--data", str(data), "--lungs"]) == 0
    out = capsys.readouterr().out
    assert "1 of 24 images without two plausible lungs" in out
    assert "normal-0001.png" in out


def test_lungs_train_install_replaces_the_shipped_model_and_writes_its_card(
    phantoms, tmp_path, monkeypatch, capsys
):
    shipped = tmp_path / "weights" / "lungs.keras"
    monkeypatch.setattr(segmenter, "WEIGHTS_DIR", shipped.parent)
    monkeypatch.setattr(segmenter, "WEIGHTS", shipped)
    monkeypatch.setattr(segmenter, "CARD", shipped.with_suffix(".json"))
    out = tmp_path / "out"
    argv = ["lungs", "train", "--data", str(phantoms), "--out", str(out), "--size", "64"]
    options = ["--epochs", "1", "--base", "4", "--seed", "7", "--recipe", "equalised"]
    assert main([*argv, *options, "--install"]) == 0
    card = json.loads(shipped.with_suffix(".json").read_text())
    # The command as run, every default spelled out, so that it retrains the same model.
    assert card["command"] == (
        f"python -m pipeline lungs train --data {phantoms} --out {out} --epochs 1 "
        "--holdout-epochs 15 --size 64 --base 4 --seed 7 --recipe equalised --install"
    )
    # The recipe is on the card, and the installed model is fed as it was trained.
    assert card["recipe"] == "equalised"
    assert card["appearance_augmentation"]["jpeg"] > 0
    assert segmenter.Segmenter(shipped).standardisation == "equalise"
    assert card["seed"] == 7
    assert card["input_size"] == 64
    assert card["training_data"] == {
        "manifest_sha256": load_pairs(phantoms, 64).manifest_sha256,
        "n_pairs": 120,
        "sources": {"phantom": 120},
    }
    assert card["held_out_source"] == {}  # one source: nothing to hold out
    assert len(card["test_part"]["names"]) == 12
    assert segmenter.Segmenter(shipped).size == 64
    assert "installed" in capsys.readouterr().out


def test_16_bit_and_rgb_files_get_the_lungs_of_the_8_bit_image(tmp_path):
    from PIL import Image

    gray = synth.render_phantom(np.random.default_rng(2), 256, tb=False).image
    seg = segmenter.shipped()
    reference = seg.segment(gray)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "wide.png")
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    for name in ("wide.png", "rgb.png"):
        mask = seg.segment(decode.read_image(tmp_path / name))
        assert masks.dice(mask, reference) > 0.98


def test_a_wrong_recipe_is_refused_in_one_line_naming_the_choices(phantoms, tmp_path, capsys):
    argv = ["lungs", "train", "--data", str(phantoms), "--out", str(tmp_path), "--size", "64"]
    assert main([*argv, "--recipe", "extreme"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "'extreme' is not a recipe" in err
    assert "basic, strong, opacities, equalised" in err


def test_equalised_input_is_the_same_under_another_gamma():
    image = synth.render_phantom(np.random.default_rng(5), 256, tb=False).image
    brighter = np.clip(255.0 * (image / 255.0) ** 0.6, 0, 255).round().astype(np.uint8)
    plain = segmenter.normalise(np.stack([image, brighter]))
    equalised = segmenter.normalise(np.stack([image, brighter]), "equalise")
    # Measured: 0.091 apart as per-image z-scores, 0.005 once equalised.
    assert np.abs(plain[0] - plain[1]).mean() > 0.05
    assert np.abs(equalised[0] - equalised[1]).mean() < 0.01


def test_opacities_whiten_the_lungs_only_and_leave_the_mask_as_it_was():
    from pipeline.lungs.data import add_opacities

    phantom = synth.render_phantom(np.random.default_rng(6), 128, tb=False)
    x = phantom.image.astype(np.float32) / 255.0
    lungs = phantom.lung_mask
    whitened = [add_opacities(np.random.default_rng(k), x, lungs) for k in range(8)]
    gain_inside = np.mean([(w - x)[lungs].mean() for w in whitened])
    far = ~cv2.dilate(lungs.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert gain_inside > 0.02  # the lungs got brighter, as consolidation makes them
    assert max(np.abs(w - x)[far].max() for w in whitened) < 1e-3  # nothing outside them
    assert all(w.min() >= 0 and w.max() <= 1 for w in whitened)
