"""A suite's summary (pipeline/experiments/summary.py): per-setting results, the comparison
with the reference setting by a paired test (or DeLong with one seed), and the printed table.

Nothing trains here: finished runs are faked through the store's lifecycle methods.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from db import RunStore
from pipeline.evaluation.compare import delong
from pipeline.experiments.plan import enqueue, expand
from pipeline.experiments.suites import SUITES
from pipeline.experiments.summary import format_summary, summary

DATA = "data/test-set"


FILTERS = {"narrow": [8, 16, 32, 64], "base": [16, 32, 64, 128], "wide": [32, 64, 128, 256]}


def finish(store: RunStore, run_id: str, auc: float, ci: tuple[float, float], **extra) -> None:
    store.start_run(run_id, "w")
    metrics = {
        "auc": auc,
        "auc_ci": list(ci),
        "sensitivity": extra.get("sensitivity", 0.9),
        "specificity": extra.get("specificity", 0.7),
        "f1": extra.get("f1", 0.8),
        "epochs_trained": extra.get("epochs", 10),
    }
    store.finish_run(
        run_id,
        metrics=metrics,
        artifacts_dir="runs/x",
        data_fingerprint="x",
        versions={},
        duration_s=extra.get("duration", 60.0),
    )


@pytest.fixture
def width_suite():
    """The width suite over 3 seeds with hand-made results.

    setting  AUC (95% CI) per seed                               mean  std    mean CI
    narrow   .80 [.70,.88]  .84 [.74,.92]  (failed)              .82   .0283  [.72,.90]
    base     .90 [.85,.95]  .92 [.87,.97]  .94 [.89,.99]         .92   .020   [.87,.97]  ref, best
    wide     .60 [.50,.70]  .64 [.54,.74]  (still queued)        .62   .0283  [.52,.72]

    Paired t against base over the seeds both have (0 and 1), 1 degree of freedom, where
    p = 1 - (2/π)·atan(|t|):
    narrow − base = −.10, −.08: mean −.09, sd .01414, t = −.09 / (.01414/√2) = −9  -> p = .0705
    wide − base   = −.30, −.28: mean −.29, sd .01414, t = −29                    -> p = .0219
    External AUC (mean over folders) on seeds 0 and 1: base .60, .62; wide .70, .71
    wide − base = +.10, +.09: mean .095, sd .00707, t = 19                       -> p = .0335
    """
    store = RunStore()
    suite, runs = enqueue(store, SUITES["width"], expand(SUITES["width"], data_path=DATA, seeds=3))
    results = {
        "base": [(0.90, (0.85, 0.95)), (0.92, (0.87, 0.97)), (0.94, (0.89, 0.99))],
        "narrow": [(0.80, (0.70, 0.88)), (0.84, (0.74, 0.92)), "failed"],
        "wide": [(0.60, (0.50, 0.70)), (0.64, (0.54, 0.74)), "queued"],
    }
    external = {("base", 0): 0.60, ("base", 1): 0.62, ("wide", 0): 0.70, ("wide", 1): 0.71}
    width = {tuple(f): name for name, f in FILTERS.items()}
    for run in runs:
        name, seed = width[tuple(run.config["model"]["filters"])], run.config["seed"]
        outcome = results[name][seed]
        if outcome == "failed":
            store.start_run(run.id, "w")
            store.fail_run(run.id, "Traceback: out of memory", duration_s=30.0)
        elif outcome != "queued":
            auc, ci = outcome
            finish(store, run.id, auc, ci, sensitivity=auc, epochs=10 + seed)
            if (name, seed) in external:
                ext = external[(name, seed)]
                for folder, shift in (("/ext/a", 0.05), ("/ext/b", -0.05)):
                    metrics = {"n": 50, "auc": ext + shift, "sensitivity": ext - 0.3}
                    store.add_external_eval(
                        run.id, dataset_path=folder, data_fingerprint="f", metrics=metrics
                    )
    return store, suite


def test_summary_groups_by_setting_and_compares_with_the_reference_by_a_paired_test(width_suite):
    store, suite = width_suite
    df = summary(store, suite.id)

    assert list(df["setting"]) == [
        "model.filters=[8,16,32,64]",
        "model.filters=[16,32,64,128]",
        "model.filters=[32,64,128,256]",
    ]
    assert list(df["runs"]) == [3, 3, 3]
    assert list(df["succeeded"]) == [2, 3, 2]
    narrow, base, wide = (df.iloc[i] for i in range(3))
    assert base["auc_mean"] == pytest.approx(0.92)
    assert base["auc_std"] == pytest.approx(0.02)
    assert narrow["auc_std"] == pytest.approx(math.sqrt(2) * 0.02)
    assert wide["auc_mean"] == pytest.approx(0.62)
    assert (base["auc_lo"], base["auc_hi"]) == pytest.approx((0.87, 0.97))
    assert (narrow["auc_lo"], narrow["auc_hi"]) == pytest.approx((0.72, 0.90))
    assert narrow["sensitivity_mean"] == pytest.approx(0.82)
    assert base["specificity_mean"] == pytest.approx(0.7)
    assert base["epochs_mean"] == pytest.approx(11.0)  # seeds 0, 1, 2 trained 10, 11, 12
    # Wall time counts the failed run too: it is what the setting cost.
    assert narrow["wall_time_s"] == pytest.approx(60 + 60 + 30)

    # The reference is the setting that is today's baseline, not the first listed.
    assert list(df["reference"]) == [False, True, False]
    assert narrow["auc_p"] == pytest.approx(1 - 2 / math.pi * math.atan(9))
    assert narrow["auc_vs_ref"] == "no difference shown"  # 0.10 lower, yet not shown to differ
    assert wide["auc_p"] == pytest.approx(1 - 2 / math.pi * math.atan(29))
    assert wide["auc_vs_ref"] == "worse"
    assert base["auc_vs_ref"] == ""

    # External results: wide generalises better although its internal AUC is worse.
    assert wide["ext_auc_mean"] == pytest.approx(0.705)
    assert wide["ext_auc_worst"] == pytest.approx(0.655)
    assert wide["ext_sens_mean"] == pytest.approx(0.405)  # each run's worst: .40 and .41
    assert wide["ext_auc_p"] == pytest.approx(1 - 2 / math.pi * math.atan(19), abs=1e-9)
    assert wide["ext_auc_vs_ref"] == "better"
    assert narrow["ext_auc_vs_ref"] == ""  # no external results: nothing to test
    # With external sets, the best setting is the best on them.
    assert list(df["best"]) == [False, False, True]


def test_format_summary_prints_p_values_and_marks_only_what_the_test_supports(width_suite):
    store, suite = width_suite
    lines = format_summary(summary(store, suite.id)).splitlines()
    narrow, base, wide = lines[1:4]
    assert base.startswith("ref")
    assert "0.920 ± 0.020" in base
    assert "[0.870, 0.970]" in base
    assert "p 0.070" in narrow
    assert "▲" not in narrow
    assert "▼" not in narrow
    assert "2/3" in narrow
    assert "2 min 30 s" in narrow
    assert wide.startswith("★")
    assert "p 0.022 ▼" in wide  # internal AUC: worse
    assert "p 0.033 ▲" in wide  # external AUC: better
    assert "≈" not in "\n".join(lines)


def test_one_seed_settings_are_compared_by_delong_on_their_shared_test_images(tmp_path):
    store = RunStore()
    suite, runs = enqueue(store, SUITES["pooling"], expand(SUITES["pooling"], data_path=DATA))
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 30)
    scores = {
        "max": labels * 0.6 + rng.random(60) * 0.5,  # the baseline: pooling max
        "avg": labels * 0.2 + rng.random(60) * 0.5,
    }
    for run in runs:
        pooling = run.config["model"]["pooling"]
        folder = tmp_path / pooling
        folder.mkdir()
        lines = ["split,path,label,score"] + [
            f"test,img{i}.png,{y},{float(s)!r}"
            for i, (y, s) in enumerate(zip(labels, scores[pooling], strict=True))
        ]
        (folder / "predictions.csv").write_text("\n".join(lines) + "\n")
        store.start_run(run.id, "w")
        store.finish_run(
            run.id,
            metrics={"auc": 0.5},
            artifacts_dir=str(folder),
            data_fingerprint="x",
            versions={},
            duration_s=1.0,
        )
    df = summary(store, suite.id).set_index("setting")
    expected = delong(labels, scores["avg"], scores["max"])
    assert df.loc["model.pooling=avg", "auc_p"] == pytest.approx(expected.p)
    assert df.loc["model.pooling=avg", "auc_test"] == "DeLong, 1 seed"
    assert df.loc["model.pooling=avg", "auc_vs_ref"] == (
        "worse" if expected.p < 0.05 else "no difference shown"
    )
    assert df.loc["model.pooling=max", "reference"]


def test_summary_of_a_suite_still_in_the_queue_has_no_best():
    store = RunStore()
    suite, _ = enqueue(store, SUITES["pooling"], expand(SUITES["pooling"], data_path=DATA))
    df = summary(store, suite.id)
    assert list(df["runs"]) == [1, 1]
    assert list(df["succeeded"]) == [0, 0]
    assert df["auc_mean"].isna().all()
    assert not df["best"].any()
    assert "—" in format_summary(df)
