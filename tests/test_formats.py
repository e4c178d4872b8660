"""Numbers for people, written one way on the command line, in summaries and on the dashboard."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.formats import duration, interval, number, probability_and_threshold, with_interval


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (float("nan"), "—"), (4.4, "4 s"), (187.3, "3 min 07 s"), (7500, "2 h 05 min")],
)
def test_a_duration_reads_in_seconds_minutes_or_hours(seconds, text):
    assert duration(seconds) == text


def test_a_metric_with_its_interval_and_without_one():
    assert with_interval(0.9123, (0.88, 0.94)) == "0.912 [0.880, 0.940]"
    assert with_interval(np.float64(0.5), None) == "0.500"
    # A single-class external set has no AUC interval: NaN bounds, never "[nan, nan]".
    assert with_interval(0.7, [float("nan"), float("nan")]) == "0.700"
    assert with_interval(None, (0.1, 0.2)) == "—"
    assert interval((0.1, None)) == "—"
    assert number(np.float32("nan")) == "—"
    assert number(0.01856, 4) == "0.0186"


@pytest.mark.parametrize(
    ("probability", "threshold", "shown"),
    [
        (0.734, 0.723, ("0.734", "0.723")),
        (0.0192, 0.0186, ("0.0192", "0.0186")),  # was "0.02" beside "0.0186"
        (0.01901, 0.01899, ("0.01901", "0.01899")),
        (0.5, 0.5, ("0.500000", "0.500000")),
    ],
)
def test_p_tb_and_its_threshold_read_with_the_digits_that_tell_them_apart(
    probability, threshold, shown
):
    assert probability_and_threshold(probability, threshold) == shown
