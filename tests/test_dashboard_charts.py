"""Charts that agree with their controls: the Leaderboard's parallel coordinates after a filter,
the suite bar chart's labels and the Compare page's learning-curve legend.

The store is written through its own API (no model is trained): two suites and a few single
runs, all succeeded, so the leaderboard charts them all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import charts
from db import Epoch, RunStore
from pipeline.config import preset
from pipeline.experiments.plan import enqueue, expand
from pipeline.experiments.spec import SuiteSpec

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
# Two suites, each varying one field over two seeds: dropout has a short leaderboard name,
# padding only its dotted one.
DROPOUT = SuiteSpec(name="dropout", question="q", factors={"model.dropout": [0.2, 0.5]})
PADDING = SuiteSpec(name="padding", question="q", factors={"model.padding": ["same", "valid"]})
# Single runs that differ in more fields than the chart shows by default.
SINGLES = (
    {"data.image_size": 64, "data.enhancement": "none", "optim.name": "adam"},
    {"data.image_size": 128, "data.enhancement": "clahe", "optim.name": "sgd"},
    {"data.image_size": 224, "optim.learning_rate": 0.01, "optim.name": "rmsprop"},
)


def finish(store: RunStore, run_id: str, auc: float) -> None:
    store.start_run(run_id, worker="test")
    metrics = {"auc": auc, "sensitivity": 0.9, "specificity": 0.7, "threshold": 0.5}
    store.finish_run(
        run_id,
        metrics=metrics,
        artifacts_dir="runs/none",
        data_fingerprint="fp",
        versions={},
        duration_s=1.0,
    )


@pytest.fixture
def store(isolated_store) -> RunStore:
    store = RunStore()
    runs = []
    for spec in (DROPOUT, PADDING):
        runs += enqueue(store, spec, expand(spec, data_path="x", seeds=2))[1]
    for i, changes in enumerate(SINGLES):
        cfg = json.loads(preset("baseline", **{"data.path": "x", **changes}).to_json())
        runs.append(store.create_run(cfg, name=f"single-{i}"))
    for i, run in enumerate(runs):
        finish(store, run.id, 0.7 + 0.02 * i)
    return store


def leaderboard() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    return at


def parcoords_axes(at: AppTest) -> list[str]:
    """The axis labels of the parallel-coordinates figure the page sent."""
    chart = next(c for c in at.get("plotly_chart") if "parcoords" in c.proto.spec)
    return [d["label"] for d in json.loads(chart.proto.spec)["data"][0]["dimensions"]]


def test_parallel_coordinates_follow_the_filter_to_a_suites_factor(store):
    at = leaderboard()
    assert parcoords_axes(at) == [*at.multiselect(key="lb.parcoords").value, "auc"]

    for suite, factor in (("padding", "model.padding"), ("dropout", "dropout")):
        at.multiselect(key="lb.suite").set_value([suite]).run()
        box = at.multiselect(key="lb.parcoords").value
        assert factor in box, suite  # the factor the suite varies is on the chart by default
        assert "seed" in box, suite  # and so is the seed, the other field that varies
        assert parcoords_axes(at) == [*box, "auc"], suite  # the chart draws what the box shows


def test_a_chosen_axis_stays_until_the_filter_changes_what_varies(store):
    at = leaderboard()
    at.multiselect(key="lb.suite").set_value(["dropout"]).run()
    at.multiselect(key="lb.parcoords").set_value(["seed"]).run()
    at.selectbox(key="lb.parmetric").set_value("sensitivity").run()
    assert at.multiselect(key="lb.parcoords").value == ["seed"]
    assert parcoords_axes(at) == ["seed", "sensitivity"]

    at.multiselect(key="lb.suite").set_value(["padding"]).run()
    assert "model.padding" in at.multiselect(key="lb.parcoords").value


def test_suite_bar_labels_sit_above_the_error_bars():
    summary = pd.DataFrame(
        {
            "setting": ["model.pooling=max", "model.pooling=avg"],
            "auc_mean": [0.90, 0.80],
            "auc_std": [0.03, float("nan")],  # one seed: no error bar
            "best": [True, False],
            "succeeded": [3, 1],
            "runs": [3, 1],
        }
    )
    fig = charts.factor_chart(summary, "auc")
    (bars,) = fig.data
    assert bars.text is None  # a label on the bar itself would sit on its error bar
    labels = {a.x: a for a in fig.layout.annotations}
    assert labels["model.pooling=max"].text == "0.900"
    assert labels["model.pooling=max"].y == pytest.approx(0.93)  # the top of the error bar
    assert labels["model.pooling=avg"].y == pytest.approx(0.80)
    assert all(a.yanchor == "bottom" and a.yshift > 0 for a in labels.values())


def history(run_id: str, epochs: int = 10) -> list[Epoch]:
    return [
        Epoch(run_id, e, 0.5, 0.8, 0.8, 0.6, 0.7, 0.75, 1e-3, 4.0) for e in range(1, epochs + 1)
    ]


def test_learning_curves_name_each_run_once_and_keep_their_height():
    labels = [f"enhancement · data.enhancement=setting-{i} · seed 0 · {i:06d}" for i in range(6)]
    fig = charts.overlaid_curves([(label, history(label)) for label in labels], "auc")
    named = [t.name for t in fig.data if t.showlegend is not False]
    assert named == labels  # one entry per run, not one per curve
    for label in labels:  # a click on the run's entry hides both its curves
        assert {t.line.dash for t in fig.data if t.legendgroup == label} == {"solid", "dot"}
    assert fig.layout.legend.orientation == "h"
    one = charts.overlaid_curves([(labels[0], history(labels[0]))], "auc")
    assert fig.layout.height > one.layout.height  # the legend rows add height, not take it
