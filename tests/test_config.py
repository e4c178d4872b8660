"""Run config validation: a bad value is refused with a message naming field and range."""

from __future__ import annotations

import json

import pytest

from pipeline.config import ConfigError, load_config_file, make_config, override, preset


def refusal(**changes: object) -> str:
    with pytest.raises(ConfigError) as info:
        preset("baseline", **changes)
    return str(info.value)


def test_out_of_range_value_names_field_and_range():
    msg = refusal(**{"data.image_size": 8})
    assert "data.image_size" in msg
    assert "greater than or equal to 32" in msg
    assert "got 8" in msg


def test_unknown_choice_lists_the_allowed_ones():
    msg = refusal(**{"optim.name": "adagrad"})
    assert "optim.name" in msg
    assert "'adam', 'sgd' or 'rmsprop'" in msg


def test_unknown_field_is_refused_not_ignored():
    msg = refusal(**{"model.pooling_kind": "max"})
    assert "model.pooling_kind: unknown field" in msg


def test_splits_must_leave_training_data():
    msg = refusal(**{"data.val_fraction": 0.4, "data.test_fraction": 0.5})
    assert "at least 30%" in msg


def test_geometry_that_shrinks_the_image_to_nothing_is_refused():
    msg = refusal(**{"model.kernel_size": 7, "model.padding": "valid", "model.stride": 2})
    assert "shrink a 128-px image to nothing" in msg
    # The same geometry on a larger image is fine.
    cfg = preset(
        "baseline",
        **{
            "model.kernel_size": 7,
            "model.padding": "valid",
            "model.stride": 2,
            "data.image_size": 1024,
        },
    )
    assert cfg.model.stride == 2


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        make_config({"seed": -1, "train": {"batch_size": 0, "epochs": 0}})
    assert len(info.value.problems) == 3


def test_config_is_frozen_and_override_returns_a_validated_copy():
    base = preset("baseline")
    with pytest.raises(Exception, match="frozen"):
        base.seed = 3  # type: ignore[misc]
    changed = override(base, {"model.pooling": "avg", "train": {"epochs": 3}})
    assert (changed.model.pooling, changed.train.epochs) == ("avg", 3)
    assert base.model.pooling == "max"
    assert changed.train.batch_size == base.train.batch_size


def test_smoke_preset_is_small_and_baseline_is_the_reference():
    smoke = preset("smoke")
    assert smoke.data.image_size == 64
    assert smoke.train.epochs == 1
    assert preset("baseline").data.channels == 3


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        preset("fast")


def test_config_json_round_trip(tmp_path):
    cfg = preset("smoke", **{"data.enhancement": "clahe", "model.filters": [4, 8]})
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    assert load_config_file(path) == cfg
    path.write_text(json.dumps({"data": {"image_size": "big"}}))
    with pytest.raises(ConfigError, match=r"data\.image_size"):
        load_config_file(path)
