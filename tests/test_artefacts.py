"""The anonymisation-box detector: drawn boxes are found, anatomy is not, TB images have them."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.data import synth
from pipeline.preprocessing import artefacts
from tests.conftest import shared_dataset


def test_a_white_box_at_the_bottom_is_found_where_it_was_drawn():
    image = synth.render(np.random.default_rng(0), 256, tb=False)[0]
    assert artefacts.bottom_boxes(image) == []
    image[225:245, 90:170] = 255
    (box,) = artefacts.bottom_boxes(image)
    # Where it was drawn, give or take a bright pixel of the phantom touching its edge.
    drawn = np.array([90, 225, 80, 20])
    assert np.abs(np.array([box.x, box.y, box.width, box.height]) - drawn).max() <= 2
    assert artefacts.box_mask(image.shape, [box])[225:245, 90:170].all()


def test_small_marks_thin_lines_and_boxes_higher_up_are_ignored():
    image = np.full((256, 256), 100, np.uint8)
    image[230:236, 20:26] = 255  # a lead marker, too small
    image[240:242, 0:256] = 255  # a thin bright edge
    image[30:60, 90:170] = 255  # a box near the top, outside the band
    cv2.circle(image, (200, 225), 14, 255, 2)  # a ring: not solid
    assert artefacts.bottom_boxes(image) == []


def test_on_tb_cxr_boxes_mark_many_tb_images_and_almost_no_normal_one():
    root = shared_dataset("tb-cxr")
    counts = {}
    for cls in ("Normal", "Tuberculosis"):
        files = sorted((root / cls).glob("*.png"))
        counts[cls] = sum(
            bool(artefacts.bottom_boxes(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))) for f in files
        )
    assert counts["Tuberculosis"] >= 100
    assert counts["Normal"] <= 5
