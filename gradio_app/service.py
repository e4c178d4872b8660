"""The public app's engine, free of any UI: which run is served, and what one upload gets.

:class:`ModelSource` asks the run store which run to serve (the newest promotion, else the newest
succeeded baseline) at most every ``refresh_s`` seconds and loads a new :class:`ServedModel`
when that changes, so a promotion takes effect without a restart. :meth:`ServedModel.assess`
answers one upload with the assessment every front end shares (:mod:`pipeline.serving.assess`: a
verdict from the run's threshold, or "Cannot assess" and the reason), under the upload limits
and with predictions going before explanations (:class:`PredictionsFirst`). Nothing here keeps
an upload or writes a file: an upload is decoded once, and what that gave is kept in memory only
while the uploaded file lasts (:mod:`gradio_app.reads`); of a DICOM header only what the image
needs is read (:mod:`pipeline.imaging.dicom`).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from db import Calibration, Run, RunStore
from gradio_app.reads import Read, Reads, preview
from pipeline.data import synth
from pipeline.explain import heatmaps
from pipeline.serving.assess import (
    ASSESSED,
    CANNOT_ASSESS,
    OUT_OF_DISTRIBUTION,
    REFUSED,
    VERDICTS,
    Assessment,
    Assessor,
    Decoding,
)
from pipeline.serving.predictor import Predictor

__all__ = [
    "ASSESSED",
    "CANNOT_ASSESS",
    "OUT_OF_DISTRIBUTION",
    "REFUSED",
    "VERDICTS",
    "Assessment",
    "Limits",
    "ModelSource",
    "PredictionsFirst",
    "ServedModel",
    "no_model",
]
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
    # What one client may store within 10 minutes (None: a quarter of the budget).
    upload_per_client_mb: float | None = None
    # Perturbed images an explanation scores at once: small batches let a prediction that
    # arrives meanwhile go first after at most one batch (:class:`PredictionsFirst`).
    explain_batch: int = 8

    @property
    def decoding(self) -> Decoding:
        return Decoding(self.max_bytes, self.max_pixels, self.for_processing)

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


def no_model(problem: str | None = None) -> Assessment:
    """The answer while there is no model to serve; ``problem`` says why, if known."""
    return Assessment(
        verdict=CANNOT_ASSESS,
        status=REFUSED,
        reason="no model is available yet: "
        + (
            problem
            or "no run has been promoted to the public app yet; promote one on the dashboard's "
            "Publish page or with python -m pipeline promote RUN, then try again"
        ),
    )


class PredictionsFirst:
    """Predictions before explanations on a shared CPU.

    A prediction holds :meth:`prediction` while it runs; an explanation calls :meth:`wait_turn`
    before each batch of perturbed images and waits there while any prediction is running — at
    most ``max_wait_s``, so a steady stream of predictions slows explanations down but never
    stops them. Without this, a LIME explanation (1,000 model evaluations) takes the CPU from
    the predictions beside it (``bench/flood.py``).
    """

    def __init__(self, max_wait_s: float = 1.0) -> None:
        self.max_wait_s = max_wait_s
        self._running = 0
        self._idle = threading.Condition()

    @contextmanager
    def prediction(self) -> Iterator[None]:
        with self._idle:
            self._running += 1
        try:
            yield
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def wait_turn(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0, timeout=self.max_wait_s)


class ServedModel:
    """One succeeded run ready to serve: its :class:`~pipeline.serving.assess.Assessor` (the
    assessment every front end shares), its site calibration if any, and predictions-first
    scheduling."""

    def __init__(self, run: Run, calibration: Calibration | None = None) -> None:
        if run.status != "succeeded" or not run.artifacts_dir:
            raise ValueError(f"run {run.id} is {run.status}; only a succeeded run can be served")
        self.run = run
        # A promotion with a site calibration serves that site's threshold instead of the run's.
        self.calibration = calibration
        self.predictor = Predictor(
            run.artifacts_dir, threshold=None if calibration is None else calibration.threshold
        )
        origin = None
        if calibration is not None:
            origin = (
                f"calibrated for {calibration.site} on "
                f"{calibration.details['n_calibration']} of its X-rays "
                f"({calibration.created_at:%Y-%m-%d})"
            )
        self.assessor = Assessor(self.predictor, run.id, origin)
        self.priority = PredictionsFirst()
        self.reads = Reads()

    @property
    def size(self) -> int:
        return self.predictor.config.data.image_size

    @property
    def reference(self) -> Any:
        """The run's feature-distance reference (None when there is none)."""
        return self.assessor.reference

    @property
    def reference_note(self) -> str:
        return self.assessor.reference_note

    @property
    def synthetic(self) -> bool:
        """Whether the run was trained on synthetic phantoms (a demonstration model)."""
        return any(synth.is_synthetic(f) for f in self.predictor.config.data.sources)

    def threshold_origin(self) -> str:
        """Where the served threshold comes from, in words (a site calibration, or validation)."""
        return self.assessor.threshold_origin

    def read(self, src: Upload, limits: Limits) -> Read:
        """The upload read and screened once: the prediction, the preview and each explanation
        of the same uploaded file share one decode (:class:`~gradio_app.reads.Reads`)."""
        refusal = _refuse_unreadable(src)
        if refusal is not None:
            return Read(self.assessor.refused(refusal), None)
        kept = self.reads.get(src, limits.decoding) if isinstance(src, Path) else None
        if kept is not None:
            return kept
        decoded = self.assessor.read(src, limits.decoding)
        if isinstance(decoded, Assessment):
            read = Read(decoded, None)
        else:
            read = Read(self.assessor.judge(decoded), preview(decoded.pixels))
        if isinstance(src, Path):
            self.reads.put(src, limits.decoding, read)
        return read

    def assess(self, src: Upload, limits: Limits | None = None) -> Assessment:
        """Verdict, P(TB) and Grad-CAM of an encoded image (bytes or a file).

        Never raises for a bad upload: it gets "Cannot assess" and the reason instead.
        """
        start = time.perf_counter()
        with self.priority.prediction():
            a = self.read(src, limits or Limits()).assessment
            if a.status == ASSESSED:
                a = replace(a, heatmap=heatmaps.gradcam(self.predictor.model, a.image))
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
        limits = limits or Limits()
        self.priority.wait_turn()  # screening costs as much as a prediction: let those go first
        a = self.read(src, limits).assessment
        if a.status != ASSESSED:
            return replace(a, seconds=time.perf_counter() - start), None
        result = heatmaps.explain(
            self.predictor.model,
            a.image,
            method,
            progress=progress,
            pause=self.priority.wait_turn,
            batch_size=limits.explain_batch,
        )
        return replace(a, seconds=time.perf_counter() - start), result.overlay(a.image)


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
