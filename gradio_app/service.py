"""The public app's engine, free of any UI: which run is served, and what one upload gets.

:class:`ModelSource` asks the run store which run to serve (the newest promotion, else the newest
succeeded baseline) at most every ``refresh_s`` seconds and loads a new :class:`ServedModel`
when that changes, so a promotion takes effect without a restart. :meth:`ServedModel.assess`
turns the bytes of one upload into an :class:`Assessment`: a verdict from the run's validated
threshold, or "Cannot assess" with the reason (a refused file, a picture that is not a chest
X-ray, or one where the shipped segmenter finds no two plausible lungs). Nothing here keeps an
upload or writes a file: uploads are read and dropped.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from db import Run, RunStore
from pipeline import explain, images, ood
from pipeline.images import ImageError
from pipeline.predictor import NEGATIVE, POSITIVE, Predictor

CANNOT_ASSESS = "Cannot assess"
VERDICTS = (NEGATIVE, POSITIVE, CANNOT_ASSESS)
# What kind of answer an assessment is: a verdict, a refused file, or an image that is no X-ray.
ASSESSED, REFUSED, OUT_OF_DISTRIBUTION = "assessed", "refused", "out_of_distribution"
EXPLAINERS = ("lime", "shap")
Progress = Callable[[float], None]
Upload = bytes | Path


@dataclass(frozen=True)
class Limits:
    """What an upload may be: at most ``max_bytes`` bytes and ``max_pixels`` pixels."""

    max_bytes: int = 20_000_000
    max_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 64:
            raise ValueError(
                f"upload limits must be positive (got {self.max_bytes} bytes, "
                f"{self.max_pixels} pixels)"
            )


@dataclass(frozen=True)
class Assessment:
    """The answer to one upload.

    ``verdict`` is one of :data:`VERDICTS`; ``status`` says why (``assessed``, ``refused``,
    ``out_of_distribution``) and ``reason`` says it in a sentence. ``probability`` (P(TB)) and
    ``heatmap`` (Grad-CAM, (S, S) in [0, 1]) are None unless the image was assessed; ``image``
    is the prepared model input (S, S) uint8 and ``lungs`` its lung mask (S, S) bool once the
    image passed the cheap checks.
    """

    verdict: str
    status: str
    reason: str
    run_id: str | None = None
    probability: float | None = None
    threshold: float | None = None
    ood_distance: float | None = None
    ood_threshold: float | None = None
    image: np.ndarray | None = None
    lungs: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON the API returns (no arrays)."""
        return {
            "verdict": self.verdict,
            "probability": self.probability,
            "status": self.status,
            "reason": self.reason,
            "threshold": self.threshold,
            "run_id": self.run_id,
            "ood_distance": self.ood_distance,
            "ood_threshold": self.ood_threshold,
            "seconds": round(self.seconds, 4),
        }


def no_model(problem: str | None = None) -> Assessment:
    """The answer while there is no model to serve; ``problem`` says why, if known."""
    return Assessment(
        verdict=CANNOT_ASSESS,
        status=REFUSED,
        reason="no model is available yet: "
        + (
            problem
            or "no run has been promoted and no baseline run has finished training; train one "
            "(python -m pipeline train --preset baseline) or promote a run from the dashboard, "
            "then try again"
        ),
    )


class ServedModel:
    """One succeeded run ready to serve: its predictor and its out-of-distribution reference."""

    def __init__(self, run: Run) -> None:
        import tensorflow as tf

        if run.status != "succeeded" or not run.artifacts_dir:
            raise ValueError(f"run {run.id} is {run.status}; only a succeeded run can be served")
        self.run = run
        self.predictor = Predictor(run.artifacts_dir)
        model = self.predictor.model
        head = ood.feature_model(model)
        # One compiled forward pass gives both the features for the OOD check and P(TB).
        self._forward = tf.function(
            lambda x: head(x, training=False), reduce_retracing=True, jit_compile=False
        )
        self.reference, self.reference_note = self._load_reference()
        # Compile both graphs now, so the first user does not wait for tracing.
        blank = np.zeros((self.size, self.size), dtype=np.uint8)
        self.predictor.prepare_with_lungs(blank)  # loads the lung segmenter
        self._features_and_probability(blank)
        explain.gradcam(model, blank)

    @property
    def size(self) -> int:
        return self.predictor.config.data.image_size

    def _load_reference(self) -> tuple[ood.FeatureDistance | None, str]:
        folder = Path(self.run.artifacts_dir or "")
        saved = folder / ood.OOD_FILE
        if saved.is_file():
            ref = ood.FeatureDistance.load(saved)
            return ref, f"fitted at training time on {ref.n_images} training and validation images"
        data = Path(self.predictor.config.data.path)
        try:
            ref = ood.fit_from_split(self.predictor.model, folder, self.predictor.prepare, data)
        except (OSError, KeyError, ValueError) as err:  # missing files, ImageError, too few
            print(
                f"run {self.run.id}: no OOD reference ({err}); cheap checks only", file=sys.stderr
            )
            return None, (
                "not available for this run (it was trained before the check existed and its "
                "training images are gone): only the image checks (colour, blank, noise, shape) "
                "guard against uploads that are not chest X-rays"
            )
        return ref, f"rebuilt at start-up from {ref.n_images} training and validation images"

    def _features_and_probability(self, prepared: np.ndarray) -> tuple[np.ndarray, float]:
        x = prepared[np.newaxis, ..., np.newaxis].astype(np.float32)
        feats, prob = self._forward(x)
        return np.asarray(feats, dtype=np.float64), float(np.asarray(prob).reshape(-1)[0])

    def _screen(self, src: Upload, limits: Limits) -> Assessment:
        """Read, check and score an upload: the assessment without a heatmap.

        A refused file or a picture that is not a chest X-ray gives "Cannot assess" and the
        reason; otherwise the verdict at the run's threshold, with the prepared image.
        """
        refusal = _refuse_unreadable(src)
        if refusal is not None:
            return self._refused(refusal)
        try:
            gray = images.read_image(src, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes)
        except ImageError as err:
            return self._refused(err.reason)
        reason = ood.image_checks(gray, ood.colourfulness(src))
        if reason is not None:
            return self._not_xray(reason)
        prepared, lungs, found = self.predictor.prepare_with_lungs(gray)
        feats, prob = self._features_and_probability(prepared)
        distance = None if self.reference is None else float(self.reference.distance(feats)[0])
        if distance is not None and distance > self.reference.threshold:
            return self._not_xray(
                "this image does not look like the chest X-rays the model was trained on "
                f"(feature distance {distance:.1f}, limit {self.reference.threshold:.1f}); "
                "upload a frontal chest radiograph (PNG or JPEG), uncropped and not a photo of "
                "a screen",
                distance,
            )
        # Last, so that bench/ood.py counts what this check adds to the others.
        if not found.ok:
            return self._not_xray(
                "the lung fields could not be found as on a chest X-ray ("
                + "; ".join(found.reasons)
                + "); upload a frontal chest radiograph (PNG or JPEG), uncropped and upright",
                distance,
            )
        threshold = self.predictor.threshold
        verdict = self.predictor.verdict(prob)
        side = "at or above" if verdict == POSITIVE else "below"
        rule = self.predictor.config.eval
        chosen = (
            f"chosen on validation images for a sensitivity of at least {rule.min_sensitivity:.0%}"
            if rule.threshold_rule == "who"
            else f"chosen on validation images ({rule.threshold_rule} rule)"
        )
        return Assessment(
            verdict=verdict,
            status=ASSESSED,
            reason=f"P(TB) = {prob:.3f} is {side} the run's threshold {threshold:.3f}, {chosen}",
            run_id=self.run.id,
            probability=prob,
            threshold=threshold,
            ood_distance=distance,
            ood_threshold=None if self.reference is None else self.reference.threshold,
            image=prepared,
            lungs=lungs,
        )

    def assess(self, src: Upload, limits: Limits | None = None) -> Assessment:
        """Verdict, P(TB) and Grad-CAM of an encoded image (bytes or a file).

        Never raises for a bad upload: it gets "Cannot assess" and the reason instead.
        """
        start = time.perf_counter()
        a = self._screen(src, limits or Limits())
        if a.status == ASSESSED:
            a = replace(a, heatmap=explain.gradcam(self.predictor.model, a.image))
        return replace(a, seconds=time.perf_counter() - start)

    def explain(
        self,
        src: Upload,
        method: str,
        limits: Limits | None = None,
        progress: Progress | None = None,
    ) -> tuple[Assessment, np.ndarray | None]:
        """LIME or SHAP overlay (RGB uint8 (S, S, 3)) of an upload that passes the checks.

        Returns the screening assessment and the overlay; the overlay is None when the upload
        was refused or is not a chest X-ray (explaining it would mean nothing).
        """
        if method not in EXPLAINERS:
            raise ValueError(f"unknown explanation {method!r}; choose one of {EXPLAINERS}")
        start = time.perf_counter()
        a = self._screen(src, limits or Limits())
        if a.status != ASSESSED:
            return replace(a, seconds=time.perf_counter() - start), None
        result = explain.explain(self.predictor.model, a.image, method, progress=progress)
        return replace(a, seconds=time.perf_counter() - start), result.overlay(a.image)

    def _refused(self, reason: str) -> Assessment:
        return Assessment(CANNOT_ASSESS, REFUSED, reason, run_id=self.run.id)

    def _not_xray(self, reason: str, distance: float | None = None) -> Assessment:
        return Assessment(
            CANNOT_ASSESS,
            OUT_OF_DISTRIBUTION,
            reason,
            run_id=self.run.id,
            ood_distance=distance,
            ood_threshold=None if self.reference is None else self.reference.threshold,
        )


def _refuse_unreadable(src: Upload) -> str | None:
    """Refusals that come before decoding: an expired upload, and (politely) DICOM files."""
    if isinstance(src, Path):
        if not src.is_file():
            return (
                "the uploaded file is no longer on the server (uploads are deleted after a few "
                "minutes); upload the image again"
            )
        with src.open("rb") as f:
            head = f.read(132)
    else:
        head = src[:132]
    # DICOM: the 'DICM' marker after a 128-byte preamble.
    if head[128:132] == b"DICM":
        return (
            "this is a DICOM file; DICOM support is planned for a later version — for now, "
            "export the image from your DICOM viewer as PNG or JPEG and upload that"
        )
    return None


class ModelSource:
    """The run the app serves, re-read from the store at most every ``refresh_s`` seconds.

    :meth:`current` returns the loaded :class:`ServedModel`, or None while there is none to
    serve (``problem`` then says why). When the store names another run (a promotion), the new
    model loads in a background thread while the old one keeps answering, and replaces it once
    ready; a run whose model cannot be loaded is logged, noted in ``problem`` and not retried,
    and the old model stays. Thread-safe.
    """

    def __init__(self, store: RunStore | None = None, refresh_s: float = 2.0) -> None:
        self.store = store or RunStore()
        self.refresh_s = refresh_s
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._served: ServedModel | None = None
        self._checked = -float("inf")
        self._loading: str | None = None
        self._failed: set[str] = set()

    def current(self) -> ServedModel | None:
        with self._lock:
            if time.monotonic() - self._checked < self.refresh_s:
                return self._served
            self._checked = time.monotonic()
            run = self.store.served_run()
            if run is None:
                self._served, self.problem = None, None
            elif self._served is not None and self._served.run.id == run.id:
                self.problem = None
            elif run.id in self._failed or run.id == self._loading:
                pass  # known to be broken, or loading already
            elif self._served is None:
                # Nothing to answer with meanwhile: the callers wait for this first load.
                self._served = self._load(run)
            else:
                self._loading = run.id
                threading.Thread(target=self._swap, args=(run,), daemon=True).start()
            return self._served

    def _swap(self, run: Run) -> None:
        served = self._load(run)
        with self._lock:
            self._loading = None
            if served is not None:
                self._served = served

    def _load(self, run: Run) -> ServedModel | None:
        """The run's model, or None after logging why it cannot be served."""
        try:
            served = ServedModel(run)
        # Any exception: a broken or half-copied run must leave the app serving, not crash it.
        except Exception as err:
            traceback.print_exc()
            self._failed.add(run.id)
            self.problem = (
                f"the model of run {run.id} could not be loaded ({type(err).__name__}: {err}); "
                "promote another run"
            )
            return None
        print(f"serving run {run.id} ({run.name})", file=sys.stderr)
        self.problem = None
        return served
