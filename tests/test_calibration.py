"""Calibration: site splits, WHO's threshold table, Platt / isotonic scaling, stored results."""

from __future__ import annotations

import numpy as np
import pytest

from db import RunStore, StoreError
from pipeline.evaluation import calibration, metrics

# Ten images, hand-worked at threshold 0.5 and prevalence 0.1 (per 1,000 screened: 100 TB):
#   TB scores 0.35 0.55 0.70 0.90      -> 3 of 4 at or above 0.5: sensitivity 0.75
#   normal scores 0.1 0.2 0.3 0.4 0.5 0.6 -> 4 of 6 below 0.5:   specificity 4/6
#   TB found 0.75 × 100 = 75, missed 25; false alarms (1 − 4/6) × 900 = 300
#   referred 75 + 300 = 375, PPV 75 / 375 = 0.2
#   cleared 600 healthy + 25 missed = 625, NPV 600 / 625 = 0.96
Y10 = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
S10 = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.35, 0.55, 0.7, 0.9])


def test_threshold_table_on_a_hand_worked_example():
    (row,) = calibration.threshold_table(Y10, S10, prevalence=0.1, thresholds=[0.5])
    assert row["sensitivity"] == pytest.approx(0.75)
    assert row["specificity"] == pytest.approx(4 / 6)
    assert row["ppv"] == pytest.approx(0.2)
    assert row["npv"] == pytest.approx(0.96)
    assert row["referred_per_1000"] == pytest.approx(375)
    assert row["tb_found_per_1000"] == pytest.approx(75)
    assert row["tb_missed_per_1000"] == pytest.approx(25)
    every = calibration.threshold_table(Y10, S10, prevalence=0.1)
    assert [r["threshold"] for r in every] == sorted(set(S10.tolist()))
    # Raising the threshold never refers more people.
    referred = [r["referred_per_1000"] for r in every]
    assert referred == sorted(referred, reverse=True)


def test_threshold_table_refuses_a_prevalence_that_is_not_a_proportion():
    with pytest.raises(ValueError, match="prevalence"):
        calibration.threshold_table(Y10, S10, prevalence=5)


def sample(n_per_class: int, seed: int = 0, duplicates: int = 0):
    rng = np.random.default_rng(seed)
    y = np.array([0] * n_per_class + [1] * n_per_class)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    groups = [f"g{i}" for i in range(y.size)]
    for i in range(duplicates):  # the same radiograph twice, e.g. resized
        groups[2 * i + 1] = groups[2 * i]
    return y, s, groups


def test_the_site_split_keeps_groups_together_and_both_classes_in_both_parts():
    y, _, groups = sample(30, duplicates=10)
    cal, check = calibration.site_split(y, groups, check_fraction=0.5, seed=3)
    assert set(cal).isdisjoint(check)
    assert len(cal) + len(check) == y.size
    for part in (cal, check):
        assert {0, 1} <= set(y[part].tolist())
        assert (y[part] == 1).sum() >= calibration.MIN_PER_CLASS_AND_PART
    in_cal = {groups[i] for i in cal}
    assert in_cal.isdisjoint({groups[i] for i in check})
    # Seeded: the same split again.
    again = calibration.site_split(y, groups, check_fraction=0.5, seed=3)
    assert np.array_equal(again[0], cal)


def test_too_few_images_of_a_class_is_refused_naming_the_count_needed():
    y, _, groups = sample(30)
    y[30 + 12 :] = 0  # only 12 TB images left
    with pytest.raises(ValueError, match=r"12 TB images.*needs at least 20"):
        calibration.site_split(y, groups, check_fraction=0.5, seed=0)


@pytest.mark.parametrize("kind", ["platt", "isotonic"])
def test_calibration_reduces_the_ece_of_miscalibrated_scores(kind):
    rng = np.random.default_rng(0)
    p_true = rng.uniform(0, 1, 4000)
    y = (rng.uniform(0, 1, p_true.size) < p_true).astype(int)
    overconfident = 1 / (1 + np.exp(-4 * np.log(p_true / (1 - p_true))))  # squashed to 0 / 1
    fit_part, check_part = slice(0, 2000), slice(2000, None)
    before = metrics.ece(y[check_part], overconfident[check_part])
    calibrator = calibration.fit_calibrator(kind, y[fit_part], overconfident[fit_part])
    after = metrics.ece(y[check_part], calibrator(overconfident[check_part]))
    assert before > 0.1
    assert after < 0.05
    assert metrics.brier(y[check_part], calibrator(overconfident[check_part])) < metrics.brier(
        y[check_part], overconfident[check_part]
    )
    # Monotone: ranking (and so AUC) is kept.
    order = np.argsort(overconfident)
    assert np.all(np.diff(calibrator(overconfident[order])) >= -1e-12)


def test_a_calibrator_saves_as_json_and_loads_the_same(tmp_path):
    y, s, _ = sample(40)
    calibrator = calibration.fit_calibrator("platt", y, s)
    calibrator.save(tmp_path)
    loaded = calibration.Calibrator.load(tmp_path)
    assert np.allclose(loaded(s), calibrator(s))
    assert calibration.fit_calibrator("none", y, s) is None
    assert calibration.Calibrator.load(tmp_path / "elsewhere") is None


def test_a_site_threshold_is_chosen_on_one_part_and_reported_on_the_other():
    y, s, groups = sample(60, seed=4)
    result = calibration.calibrate_site(
        y, s, groups, run_threshold=0.9, prevalence=0.05, n_boot=200, seed=0
    )
    cal, check = calibration.site_split(y, groups, 0.5, 0)
    expected = metrics.choose_threshold(y[cal], s[cal], rule="who", min_sensitivity=0.9)
    assert result["threshold"] == expected
    assert result["check"]["sensitivity"] == pytest.approx(
        (s[check][y[check] == 1] >= expected).mean()
    )
    # The run's own (too high) threshold misses most TB at this site; the site's does not.
    assert result["check_at_run_threshold"]["sensitivity"] < 0.3
    assert result["check"]["sensitivity"] > 0.7
    assert (result["n_calibration"], result["n_check"]) == (cal.size, check.size)


def test_a_stored_calibration_round_trips_and_can_be_served(store_url):
    store = RunStore(store_url)
    run = store.create_run({}, name="r")
    store.start_run(run.id, "w")
    store.finish_run(
        run.id,
        metrics={"threshold": 0.4},
        artifacts_dir="a",
        data_fingerprint="f",
        versions={},
        duration_s=1.0,
    )
    y, s, groups = sample(30, seed=1)
    result = calibration.calibrate_site(y, s, groups, run_threshold=0.4, prevalence=0.1, n_boot=50)
    cal = store.add_calibration(
        run.id, site="Clinic A", dataset_path="/d", data_fingerprint="fp", result=result
    )
    (again,) = store.calibrations(run.id)
    assert again == cal
    assert again.threshold == pytest.approx(result["threshold"])
    table = again.details["table"]
    assert [r["threshold"] for r in table] == pytest.approx(
        [r["threshold"] for r in result["table"]]
    )
    assert [r["referred_per_1000"] for r in table] == pytest.approx(
        [r["referred_per_1000"] for r in result["table"]]
    )
    assert again.sensitivity_lo <= again.sensitivity <= again.sensitivity_hi
    assert store.served_calibration() is None
    store.promote(run.id, calibration_id=cal.id)
    assert store.served_calibration() == cal
    other = store.create_run({}, name="other")
    with pytest.raises(StoreError, match="not succeeded"):
        store.promote(other.id, calibration_id=cal.id)


def test_a_calibrated_run_and_a_site_calibration_from_the_command_line(phantoms, tmp_path, capsys):
    import csv
    from pathlib import Path

    from pipeline.cli import main
    from pipeline.data import synth
    from pipeline.serving.predictor import Predictor

    argv = ["train", "--preset", "smoke", "--data", str(phantoms), "--name", "calibrated"]
    assert main([*argv, "--set", "eval.calibration=platt"]) == 0
    (run,) = RunStore().list_runs()
    folder = Path(run.artifacts_dir)
    assert (folder / calibration.CALIBRATION_FILE).is_file()
    # Test-split ECE before and after Platt scaling are both reported.
    assert {"ece", "brier", "reliability"} <= run.metrics["calibration"].keys()
    assert "ece" in run.metrics["calibration_before"]
    # What the run reports is what it serves: the predictor gives the stored (calibrated) score.
    with (folder / "predictions.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["split"] == "test")
    served = Predictor(folder).predict(phantoms / row["path"])
    assert served.probability == pytest.approx(float(row["score"]), abs=1e-5)

    site = tmp_path / "site"
    synth.generate(site, 60, size=64, seed=7, tb_ratio=1.0)
    capsys.readouterr()
    calibrate = ["calibrate", run.id, "--data", str(site), "--site", "Clinic B"]
    assert main([*calibrate, "--prevalence", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "threshold table on the check part" in out
    assert "◀ site" in out
    assert "◀ run" in out
    (cal,) = RunStore().calibrations(run.id)
    assert cal.n_images == 60
    assert main(["calibrations", run.id]) == 0
    assert "Clinic B" in capsys.readouterr().out
    assert main(["promote", run.id, "--calibration", str(cal.id)]) == 0
    assert "calibrated for 'Clinic B'" in capsys.readouterr().out
    assert RunStore().served_calibration() == cal
    # The run's own training data is no site.
    assert (
        main(["calibrate", run.id, "--data", str(phantoms), "--site", "S", "--prevalence", "0.1"])
        == 2
    )
    assert "the data this run was trained on" in capsys.readouterr().err
    # Too small a site sample is refused in one line, naming what is needed.
    small = tmp_path / "small"
    synth.generate(small, 16, size=64, seed=8, tb_ratio=1.0)
    assert (
        main(["calibrate", run.id, "--data", str(small), "--site", "S", "--prevalence", "0.1"]) == 2
    )
    assert "needs at least 20" in capsys.readouterr().err
