"""tf.data inputs: batches, shuffling and the two ways of handling class imbalance."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.training.inputs import class_weights, make_dataset, source_weights


@pytest.fixture
def data():
    # 100 images, 5 : 1; each image's pixels equal its index so batches can be traced back.
    labels = np.array([0] * 84 + [1] * 16)
    arrays = np.repeat(np.arange(100, dtype=np.uint8)[:, None, None], 8, axis=1)
    arrays = np.repeat(arrays, 8, axis=2)
    return arrays, labels


def batches(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_eval_dataset_keeps_order_and_values(data):
    arrays, labels = data
    idx = np.array([3, 90, 10])
    x, y = batches(make_dataset(arrays, labels, idx, batch_size=2))
    assert x.shape == (3, 8, 8, 1)
    assert x.dtype == np.float32
    assert list(x[:, 0, 0, 0]) == [3, 90, 10]
    assert list(y) == [0, 1, 0]


def test_training_dataset_reshuffles_each_epoch(data):
    arrays, labels = data
    ds = make_dataset(arrays, labels, np.arange(100), batch_size=10, training=True, seed=0)
    first, _ = batches(ds)
    second, _ = batches(ds)
    assert sorted(first[:, 0, 0, 0]) == list(range(100))
    assert not np.array_equal(first[:, 0, 0, 0], second[:, 0, 0, 0])


def test_oversampling_balances_the_classes(data):
    arrays, labels = data
    ds = make_dataset(arrays, labels, np.arange(100), batch_size=20, training=True, oversample=True)
    _, y = batches(ds)
    assert len(y) == 100
    assert 0.35 < y.mean() < 0.65  # 16% TB in the data, about half in what the model sees


def test_class_weights_equalise_the_loss():
    w = class_weights(np.array([0] * 80 + [1] * 20))
    assert w[0] * 80 == pytest.approx(w[1] * 20)
    assert w[1] == pytest.approx(2.5)


def test_batches_and_labels_follow_the_seed(data):
    arrays, labels = data
    idx = np.arange(10, 100)

    def first_epoch(seed):
        return batches(make_dataset(arrays, labels, idx, batch_size=16, training=True, seed=seed))

    x, y = first_epoch(0)
    again, _ = first_epoch(0)
    other, _ = first_epoch(1)
    order = x[:, 0, 0, 0].astype(int)
    assert np.array_equal(x, again)  # the same seed gives the same batches, run after run
    assert not np.array_equal(order, other[:, 0, 0, 0])
    assert sorted(order) == list(range(10, 100))
    assert np.array_equal(y, labels[order])  # each label travels with its image


def test_dataset_streams_from_a_memory_mapped_cache(data, tmp_path):
    arrays, labels = data
    path = tmp_path / "cache.npy"
    writer = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=arrays.shape)
    writer[:] = arrays
    writer.flush()
    cache = np.load(path, mmap_mode="r")
    ds = make_dataset(cache, labels, np.array([5, 95, 50]), batch_size=2)

    # Pixels are read from the file while batches are made, not copied when the dataset is
    # built: a change to the file after building shows up in the next pass.
    writer[95] = 200
    writer.flush()
    x, y = batches(ds)
    assert list(x[:, 0, 0, 0]) == [5, 200, 50]
    assert list(y) == [0, 1, 0]
    assert x.shape == (3, 8, 8, 1)


def test_balanced_sources_weigh_the_same_in_the_loss():
    # Source 0: 80 normal + 10 TB; source 1: 6 normal + 4 TB (a small second collection).
    labels = np.array([0] * 80 + [1] * 10 + [0] * 6 + [1] * 4)
    source = np.array([0] * 90 + [1] * 10)
    w = source_weights(labels, source, "none")
    # Each source sums to n / 2 = 50: 90 images of 50/90, 10 images of 5.
    assert [w[source == s].sum() for s in (0, 1)] == pytest.approx([50, 50])
    assert w[95] == pytest.approx(5.0)
    w = source_weights(labels, source, "class_weight")
    # Every (source, class) cell sums to n / 4 = 25: sources and classes both balanced.
    for s in (0, 1):
        for c in (0, 1):
            assert w[(source == s) & (labels == c)].sum() == pytest.approx(25)
    w = source_weights(labels, source, "oversample")
    # Within each class the sources weigh the same; the sampler balances the classes.
    for c, n_c in ((0, 86), (1, 14)):
        assert [w[(source == s) & (labels == c)].sum() for s in (0, 1)] == pytest.approx(
            [n_c / 2, n_c / 2]
        )


def test_one_source_weighs_every_image_one_or_as_the_class_weights():
    labels = np.array([0] * 80 + [1] * 20)
    one = np.zeros(100, dtype=np.int64)
    assert np.allclose(source_weights(labels, one, "none"), 1.0)
    cw = class_weights(labels)
    assert np.allclose(source_weights(labels, one, "class_weight"), [cw[c] for c in labels])


def test_weights_travel_with_their_images(data):
    arrays, labels = data
    weights = np.arange(100, dtype=np.float32) / 10
    ds = make_dataset(
        arrays, labels, np.arange(100), batch_size=16, training=True, weights=weights, seed=3
    )
    pixels, ws = [], []
    for x, _, w in ds:
        pixels.append(x.numpy()[:, 0, 0, 0])
        ws.append(w.numpy())
    assert np.allclose(np.concatenate(ws), np.concatenate(pixels) / 10)


def test_weights_survive_the_appearance_augmentation(data):
    from pipeline.config import preset

    arrays, labels = data
    appearance = preset("smoke", **{"augment.gamma": 0.2}).augment
    weights = np.arange(100, dtype=np.float32)
    ds = make_dataset(
        arrays,
        labels,
        np.arange(100),
        batch_size=25,
        training=True,
        appearance=appearance,
        weights=weights,
    )
    assert sorted(np.concatenate([w.numpy() for _, _, w in ds])) == list(range(100))
