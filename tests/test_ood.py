"""The out-of-distribution reference (pipeline/serving/ood.py) on its own: the feature-distance
threshold and a dataset too small to fit one. How the public app uses it is tested in
tests/test_gradio_app.py.
"""

from __future__ import annotations

import numpy as np

from pipeline.serving import ood


def test_feature_distance_passes_about_99_percent_of_new_in_distribution_samples(tmp_path):
    rng = np.random.default_rng(0)
    cov = np.diag(np.linspace(0.5, 3.0, 16))
    ref = ood.fit_distance(rng.multivariate_normal(np.zeros(16), cov, 800))
    fresh = rng.multivariate_normal(np.zeros(16), cov, 4000)
    assert 0.97 < np.mean(ref.distance(fresh) <= ref.threshold) < 0.999
    far = rng.multivariate_normal(np.full(16, 4.0), cov, 100)
    assert np.all(ref.distance(far) > ref.threshold)
    ref.save(tmp_path / "ood.npz")
    loaded = ood.FeatureDistance.load(tmp_path / "ood.npz")
    assert loaded.threshold == ref.threshold
    np.testing.assert_allclose(loaded.distance(fresh[:5]), ref.distance(fresh[:5]))


def test_a_toy_dataset_trains_without_an_ood_reference(tmp_path):
    from pipeline.data.splits import Split

    tiny = Split(train=np.arange(6), val=np.arange(6, 8), test=np.arange(8, 10), seed=0)
    assert ood.save_reference(tmp_path, None, np.zeros((10, 8, 8), np.uint8), tiny) is None
    assert not (tmp_path / ood.OOD_FILE).exists()
