"""A trained run on another dataset folder: external validation, and calibration for a site.

External validation applies the run's own threshold (chosen on its validation split) unchanged:
re-fitting it on the external set would flatter the model. A site calibration instead chooses a
threshold on one part of a site's labelled sample and reports it on the other part.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from db import Calibration, ExternalEval, RunStore
from pipeline.config import RunConfig
from pipeline.data import index_cache
from pipeline.data.overlap import load_external
from pipeline.data.scan import DatasetIndex
from pipeline.evaluation import calibration, metrics
from pipeline.preprocessing import sources
from pipeline.serving.predictor import Predictor
from pipeline.serving.scorer import Progress


def run_index(config: RunConfig, *, progress: bool = False) -> DatasetIndex | None:
    """The index of the data a run was trained on (all its sources), or None when one of its
    folders is not here."""
    if not all(Path(folder).is_dir() for folder in config.data.sources):
        return None
    return sources.load_index(config.data.sources, progress=progress)


def score_folder(
    predictor: Predictor,
    data_path: str,
    *,
    batch_size: int = 64,
    progress: bool = False,
    one_class: bool = False,
) -> tuple[DatasetIndex, np.ndarray]:
    """Every image of a dataset folder scored by the run, with the run's own preprocessing."""
    index = index_cache.load_index(data_path, progress=progress, one_class=one_class)
    return index, predictor.scorer.score_index(index, batch_size=batch_size, progress=progress)


def evaluate_external(
    store: RunStore,
    run_id: str,
    data_path: str,
    *,
    batch_size: int = 64,
    progress: bool = False,
    on_progress: Progress | None = None,
) -> ExternalEval:
    """Evaluate run ``run_id`` on the dataset at ``data_path``; the result is stored with it.

    A folder of one class is accepted (sensitivity or specificity alone, no AUC). A folder that
    shares images with the run's own data is refused (:class:`~pipeline.data.overlap.OverlapError`).
    ``on_progress(scored, total)``: as in :meth:`~pipeline.serving.scorer.Scorer.score_index`.
    """
    predictor = Predictor.from_store(store, run_id)
    index = load_external(data_path, run_index(predictor.config, progress=progress))
    scores = predictor.scorer.score_index(
        index, batch_size=batch_size, progress=progress, on_progress=on_progress
    )
    result = metrics.external(
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


def site_calibration(
    predictor: Predictor,
    data_path: str,
    *,
    prevalence: float,
    check_fraction: float = 0.5,
    seed: int = 0,
    progress: bool = False,
) -> tuple[DatasetIndex, dict]:
    """Score a site's labelled sample and calibrate the run's threshold for it (not stored).

    The site threshold is chosen by the run's own rule on the calibration part and reported on
    the check part (see :func:`pipeline.evaluation.calibration.calibrate_site`).
    """
    if any(Path(data_path).resolve() == Path(p).resolve() for p in predictor.config.data.sources):
        raise ValueError(
            f"{data_path} is the data this run was trained on; a site calibration needs "
            "labelled X-rays from the site itself, which the model has never seen"
        )
    index, scores = score_folder(predictor, data_path, progress=progress)
    rule = predictor.config.eval
    result = calibration.calibrate_site(
        index.labels,
        scores,
        index.groups,
        run_threshold=predictor.validated_threshold,
        prevalence=prevalence,
        rule=rule.threshold_rule,
        min_sensitivity=rule.min_sensitivity,
        check_fraction=check_fraction,
        n_boot=rule.bootstrap,
        seed=seed,
    )
    return index, result


def calibrate_for_site(
    store: RunStore,
    run_id: str,
    data_path: str,
    *,
    site: str,
    prevalence: float,
    check_fraction: float = 0.5,
    seed: int = 0,
    progress: bool = False,
) -> Calibration:
    """Calibrate run ``run_id`` for a site (:func:`site_calibration`) and store the result.

    The run's validated threshold is left as it is.
    """
    if not site.strip():
        raise ValueError("name the site (e.g. --site 'District clinic A')")
    predictor = Predictor.from_store(store, run_id)
    index, result = site_calibration(
        predictor,
        data_path,
        prevalence=prevalence,
        check_fraction=check_fraction,
        seed=seed,
        progress=progress,
    )
    return store.add_calibration(
        store.get_run(run_id).id,
        site=site.strip(),
        dataset_path=str(index.root),
        data_fingerprint=index.fingerprint,
        result=result,
    )
