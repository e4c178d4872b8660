"""Run config validation: a bad value is refused with a message naming field and range."""

from __future__ import annotations

import json

import pytest

from pipeline.config import (
    ConfigError,
    absolute_paths,
    load_config_file,
    make_config,
    override,
    parse_overrides,
    preset,
)


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


def test_data_path_takes_one_folder_or_several(tmp_path):
    one = preset("smoke", **{"data.path": "/data/tb-cxr"})
    assert one.data.sources == ("/data/tb-cxr",)
    assert one.data.root == "/data/tb-cxr"
    two = preset("smoke", **{"data.path": ["/data/tb-cxr", "/data/montgomery"]})
    assert two.data.sources == ("/data/tb-cxr", "/data/montgomery")
    # Saved image paths are relative to the folders' common parent: tb-cxr/Normal/x.png.
    assert two.data.root == "/data"
    # A list of one is the single folder, stored as a string like every older config.
    assert preset("smoke", **{"data.path": ["/data/tb-cxr"]}).data.path == "/data/tb-cxr"
    path = tmp_path / "config.json"
    path.write_text(two.to_json())
    assert json.loads(path.read_text())["data"]["path"] == ["/data/tb-cxr", "/data/montgomery"]
    assert load_config_file(path) == two


def test_a_config_saved_with_one_data_folder_still_loads_unchanged(tmp_path):
    # config.json as runs stored it before several sources: path a string, no balance_sources.
    saved = json.loads(preset("smoke").to_json())
    saved["data"]["path"] = "/data/tb-cxr"
    del saved["train"]["balance_sources"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    cfg = load_config_file(path)
    assert cfg.data.path == "/data/tb-cxr"
    assert cfg.train.balance_sources is False
    assert json.loads(cfg.to_json())["data"]["path"] == "/data/tb-cxr"


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ([], "give at least one dataset folder"),
        (["/data/a", "/data/b", "/data/a/"], "'/data/a/' is listed twice"),
        (["/data", "/data/a"], "one folder is inside the other"),
    ],
)
def test_bad_lists_of_data_folders_are_refused(paths, message):
    msg = refusal(**{"data.path": paths})
    assert "data.path" in msg
    assert message in msg


def test_field_value_overrides_read_json_values_and_text_alike_wherever_typed():
    typed = ["model.pooling=avg", " train.epochs = 5 ", "model.filters=[8, 16]", "", "eval.x=true"]
    assert parse_overrides(typed) == {
        "model.pooling": "avg",
        "train.epochs": 5,
        "model.filters": [8, 16],
        "eval.x": True,
    }
    # Text values lose the spaces around them, as JSON values always did.
    assert parse_overrides(["name= my run "]) == {"name": "my run"}


def test_field_value_overrides_name_every_item_without_a_value():
    with pytest.raises(ConfigError) as err:
        parse_overrides(["train.epochs", "model.pooling=avg", "=5"])
    assert err.value.problems == [
        "'train.epochs': write FIELD=VALUE, e.g. model.pooling=avg",
        "'=5': write FIELD=VALUE, e.g. model.pooling=avg",
    ]


def test_data_paths_become_absolute_one_kept_a_string(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert absolute_paths("data/a") == str(tmp_path / "data" / "a")
    assert absolute_paths(["a", "~/b"]) == [str(tmp_path / "a"), str(tmp_path / "home" / "b")]
