"""One assessment of one image, the same everywhere: the public app, the dashboard's Explain
page and ``python -m pipeline predict`` all ask :meth:`Assessor.assess`.

An image gets a verdict from the run's threshold, or "Cannot assess" with the reason, in this
order: a file that cannot be read or is too large (``refused``); a lateral DICOM view; what the
image checks find not to be an X-ray (colour, blank, noise, shape); the checks that do not depend
on the classifier — two plausible lungs found by the shipped segmenter and an upright, whole film
by the view check (:mod:`pipeline.lungs.view`); then the model's own, a feature distance to its
training images beyond the 99th percentile (:mod:`pipeline.serving.ood`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import formats
from pipeline.explain import heatmaps
from pipeline.imaging import decode, dicom
from pipeline.imaging.decoded import Decoded, ImageError
from pipeline.lungs import view
from pipeline.serving import ood
from pipeline.serving.predictor import NEGATIVE, POSITIVE, Predictor

CANNOT_ASSESS = "Cannot assess"
VERDICTS = (NEGATIVE, POSITIVE, CANNOT_ASSESS)
# What kind of answer an assessment is: a verdict, a refused file, or an image that is no X-ray.
ASSESSED, REFUSED, OUT_OF_DISTRIBUTION = "assessed", "refused", "out_of_distribution"
Source = bytes | Path


@dataclass(frozen=True)
class Assessment:
    """The answer to one image.

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


@dataclass(frozen=True)
class Decoding:
    """What an image may be: at most ``max_bytes`` bytes and ``max_pixels`` pixels; a raw DICOM
    detector image (FOR PROCESSING) is refused, or assessed with a note when ``for_processing``
    is ``"warn"``. None: no limit."""

    max_bytes: int | None = None
    max_pixels: int | None = 50_000_000
    for_processing: str = "refuse"


class Assessor:
    """A run's model with everything that decides whether and how it may judge an image.

    ``predictor``: the run's :class:`~pipeline.serving.predictor.Predictor` (its threshold may be a
    site calibration's); ``run_id`` names the run in every answer; ``threshold_origin`` says in
    words where the threshold comes from (default: the run's validation rule).
    """

    def __init__(
        self, predictor: Predictor, run_id: str, threshold_origin: str | None = None
    ) -> None:
        import tensorflow as tf

        self.predictor = predictor
        self.run_id = run_id
        self.threshold_origin = threshold_origin or validation_origin(predictor)
        head = ood.feature_model(predictor.model)
        # One compiled forward pass gives both the features for the OOD check and P(TB).
        self._forward = tf.function(
            lambda x: head(x, training=False), reduce_retracing=True, jit_compile=False
        )
        self.reference, self.reference_note = self._load_reference()
        self.view = view.shipped()
        # Compile every graph now, so the first image does not wait for tracing.
        blank = np.zeros((self.size, self.size), dtype=np.uint8)
        predictor.prepare_with_lungs(blank)  # loads the lung segmenter
        self.view.check(blank)
        self._features_and_probability(blank)
        heatmaps.gradcam(predictor.model, blank)

    @property
    def size(self) -> int:
        return self.predictor.config.data.image_size

    def assess(self, src: Source, decoding: Decoding | None = None) -> Assessment:
        """:meth:`screen`, then Grad-CAM of an assessed image. Never raises for a bad image."""
        a = self.screen(src, decoding)
        if a.status == ASSESSED:
            a = replace(a, heatmap=heatmaps.gradcam(self.predictor.model, a.image))
        return a

    def screen(self, src: Source, decoding: Decoding | None = None) -> Assessment:
        """Read, check and score an image file (or its bytes): the assessment without a heatmap.

        A refused file or a picture that is not a chest X-ray gives "Cannot assess" and the
        reason; otherwise the verdict at the run's threshold, with the prepared image.
        """
        read = self.read(src, decoding)
        return read if isinstance(read, Assessment) else self.judge(read)

    def read(self, src: Source, decoding: Decoding | None = None) -> Decoded | Assessment:
        """Decode an image file (or its bytes) once, measuring its colour on the way; a file
        that cannot be used gives its "Cannot assess" (refused) instead."""
        d = decoding or Decoding()
        try:
            return decode.decode(
                src,
                max_pixels=d.max_pixels,
                max_bytes=d.max_bytes,
                for_processing=d.for_processing,
                measure_colour=True,
            )
        except ImageError as err:
            return self.refused(err.reason)

    def judge(self, decoded: Decoded) -> Assessment:
        """Check and score a decoded image (:meth:`read`): :meth:`screen` after the decode."""
        if decoded.view in dicom.LATERAL_VIEWS:
            return self.not_xray(
                f"this is a lateral view (DICOM View Position {decoded.view}); a frontal view "
                "(PA or AP) is needed — upload the frontal image of the study"
            )
        gray = decoded.pixels
        reason = ood.image_checks(gray, decoded.colourfulness, decoded.size)
        if reason is not None:
            return self.not_xray(reason)
        prepared, lungs, found = self.predictor.prepare_with_lungs(gray)
        # First the checks that do not depend on the classifier: is this a frontal chest X-ray?
        if not found.shape_ok:
            return self.not_xray(
                "the lung fields could not be found as on a chest X-ray ("
                + "; ".join(found.reasons)
                + "); upload a frontal chest radiograph (PNG, JPEG or DICOM), uncropped and "
                "upright"
            )
        # Two plausible lungs are also found on a film upside down or cut to its middle.
        shown = self.view.check(gray)
        if not shown.ok:
            return self.not_xray(
                f"{shown.advice} (the view check finds it {shown.name}, "
                f"{shown.probability:.0%} sure)"
            )
        # Two lungs of the right shape, but drawn where the segmenter was guessing: a verdict
        # would rest on the wrong pixels (pipeline/lungs/quality.py).
        if not found.confident:
            return self.not_xray(
                f"{found.reasons[-1]}, so the model would judge it on a guessed lung outline; "
                "a doctor should read this X-ray (a sharper, uncropped frontal film may work)"
            )
        feats, raw = self._features_and_probability(prepared)
        prob = float(self.predictor.calibrate(raw))
        ref = self.reference
        distance = None if ref is None else float(ref.distance(feats)[0])
        # Then the model's own: a chest X-ray, but unlike those it learned from.
        if ref is not None and distance is not None and distance > ref.threshold:
            return self.not_xray(
                "this X-ray looks different from the ones the model learned from — probably "
                "another machine or hospital — so it cannot judge it reliably (feature distance "
                f"{distance:.1f}, limit {ref.threshold:.1f}); a doctor should read it",
                distance,
            )
        threshold = self.predictor.threshold
        verdict = self.predictor.verdict(prob)
        side = "at or above" if verdict == POSITIVE else "below"
        shown_p, shown_t = formats.probability_and_threshold(prob, threshold)
        return Assessment(
            verdict=verdict,
            status=ASSESSED,
            reason=f"P(TB) = {shown_p} is {side} the threshold {shown_t}, {self.threshold_origin}",
            run_id=self.run_id,
            probability=prob,
            threshold=threshold,
            ood_distance=distance,
            ood_threshold=None if ref is None else ref.threshold,
            image=prepared,
            lungs=lungs,
            notes=decoded.notes,
        )

    def refused(self, reason: str) -> Assessment:
        """ "Cannot assess" for a file that cannot be used; ``reason`` says why and what to do."""
        return Assessment(CANNOT_ASSESS, REFUSED, reason, run_id=self.run_id)

    def not_xray(self, reason: str, distance: float | None = None) -> Assessment:
        """ "Cannot assess" for an image that is not one the model may judge."""
        return Assessment(
            CANNOT_ASSESS,
            OUT_OF_DISTRIBUTION,
            reason,
            run_id=self.run_id,
            ood_distance=distance,
            ood_threshold=None if self.reference is None else self.reference.threshold,
        )

    def _features_and_probability(self, prepared: np.ndarray) -> tuple[np.ndarray, float]:
        x = prepared[np.newaxis, ..., np.newaxis].astype(np.float32)
        feats, prob = self._forward(x)
        return np.asarray(feats, dtype=np.float64), float(np.asarray(prob).reshape(-1)[0])

    def _load_reference(self) -> tuple[ood.FeatureDistance | None, str]:
        folder = self.predictor.run_dir
        saved = folder / ood.OOD_FILE
        if saved.is_file():
            ref = ood.FeatureDistance.load(saved)
            return ref, f"fitted at training time on {ref.n_images} training and validation images"
        data = Path(self.predictor.config.data.root)
        try:
            ref = ood.fit_from_split(self.predictor.model, folder, self.predictor.prepare, data)
        except (OSError, KeyError, ValueError) as err:  # missing files, ImageError, too few
            note = f"run {self.run_id}: no OOD reference ({err}); cheap checks only"
            print(note, file=sys.stderr)
            return None, (
                "not available for this run (it was trained before the check existed and its "
                "training images are gone): only the image checks (colour, blank, noise, shape) "
                "guard against uploads that are not chest X-rays"
            )
        return ref, f"rebuilt at start-up from {ref.n_images} training and validation images"


def validation_origin(predictor: Predictor) -> str:
    """Where a run's own threshold comes from, in words."""
    rule = predictor.config.eval
    if rule.threshold_rule == "who":
        return (
            f"chosen on validation images for a sensitivity of at least {rule.min_sensitivity:.0%}"
        )
    return f"chosen on validation images ({rule.threshold_rule} rule)"
