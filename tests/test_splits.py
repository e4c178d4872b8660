"""Splits: stratified, seeded, and near-duplicate groups never straddle train and test."""

from __future__ import annotations

import json

import numpy as np

from pipeline.data.splits import stratified_group_split


def make(n_normal: int, n_tb: int, dup_every: int = 0):
    labels = np.array([0] * n_normal + [1] * n_tb)
    groups = [f"g{i}" for i in range(len(labels))]
    if dup_every:
        # Every dup_every-th image is a re-encoded copy of the one before it.
        for i in range(1, len(labels), dup_every):
            if labels[i] == labels[i - 1]:
                groups[i] = groups[i - 1]
    return labels, groups


def test_fractions_and_stratification():
    labels, groups = make(500, 100)
    split = stratified_group_split(labels, groups, val_fraction=0.1, test_fraction=0.2, seed=0)
    sizes = [len(split.train), len(split.val), len(split.test)]
    assert sizes == [420, 60, 120]
    for part in (split.train, split.val, split.test):
        # The 5 : 1 ratio holds in every part (one image of slack per class).
        assert abs(labels[part].mean() - 1 / 6) < 0.02


def test_parts_are_disjoint_and_cover_everything():
    labels, groups = make(100, 37, dup_every=3)
    split = stratified_group_split(labels, groups, val_fraction=0.1, test_fraction=0.3, seed=5)
    everything = np.concatenate([split.train, split.val, split.test])
    assert sorted(everything) == list(range(len(labels)))


def test_near_duplicate_groups_stay_on_one_side():
    labels, groups = make(300, 60, dup_every=2)
    split = stratified_group_split(labels, groups, val_fraction=0.1, test_fraction=0.2, seed=3)
    side = {}
    for name in ("train", "val", "test"):
        for i in split.part(name):
            side.setdefault(groups[i], set()).add(name)
    assert all(len(s) == 1 for s in side.values())
    assert any(groups.count(g) > 1 for g in side)


def test_seed_changes_the_split_and_repeats_it():
    labels, groups = make(100, 20)
    a = stratified_group_split(labels, groups, val_fraction=0.1, test_fraction=0.2, seed=1)
    b = stratified_group_split(labels, groups, val_fraction=0.1, test_fraction=0.2, seed=1)
    c = stratified_group_split(labels, groups, val_fraction=0.1, test_fraction=0.2, seed=2)
    assert np.array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)


def test_saved_split_names_every_image_by_its_relative_path():
    labels, groups = make(40, 10)
    paths = [f"Normal/{i}.png" for i in range(40)] + [f"Tuberculosis/{i}.png" for i in range(10)]
    split = stratified_group_split(labels, groups, val_fraction=0.1, test_fraction=0.2, seed=0)
    saved = json.loads(split.to_json(paths, "abc"))
    assert saved["data_fingerprint"] == "abc"
    assert saved["test"] == [paths[i] for i in split.test]
    assert sorted(saved["train"] + saved["val"] + saved["test"]) == sorted(paths)


def test_strata_split_each_source_and_class_in_proportion():
    # Two sources of different size and class ratio: 300 normal + 60 TB, then 40 + 40.
    labels = np.array([0] * 300 + [1] * 60 + [0] * 40 + [1] * 40)
    source = np.array([0] * 360 + [1] * 80)
    groups = [f"g{i}" for i in range(len(labels))]
    split = stratified_group_split(
        labels, groups, val_fraction=0.1, test_fraction=0.2, seed=0, strata=source
    )
    for part, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        idx = split.part(part)
        for s, c, n in ((0, 0, 300), (0, 1, 60), (1, 0, 40), (1, 1, 40)):
            held = int(((source[idx] == s) & (labels[idx] == c)).sum())
            assert abs(held - share * n) <= 1, (part, s, c, held)


def test_one_stratum_gives_exactly_the_split_without_strata():
    labels, groups = make(200, 45, dup_every=3)
    plain = stratified_group_split(labels, groups, val_fraction=0.1, test_fraction=0.2, seed=4)
    one = stratified_group_split(
        labels,
        groups,
        val_fraction=0.1,
        test_fraction=0.2,
        seed=4,
        strata=np.zeros(len(labels), dtype=np.int64),
    )
    for part in ("train", "val", "test"):
        assert np.array_equal(plain.part(part), one.part(part))
