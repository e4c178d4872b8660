"""External validation: score a trained run on another dataset folder and store the result.

The run's own threshold (chosen on its validation split) is applied unchanged: re-fitting it on
the external set would flatter the model.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from db import ExternalEval, RunStore
from pipeline import evaluate, preprocess
from pipeline.predictor import Predictor


def evaluate_external(
    store: RunStore, run_id: str, data_path: str, *, batch_size: int = 64, progress: bool = False
) -> ExternalEval:
    """Evaluate run ``run_id`` on the dataset at ``data_path``; the result is stored with it."""
    predictor = Predictor.from_store(store, run_id)
    index = preprocess.load_index(data_path, progress=progress)
    arrays = preprocess.cached_arrays(index, predictor.config.data, progress=progress)
    if predictor.pca is not None:
        arrays = predictor.pca.transform(np.asarray(arrays))
    starts = range(0, len(arrays), batch_size)
    scores = np.concatenate(
        [
            predictor.predict_prepared(arrays[i : i + batch_size])
            for i in tqdm(starts, desc="evaluate", unit="batch", disable=not progress)
        ]
    )
    result = evaluate.external(
        index.labels,
        scores,
        predictor.threshold,
        n_boot=predictor.config.eval.bootstrap,
        seed=predictor.config.seed,
    )
    return store.add_external_eval(
        store.get_run(run_id).id,
        dataset_path=str(index.root),
        data_fingerprint=index.fingerprint,
        metrics=result,
    )
