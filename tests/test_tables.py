"""The leaderboard's tables (dashboard/tables.py) and filters (dashboard/filters.py) called
directly: the filter-expression language, the per-value group summary and dataset names. The
pages that show them are tested in tests/test_dashboard.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard import filters, tables


def test_group_summary_gives_mean_plus_minus_std_per_value():
    frame = pd.DataFrame(
        {
            "enhancement": ["none", "none", "clahe", "clahe"],
            "status": ["succeeded", "succeeded", "succeeded", "failed"],
            **{m: [0.90, 0.80, 0.95, np.nan] for m in tables.METRICS[:5]},
        }
    )
    grouped = tables.group_summary(frame, "enhancement").set_index("enhancement")
    assert grouped.loc["none", "auc"] == "0.850 ± 0.071"  # sample std of 0.90 and 0.80
    assert grouped.loc["clahe", "auc"] == "0.950"  # one run with a result: the mean alone
    assert list(grouped.index) == ["clahe", "none"]  # best mean AUC first
    assert grouped.loc["clahe", "succeeded"] == 1


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("auc > 0.9", ["a"]),
        ("auc > 0.5 and enhancement == 'clahe'", ["b"]),
        ("not (auc > 0.5)", ["c"]),
        ("model.dropout * 2 >= 0.6", ["a", "c"]),
        ("optimizer in ['sgd', 'rmsprop']", ["b"]),
        ("0.6 < auc < 0.95", ["a", "b"]),
        ("who_met", ["a"]),
        ("sensitivity + specificity > 1.5", ["a"]),
    ],
)
def test_filter_expressions_evaluate_without_eval(expression, expected):
    frame = pd.DataFrame(
        {
            "name": ["a", "b", "c"],
            "auc": [0.93, 0.7, float("nan")],
            "enhancement": ["none", "clahe", "none"],
            "model.dropout": [0.3, 0.1, 0.5],
            "optimizer": ["adam", "sgd", "adam"],
            "who_met": [True, False, None],
            "sensitivity": [0.9, 0.8, 0.7],
            "specificity": [0.8, 0.6, 0.5],
        }
    )
    assert list(filters.filter_frame(frame, expression)["name"]) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "name * 100000000 == ''",  # arithmetic on text: a huge string
        "auc.__class__ == 1",  # attribute access beyond a dotted column name
        "[x for x in name]",
        "lambda: 1",
        "name[0] == 'a'",
        "f'{name}' == 'a'",
    ],
)
def test_filter_expressions_refuse_anything_but_columns_and_operators(expression):
    frame = pd.DataFrame({"name": ["a"], "auc": [0.9]})
    with pytest.raises(filters.ExpressionError):
        filters.filter_frame(frame, expression)


def test_a_runs_dataset_names_every_source():
    assert tables.dataset_name("/data/tb-cxr") == "tb-cxr"
    assert tables.dataset_name(["/data/tb-cxr", "/data/montgomery"]) == "tb-cxr + montgomery"
