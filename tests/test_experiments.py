"""Experiment suites: expansion into validated runs, custom suite files and enqueue (the summary
of a suite's results is tested in tests/test_summary.py).

Nothing trains here: finished runs are faked through the store's lifecycle methods.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db import RunStore
from pipeline.config import ConfigError, make_config
from pipeline.experiments.plan import enqueue, expand, load_suite_file
from pipeline.experiments.spec import SuiteSpec
from pipeline.experiments.suites import SUITES
from pipeline.experiments.summary import summary

DATA = "data/test-set"

# Settings each preset expands to with its defaults.
EXPECTED_SETTINGS = {
    "baseline": 1,
    "optimizers": 3,
    "pooling": 2,
    "conv-geometry": 5,  # base + kernel 5, kernel 7, padding valid, stride 2
    "hyperparams": 12,  # max_runs of the random search
    "enhancement": 4,
    "width": 3,
    "input-size": 3,
    "generalisation": 9,  # base, 6 single remedies, all together, the two that helped
    "pretraining": 4,  # scratch, pretrained fine-tuned, frozen 5 epochs first, frozen throughout
}


def labels(plan) -> list[str]:
    return [p.label for p in plan]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_preset_expands_to_valid_configs_and_seeds_multiply(name):
    assert set(SUITES) == set(EXPECTED_SETTINGS)
    n = EXPECTED_SETTINGS[name]
    plan = expand(SUITES[name], data_path=DATA, seeds=3, seed=7)

    assert len(plan) == 3 * n
    assert len(set(labels(plan))) == n
    assert sorted({p.seed for p in plan}) == [7, 8, 9]
    assert len({p.config.name for p in plan}) == 3 * n
    for p in plan:
        assert p.config.seed == p.seed
        assert p.config.data.path == DATA
        # Every suite runs at 128 px unless size is what it varies.
        if name != "input-size":
            assert p.config.data.image_size == 128
        # The stored JSON is a valid config again, unchanged.
        assert make_config(p.config.model_dump(mode="json")) == p.config
    # Seed by seed: the first pass through the queue gives one result per setting.
    assert [p.seed for p in plan[:n]] == [7] * n


def test_run_names_say_suite_setting_and_seed():
    plan = expand(SUITES["pooling"], data_path=DATA, seeds=2)
    assert [p.config.name for p in plan] == [
        "pooling · model.pooling=max · seed 0",
        "pooling · model.pooling=avg · seed 0",
        "pooling · model.pooling=max · seed 1",
        "pooling · model.pooling=avg · seed 1",
    ]


def test_optimizers_run_each_at_its_customary_learning_rate():
    plan = expand(SUITES["optimizers"], data_path=DATA)
    optim = {p.config.optim.name: p.config.optim for p in plan}
    assert (optim["sgd"].learning_rate, optim["sgd"].momentum) == (1e-2, 0.9)
    assert optim["adam"].learning_rate == 1e-3
    assert optim["rmsprop"].learning_rate == 1e-3


def test_conv_geometry_one_at_a_time_changes_one_field_from_the_base():
    plan = expand(SUITES["conv-geometry"], data_path=DATA)
    assert labels(plan) == [
        "base",
        "model.kernel_size=5",
        "model.kernel_size=7",
        "model.padding=valid",
        "model.stride=2",
    ]
    stride2 = plan[4].config.model
    assert (stride2.kernel_size, stride2.padding, stride2.stride) == (3, "same", 2)


def test_conv_geometry_grid_skips_the_cells_that_cannot_fit_the_image():
    plan = expand(SUITES["conv-geometry"], data_path=DATA, mode="grid")
    # 3 kernels x 2 paddings x 2 strides = 12 cells; valid padding with stride 2 shrinks 128 px
    # to nothing through 4 blocks, for every kernel size.
    assert len(plan) == 9
    assert len(plan.skipped) == 3
    for s in plan.skipped:
        assert (s.setting["model.padding"], s.setting["model.stride"]) == ("valid", 2)
        assert "shrink a 128-px image to nothing" in s.reason
    # At 1024 px every cell fits.
    big = expand(
        SUITES["conv-geometry"], data_path=DATA, mode="grid", overrides={"data.image_size": 1024}
    )
    assert (len(big), big.skipped) == (12, ())


def test_a_grid_with_no_buildable_cell_is_refused():
    spec = SuiteSpec(
        name="hopeless",
        question="q",
        factors={"model.padding": ["valid"], "model.stride": [2], "model.kernel_size": [7]},
    )
    with pytest.raises(ConfigError, match="suite 'hopeless': no setting can be built"):
        expand(spec, data_path=DATA)


def test_an_explicit_setting_that_cannot_be_built_is_refused_not_skipped():
    spec = SuiteSpec(
        name="deep",
        question="q",
        settings=[{}, {"model.padding": "valid", "model.stride": 2}],
    )
    with pytest.raises(ConfigError) as info:
        expand(spec, data_path=DATA)
    msg = str(info.value)
    assert "suite 'deep', setting model.padding=valid, model.stride=2" in msg
    assert "shrink a 128-px image to nothing" in msg


def test_hyperparams_random_search_is_seeded_capped_and_without_repeats():
    spec = SUITES["hyperparams"]
    plan = expand(spec, data_path=DATA)
    assert len(plan) == 12
    assert len(set(labels(plan))) == 12
    assert labels(expand(spec, data_path=DATA)) == labels(plan)
    assert labels(expand(spec, data_path=DATA, seed=1)) != labels(plan)

    assert len(expand(spec, data_path=DATA, max_runs=5)) == 5
    # The cap applies before seeds multiply: the same 12 settings, twice.
    twice = expand(spec, data_path=DATA, seeds=2)
    assert len(twice) == 24
    assert labels(twice)[:12] == labels(twice)[12:] == labels(plan)
    # Asking for the grid means the whole grid: 4 x 5 x 3 x 3.
    assert len(expand(spec, data_path=DATA, mode="grid")) == 180


def test_a_cap_on_one_at_a_time_keeps_the_base_setting():
    for seed in range(5):
        plan = expand(SUITES["conv-geometry"], data_path=DATA, max_runs=3, seed=seed)
        assert len(plan) == 3
        assert plan[0].label == "base"


def test_overrides_apply_to_every_run():
    plan = expand(
        SUITES["enhancement"],
        data_path=DATA,
        overrides={"train.epochs": 5, "data": {"image_size": 64}},
    )
    assert {(p.config.train.epochs, p.config.data.image_size) for p in plan} == {(5, 64)}
    assert [p.config.data.enhancement for p in plan] == [
        "none",
        "contrast_stretch",
        "hist_eq",
        "clahe",
    ]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"model.pooling": "avg"}, "overrides: model.pooling is what suite 'pooling' varies"),
        ({"seed": 3}, "overrides: seed is set for every run"),
        ({"model.pool": "avg"}, "model.pool: unknown field"),
        ({"train.epochs": 0}, "train.epochs: Input should be greater than or equal to 1"),
    ],
)
def test_bad_overrides_are_refused_naming_the_field(overrides, expected):
    with pytest.raises(ConfigError, match="suite 'pooling'") as info:
        expand(SUITES["pooling"], data_path=DATA, overrides=overrides)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"mode": "sweep"}, "mode: unknown mode 'sweep'"),
        ({"mode": "random"}, "max_runs: required when mode is 'random'"),
        ({"seeds": 0}, "seeds: must be at least 1 (got 0)"),
    ],
)
def test_bad_expand_arguments_are_refused(kwargs, expected):
    with pytest.raises(ConfigError) as info:
        expand(SUITES["pooling"], data_path=DATA, **kwargs)
    assert expected in str(info.value)


def test_one_at_a_time_is_refused_for_a_suite_of_explicit_settings():
    with pytest.raises(ConfigError, match="one_at_a_time needs factors"):
        expand(SUITES["optimizers"], data_path=DATA, mode="one_at_a_time")


def test_the_same_value_twice_is_refused():
    spec = SuiteSpec(name="lr", question="q", factors={"optim.learning_rate": [1e-3, 0.001]})
    with pytest.raises(ConfigError) as info:
        expand(spec, data_path=DATA)
    assert "the same run as setting optim.learning_rate=0.001" in str(info.value)


# ----------------------------------------------------------------------------- custom files

YAML_SUITE = """\
name: dropout
question: does more dropout help the baseline generalise to unseen patients?
base: {train.epochs: 20}
factors:
  model.dropout: [0.1, 0.3, 0.5]
"""


def test_a_yaml_suite_file_loads_and_expands(tmp_path: Path):
    path = tmp_path / "dropout.yaml"
    path.write_text(YAML_SUITE)
    spec = load_suite_file(path)
    plan = expand(spec, data_path=DATA, seeds=2)
    assert len(plan) == 6
    assert [p.config.model.dropout for p in plan[:3]] == [0.1, 0.3, 0.5]
    assert {p.config.train.epochs for p in plan} == {20}


def test_a_json_suite_file_with_settings_loads_and_expands(tmp_path: Path):
    path = tmp_path / "sgd.json"
    path.write_text(
        json.dumps(
            {
                "name": "sgd-momentum",
                "question": "is plain SGD enough, or does it need momentum?",
                "settings": [
                    {"optim.name": "sgd", "optim.learning_rate": 0.01, "optim.momentum": 0.0},
                    {"optim": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}},
                ],
            }
        )
    )
    plan = expand(load_suite_file(path), data_path=DATA)
    assert [(p.config.optim.name, p.config.optim.momentum) for p in plan] == [
        ("sgd", 0.0),
        ("sgd", 0.9),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "factors: {model.pooling: [max, median]}",
            "model.pooling: Input should be 'max' or 'avg' (got 'median')",
        ),
        (
            "factors: {data.image_size: [16]}",
            "data.image_size: Input should be greater than or equal to 32 (got 16)",
        ),
        ("factors: {model.pool: [max]}", "model.pool: unknown field"),
        ("factor: {model.pooling: [max]}", "factor: unknown key"),
        ("factors: {model.dropout: [0.1]}\nmode: random", "max_runs: required"),
        ("settings: [{}]\nfactors: {model.dropout: [0.1]}", "give either factors"),
    ],
)
def test_a_bad_suite_file_is_refused_naming_file_and_field(tmp_path: Path, body, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nquestion: q\n{body}\n")
    with pytest.raises(ConfigError) as info:
        load_suite_file(path)
    msg = str(info.value)
    assert f"suite file {path}" in msg
    assert expected in msg


def test_a_suite_file_of_the_wrong_kind_is_refused(tmp_path: Path):
    path = tmp_path / "suite.txt"
    path.write_text(YAML_SUITE)
    with pytest.raises(ConfigError, match=r"unknown extension '\.txt'"):
        load_suite_file(path)
    with pytest.raises(ConfigError, match="cannot read it"):
        load_suite_file(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------------- enqueue


def test_enqueue_records_the_suite_and_queues_every_run():
    store = RunStore()
    plan = expand(SUITES["pooling"], data_path=DATA, seeds=2)
    suite, runs = enqueue(store, SUITES["pooling"], plan)

    stored = store.get_suite(suite.id)
    assert (stored.name, stored.kind) == ("pooling", "pooling")
    assert stored.description == SUITES["pooling"].question
    assert stored.spec["varied_fields"] == ["model.pooling"]
    assert [s["label"] for s in stored.spec["settings"]] == [
        "model.pooling=max",
        "model.pooling=avg",
    ]
    assert stored.spec["expanded_with"]["seeds"] == 2
    queued = store.list_runs(status="queued", suite_id=suite.id)
    assert len(queued) == len(runs) == 4
    by_name = {r.name: r for r in queued}
    for p in plan:
        assert make_config(by_name[p.config.name].config) == p.config


def test_enqueue_marks_a_changed_preset_as_custom_and_records_skipped_cells():
    store = RunStore()
    spec = SUITES["conv-geometry"].model_copy(update={"mode": "grid"})
    suite, runs = enqueue(store, spec, expand(spec, data_path=DATA))
    assert suite.kind == "custom"
    assert len(runs) == 9
    assert len(suite.spec["skipped"]) == 3


# ------------------------------------------------------------------ leave one source out

LOSO = SuiteSpec(
    name="unseen-collection",
    question="does a model trained on the other collections work on the one it never saw?",
    base={"train.balance_sources": True},
    mode="leave_one_source_out",
)
SOURCES = ["/data/tb-cxr", "/data/nlm-224", "/data/montgomery"]


def test_leave_one_source_out_trains_on_the_others_and_tests_on_the_held_out_one():
    plan = expand(LOSO, data_path=SOURCES, seeds=2)
    assert len(plan) == 6
    assert labels(plan[:3]) == [f'data.external=["{held}"]' for held in SOURCES]
    for p in plan:
        (held,) = p.config.data.external
        assert held not in p.config.data.sources
        assert sorted((*p.config.data.sources, held)) == sorted(SOURCES)
        assert p.config.train.balance_sources
        assert make_config(p.config.model_dump(mode="json")) == p.config
    # Two sources: each run trains on the other one alone.
    two = expand(LOSO, data_path=SOURCES[:2])
    assert [p.config.data.path for p in two] == [SOURCES[1], SOURCES[0]]


def test_leave_one_source_out_is_refused_without_two_folders_or_with_factors():
    with pytest.raises(ConfigError, match="needs two folders or more"):
        expand(LOSO, data_path=SOURCES[0])
    with pytest.raises(ConfigError, match="leave_one_source_out varies the training folders"):
        expand(SUITES["pooling"], data_path=SOURCES, mode="leave_one_source_out")
    with pytest.raises(ConfigError, match="grid needs factors or settings"):
        expand(LOSO, data_path=SOURCES, mode="grid")
    with pytest.raises(ConfigError, match=r"data\.external is what suite"):
        expand(LOSO, data_path=SOURCES, overrides={"data.external": ["/data/x"]})
    with pytest.raises(ValueError, match="drop factors and settings"):
        SuiteSpec(
            name="x", question="?", factors={"model.pooling": ["max"]}, mode="leave_one_source_out"
        )


def test_a_leave_one_source_out_suite_file_is_checked_and_its_summary_groups_by_held_out(
    tmp_path,
):
    path = tmp_path / "loso.yaml"
    path.write_text(
        "name: unseen-collection\n"
        "question: does it carry over?\n"
        "base: {train.epochs: 3}\n"
        "mode: leave_one_source_out\n"
    )
    spec = load_suite_file(path)
    store = RunStore()
    suite, runs = enqueue(store, spec, expand(spec, data_path=SOURCES))
    assert len(runs) == 3
    assert suite.spec["varied_fields"] == ["data.external"]
    assert summary(store, suite.id)["setting"].tolist() == [
        f'data.external=["{held}"]' for held in SOURCES
    ]


def test_a_held_out_source_is_absent_from_the_runs_training_data(tmp_path):
    from pipeline.data import synth
    from pipeline.training.train import prepare_data

    folders = []
    for i, n in enumerate((40, 30, 30)):
        synth.generate(tmp_path / f"s{i}", n, tb_ratio=2.0, size=64, seed=i)
        folders.append(str(tmp_path / f"s{i}"))
    plan = expand(LOSO, data_path=folders, overrides={"data.image_size": 64})
    for p in plan:
        (held,) = p.config.data.external
        data = prepare_data(p.config)
        assert held not in data.index.roots
        assert len(data.index.records) == 100 - {0: 40, 1: 30, 2: 30}[folders.index(held)]
        train_paths = [data.index.paths[i] for i in data.split.train]
        assert not any(Path(path).is_relative_to(held) for path in train_paths)
