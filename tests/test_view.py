"""The view check: upright whole chest X-rays pass; turned, upside-down and cropped ones do not."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.data import synth
from pipeline.imaging import decode
from pipeline.lungs import view
from pipeline.lungs.segmenter import SegmenterError
from tests.conftest import shared_dataset


def _sample(name: str, n: int) -> list[np.ndarray]:
    """``n`` images spread over a real folder (both classes), gray uint8 at 256 px."""
    paths = sorted(p for p in shared_dataset(name).rglob("*") if p.suffix in {".png", ".jpg"})
    picks = np.linspace(0, len(paths) - 1, n).astype(int)
    return [decode.resize(decode.read_image(paths[i]), 256) for i in picks]


@pytest.mark.parametrize("collection", ["tb-cxr", "nlm-224"])
def test_real_x_rays_it_never_saw_pass_upright_and_are_refused_upside_down(collection):
    """Neither collection was used to train the shipped check (it learned from lung-masks)."""
    checker = view.shipped()
    xrays = _sample(collection, 60)
    upright = [checker.check(x) for x in xrays]
    flipped = [checker.check(np.ascontiguousarray(x[::-1])) for x in xrays]  # upside down
    turned = [checker.check(np.rot90(x).copy()) for x in xrays]
    quadrant = [checker.check(x[:128, :128].copy()) for x in xrays]
    assert np.mean([r.ok for r in upright]) >= 0.95
    # An X-ray flipped top to bottom is upside down (and mirrored, which the check ignores).
    assert np.mean([not r.ok for r in flipped]) >= 0.95
    assert np.mean([r.view == view.UPSIDE_DOWN for r in flipped]) >= 0.9
    assert np.mean([not r.ok for r in turned]) >= 0.95
    assert np.mean([not r.ok for r in quadrant]) >= 0.9
    refused = next(r for r in flipped if not r.ok)
    assert "neck is at the top" in refused.advice


def test_the_shipped_check_loads_safely_and_its_card_says_how_it_was_made():
    checker = view.shipped()
    card = checker.card
    assert card["command"].startswith("python -m pipeline lungs view-train")
    assert {"jsrt", "montgomery", "covid"} <= card["held_out_source"].keys()
    assert card["unseen"]["test part"]["accepted_upright"] >= 0.9
    assert view.VIEW_WEIGHTS.stat().st_size < 2_000_000
    assert checker.model.input_shape[1:] == (view.SIZE, view.SIZE, 1)


def test_views_of_an_image_are_its_turns_and_a_part():
    image = np.zeros((128, 128), np.uint8)
    image[:32] = 255  # bright at the top only
    assert view.turn(image, view.UPRIGHT)[:8].mean() > 200  # still bright at the top
    assert view.turn(image, view.UPSIDE_DOWN)[-8:].mean() > 200  # bright at the bottom
    assert view.turn(image, view.RIGHT)[:, -8:].mean() > 200  # a quarter right: top goes right
    assert view.turn(image, view.LEFT)[:, :8].mean() > 200
    rng = np.random.default_rng(0)
    for _ in range(20):
        shown = view.views_of(rng, image)
        assert [v for _, v in shown] == list(range(len(view.VIEWS)))
        assert all(x.shape == (view.SIZE, view.SIZE) for x, _ in shown)
        part = view.crop(rng, image)
        assert part.shape == image.shape


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a keras zip"])
def test_missing_or_corrupt_view_weights_say_how_to_retrain(tmp_path, content):
    bad = tmp_path / "view.keras"
    if content:
        bad.write_bytes(content)
    with pytest.raises(SegmenterError) as err:
        view.ViewChecker(bad)
    assert view.VIEW_RETRAIN in str(err.value)
    assert "\n" not in str(err.value)


def test_view_train_install_writes_a_model_and_card_that_load(
    phantoms, tmp_path, monkeypatch, capsys
):
    shipped = tmp_path / "weights" / "view.keras"
    shipped.parent.mkdir()
    monkeypatch.setattr(view, "VIEW_WEIGHTS", shipped)
    monkeypatch.setattr(view, "VIEW_CARD", shipped.with_suffix(".json"))
    out = tmp_path / "out"
    argv = ["lungs", "view-train", "--data", str(phantoms), "--out", str(out), "--size", "64"]
    argv += ["--epochs", "1", "--base", "4", "--seed", "3", "--phantoms", "10"]
    argv += ["--check", str(phantoms)]
    assert main([*argv, "--install"]) == 0
    card = json.loads(shipped.with_suffix(".json").read_text())
    assert card["command"] == (
        f"python -m pipeline lungs view-train --data {phantoms} --out {out} --epochs 1 "
        "--holdout-epochs 15 --size 64 --base 4 --seed 3 --phantoms 10 "
        f"--check {phantoms} --install"
    )
    assert card["held_out_source"] == {}  # one source: nothing to hold out
    assert card["training_data"]["sources"] == {"phantom": 130}  # the folder's and 10 drawn
    assert set(card["unseen"]) == {"test part", str(phantoms)}
    assert card["unseen"][str(phantoms)]["n_images"] == 120
    checker = view.ViewChecker(shipped)
    image = synth.render_phantom(np.random.default_rng(0), 128, tb=False).image
    assert checker.check(cv2.resize(image, (300, 300))).view in range(len(view.VIEWS))
    out_text = capsys.readouterr().out
    assert "installed" in out_text
    assert "upright accepted" in out_text
