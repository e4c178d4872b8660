"""The public app's engine, free of any UI: which run is served, and what one upload gets.

:class:`ModelSource` asks the run store which run to serve (the newest promotion, else the newest
succeeded baseline) at most every ``refresh_s`` seconds and loads a new :class:`ServedModel`
when that changes, so a promotion takes effect without a restart. :meth:`ServedModel.assess`
turns the bytes of one upload into an :class:`Assessment`: a verdict from the run's validated
threshold, or "Cannot assess" with the reason (a refused file, a picture that is not a chest
X-ray, a lateral DICOM view, or one where the shipped segmenter finds no two plausible lungs).
Nothing here keeps an upload or writes a file: uploads are read and dropped, and of a DICOM
header only what the image needs is read (:mod:`pipeline.dicom`).
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

from db import Calibration, Run, RunStore
from pipeline import dicom, explain, images, ood, synth
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
    """What an upload may be: at most ``max_bytes`` bytes and ``max_pixels`` pixels; a raw DICOM
    detector image (FOR PROCESSING) is refused, or assessed with a note when ``for_processing``
    is ``"warn"``."""

    # 20 MB as browsers and Gradio count them (MiB), so the page, the refusal toast and the
    # limit all say the same number.
    max_bytes: int = 20 * 2**20
    max_pixels: int = 50_000_000
    for_processing: str = "refuse"
    # Fair use per client (gradio_app.flood): requests per moving window ("limits" notation),
    # explanations waiting or running per client, and for everyone together.
    rates: tuple[tuple[str, str], ...] = ()
    explain_in_flight: int = 2
    explain_capacity: int = 24
    upload_budget_mb: int = 512  # uploads stored on disk at once, all clients together

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 64:
            raise ValueError(
                f"upload limits must be positive (got {self.max_bytes} bytes, "
                f"{self.max_pixels} pixels)"
            )
        if self.for_processing not in ("refuse", "warn"):
            raise ValueError(
                f"for_processing must be 'refuse' or 'warn', got {self.for_processing!r}"
            )


@dataclass(frozen=True)
class Assessment:
    """The answer to one upload.

    ``verdict`` is one of :data:`VERDICTS`; ``status`` says why (``assessed``, ``refused``,
    ``out_of_distribution``) and ``reason`` says it in a sentence. ``probability`` (P(TB)) and
    ``heatmap`` (Grad-CAM, (S, S) in [0, 1]) are None unless the image was assessed; ``image``
    is the prepared model input (S, S) uint8 and ``lungs`` its lung mask (S, S) bool once the
    image passed the cheap checks. ``notes`` are sentences the reader must see beside the
    verdict (e.g. text burned into a DICOM image).
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
    notes: tuple[str, ...] = ()

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
            "notes": list(self.notes),
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

    def __init__(self, run: Run, calibration: Calibration | None = None) -> None:
        import tensorflow as tf

        if run.status != "succeeded" or not run.artifacts_dir:
            raise ValueError(f"run {run.id} is {run.status}; only a succeeded run can be served")
        self.run = run
        # A promotion with a site calibration serves that site's threshold instead of the run's.
        self.calibration = calibration
        self.predictor = Predictor(
            run.artifacts_dir, threshold=None if calibration is None else calibration.threshold
        )
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

    @property
    def synthetic(self) -> bool:
        """Whether the run was trained on synthetic phantoms (a demonstration model)."""
        return any(synth.is_synthetic(f) for f in self.predictor.config.data.sources)

    def _load_reference(self) -> tuple[ood.FeatureDistance | None, str]:
        folder = Path(self.run.artifacts_dir or "")
        saved = folder / ood.OOD_FILE
        if saved.is_file():
            ref = ood.FeatureDistance.load(saved)
            return ref, f"fitted at training time on {ref.n_images} training and validation images"
        data = Path(self.predictor.config.data.root)
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
            decoded = images.decode(
                src,
                max_pixels=limits.max_pixels,
                max_bytes=limits.max_bytes,
                for_processing=limits.for_processing,
            )
        except ImageError as err:
            return self._refused(err.reason)
        if decoded.view in dicom.LATERAL_VIEWS:
            return self._not_xray(
                f"this is a lateral view (DICOM View Position {decoded.view}); a frontal view "
                "(PA or AP) is needed — upload the frontal image of the study"
            )
        gray = decoded.pixels
        # A DICOM file that reached here is grayscale (pipeline.dicom refuses colour ones).
        colour = 0.0 if decoded.format == "DICOM" else ood.colourfulness(src)
        reason = ood.image_checks(gray, colour)
        if reason is not None:
            return self._not_xray(reason)
        prepared, lungs, found = self.predictor.prepare_with_lungs(gray)
        # First the checks that do not depend on the classifier: is this a frontal chest X-ray?
        if not found.ok:
            return self._not_xray(
                "the lung fields could not be found as on a chest X-ray ("
                + "; ".join(found.reasons)
                + "); upload a frontal chest radiograph (PNG, JPEG or DICOM), uncropped and "
                "upright"
            )
        feats, raw = self._features_and_probability(prepared)
        prob = float(self.predictor.calibrate(raw))
        distance = None if self.reference is None else float(self.reference.distance(feats)[0])
        # Then the model's own: a chest X-ray, but unlike those it learned from.
        if distance is not None and distance > self.reference.threshold:
            return self._not_xray(
                "this X-ray looks different from the ones the model learned from — probably "
                "another machine or hospital — so it cannot judge it reliably (feature distance "
                f"{distance:.1f}, limit {self.reference.threshold:.1f}); a doctor should read it",
                distance,
            )
        threshold = self.predictor.threshold
        verdict = self.predictor.verdict(prob)
        side = "at or above" if verdict == POSITIVE else "below"
        return Assessment(
            verdict=verdict,
            status=ASSESSED,
            reason=f"P(TB) = {prob:.3f} is {side} the threshold {threshold:.3f}, "
            f"{self.threshold_origin()}",
            run_id=self.run.id,
            probability=prob,
            threshold=threshold,
            ood_distance=distance,
            ood_threshold=None if self.reference is None else self.reference.threshold,
            image=prepared,
            lungs=lungs,
            notes=decoded.notes,
        )

    def threshold_origin(self) -> str:
        """Where the served threshold comes from, in words (a site calibration, or validation)."""
        cal = self.calibration
        if cal is not None:
            return (
                f"calibrated for {cal.site} on {cal.details['n_calibration']} of its X-rays "
                f"({cal.created_at:%Y-%m-%d})"
            )
        rule = self.predictor.config.eval
        if rule.threshold_rule == "who":
            return (
                "chosen on validation images for a sensitivity of at least "
                f"{rule.min_sensitivity:.0%}"
            )
        return f"chosen on validation images ({rule.threshold_rule} rule)"

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
    """The refusal that comes before decoding: an upload that has expired."""
    if isinstance(src, Path) and not src.is_file():
        return (
            "the uploaded file is no longer on the server (uploads are deleted after a few "
            "minutes); upload the image again"
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
        self._loading: tuple[str, int | None] | None = None
        self._failed: set[str] = set()

    def current(self) -> ServedModel | None:
        with self._lock:
            if time.monotonic() - self._checked < self.refresh_s:
                return self._served
            self._checked = time.monotonic()
            run = self.store.served_run()
            cal = None if run is None else self.store.served_calibration()
            key = None if run is None else (run.id, None if cal is None else cal.id)
            if run is None:
                self._served, self.problem = None, None
            elif self._served is not None and _key(self._served) == key:
                self.problem = None
            elif run.id in self._failed or key == self._loading:
                pass  # known to be broken, or loading already
            elif self._served is None:
                # Nothing to answer with meanwhile: the callers wait for this first load.
                self._served = self._load(run, cal)
            else:
                self._loading = key
                threading.Thread(target=self._swap, args=(run, cal), daemon=True).start()
            return self._served

    def _swap(self, run: Run, cal: Calibration | None) -> None:
        served = self._load(run, cal)
        with self._lock:
            self._loading = None
            if served is not None:
                self._served = served

    def _load(self, run: Run, cal: Calibration | None) -> ServedModel | None:
        """The run's model, or None after logging why it cannot be served."""
        try:
            served = ServedModel(run, cal)
        # Any exception: a broken or half-copied run must leave the app serving, not crash it.
        except Exception as err:
            traceback.print_exc()
            self._failed.add(run.id)
            # Shown on the public page: the error's own words can name server paths.
            self.problem = (
                f"the model of run {run.id} could not be loaded ({type(err).__name__}; the "
                "server's log says why); promote another run"
            )
            return None
        print(f"serving run {run.id} ({run.name})", file=sys.stderr)
        self.problem = None
        return served


def _key(served: ServedModel) -> tuple[str, int | None]:
    """What identifies a served model: the run and the site calibration it applies."""
    return served.run.id, None if served.calibration is None else served.calibration.id
