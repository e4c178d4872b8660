"""The CNN builder: the config shapes the network, and preprocessing lives inside the model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.config import preset
from pipeline.model import LAST_CONV, build_model


def test_model_follows_the_config():
    cfg = preset(
        "smoke",
        **{
            "model.filters": [4, 8, 12],
            "model.pooling": "avg",
            "model.kernel_size": 5,
            "model.batch_norm": False,
        },
    )
    model = build_model(cfg)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [4, 8, 12]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert any(isinstance(layer, keras.layers.AveragePooling2D) for layer in model.layers)
    assert model.get_layer(LAST_CONV).output.shape[-1] == 12
    assert model.input_shape == (None, 64, 64, 1)
    assert model.output_shape == (None, 1)


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
def test_optimizer_and_learning_rate(name):
    model = build_model(preset("smoke", **{"optim.name": name, "optim.learning_rate": 0.01}))
    assert type(model.optimizer).__name__.lower() == name
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


def test_probabilities_and_inference_is_deterministic():
    model = build_model(preset("smoke"))
    x = np.random.default_rng(0).integers(0, 256, size=(4, 64, 64, 1)).astype("float32")
    p1 = model.predict_on_batch(x)
    p2 = model.predict_on_batch(x)
    assert p1.shape == (4, 1)
    assert np.all((p1 > 0) & (p1 < 1))
    # Augmentation layers are active only in training: inference repeats exactly.
    np.testing.assert_allclose(p1, p2)


def test_zscore_model_ignores_global_brightness():
    cfg = preset("smoke", **{"data.normalisation": "zscore", "model.batch_norm": False})
    model = build_model(cfg)
    x = np.random.default_rng(1).integers(0, 128, size=(2, 64, 64, 1)).astype("float32")
    np.testing.assert_allclose(
        model.predict_on_batch(x), model.predict_on_batch(x * 1.5 + 20), rtol=1e-4, atol=1e-5
    )


def test_saved_model_reloads_in_safe_mode(tmp_path):
    model = build_model(preset("smoke", **{"data.normalisation": "zscore"}))
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.full((1, 64, 64, 1), 100.0, dtype="float32")
    np.testing.assert_allclose(again.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-5)
