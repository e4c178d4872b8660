"""The public Gradio app: upload a chest X-ray, get a verdict, the TB probability and heatmaps.

``build_demo(source)`` only builds the ``gr.Blocks`` (queue included); :func:`serve` launches
it, for ``python -m gradio_app``, the tests and the benchmarks alike. Three API endpoints, each
named: ``/predict`` (verdict, probability and Grad-CAM at once), ``/lime`` and ``/shap``
(slower explanations, on request). Predictions and explanations
run under separate concurrency ids, so a queue of slow explanations never holds up a verdict.

Uploads reach the functions as a file path inside Gradio's upload folder: the app's upload
component is a file box that takes any file (DICOM included, which ``gr.Image`` refuses in the
browser, and DICOM files without an extension, as CD and PACS exports name them) and decodes
nothing itself (:func:`_undecoded`), so every file — broken, huge, 16-bit, DICOM, not an image —
goes through :func:`pipeline.imaging.decode.decode` and its limits, and a bad one gets a message,
never a traceback. A private event shows the image as read (a DICOM file windowed) under the box.

The page's own events (that preview, the model card, the banner, the examples) cannot be hidden
from a determined HTTP client, since the browser calls them like any client would; they are
taken only as the page sends them, counted against a fair-use limit, and harmless
(:mod:`gradio_app.events`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np
from starlette.middleware import Middleware

from gradio_app import reads, render
from gradio_app.card import banner, model_card
from gradio_app.events import Events, Sessions
from gradio_app.flood import FairUse, Ledger
from gradio_app.security import harden
from gradio_app.service import Limits, ModelSource, no_model
from pipeline.imaging import decode, decoded

# Temporary folders are named PREFIX<pid>-..., so a later start can remove those of a process
# that was killed (gradio_app.__main__).
UPLOADS_PREFIX = "tbxray-uploads-"
OUTPUTS_PREFIX = "tbxray-outputs-"
# Gradio finds the progress bar by a gr.Progress default; it gives every call its own.
_PROGRESS = gr.Progress()
# Heatmaps are S×S pixels (64-512) and uploads can be small: draw every image to fill its box.
CSS = (
    "#preview img, #gradcam img, #lime img, #shap img "
    "{width: 100%; height: 100%; object-fit: contain;}"
    # Long image labels wrap rather than being cut off.
    " [data-testid=block-label] {white-space: normal; max-width: 100%; height: auto;}"
    " #gradcam [data-testid=block-label], #lime [data-testid=block-label],"
    " #shap [data-testid=block-label] {max-width: calc(100% - 96px);}"
    # On a phone the columns stack: the verdict must come right after the upload box, so the
    # copy of the upload shown as read (the visitor has the file) is left out there.
    " @media (max-width: 640px) {#preview {display: none;}"
    " #upload-note *, #banner * {font-size: 12px !important; line-height: 1.35 !important;}"
    " #upload-note p, #banner p {margin: 0 !important;}}"
)


def _undecoded(upload: gr.File) -> gr.File:
    """Make ``upload`` hand its function the uploaded file's path, unchecked and undecoded.

    Stock components check or open the upload before the function runs (``gr.Image`` with PIL,
    ``gr.File`` against its file types), so an empty file, a non-image or a decompression bomb
    fails inside Gradio with a bare "Error". Here every file goes to the app's own reader
    instead. (An instance attribute rather than a subclass: Gradio writes a ``.pyi`` stub beside
    the source file of every component class it sees defined.)
    """
    upload.preprocess = lambda payload: None if payload is None else payload.path
    return upload


class OwnFiles:
    """Each request's images written to files of its own, for Gradio to serve.

    Gradio stores a returned array under a name made from its pixels, writing the file in place,
    so two requests with the same upload wrote the same file at once and one of them could
    download it empty. A file returned by path is copied into Gradio's cache under a temporary
    name and renamed into place; named here uniquely, every request's outputs stay its own.
    Files older than ``keep_s`` are removed as new ones are written, and all when the app stops.
    """

    def __init__(self, keep_s: float) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"{OUTPUTS_PREFIX}{os.getpid()}-"))
        self.keep_s = keep_s
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)

    def png(self, image: np.ndarray | None) -> str | None:
        """``image`` (gray or RGB uint8) as a new PNG file; None for None."""
        if image is None:
            return None
        now = time.time()
        for old in self.folder.glob("*.png"):
            with contextlib.suppress(FileNotFoundError):
                if now - old.stat().st_mtime > self.keep_s:
                    old.unlink()
        path = self.folder / f"{uuid.uuid4().hex}.png"
        rgb = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), rgb):
            raise OSError(f"could not write {path}")
        return str(path)


def _as_read(path: str | None, source: ModelSource, limits: Limits) -> np.ndarray | None:
    """The upload as the app reads it (a DICOM file windowed), at most PREVIEW_SIDE pixels; None
    when it cannot be read (the verdict box says why). The prediction before it has read the
    file already: its read is reused, and only without a model is the file decoded here."""
    if path is None:
        return None
    served = source.current()
    if served is not None:
        return served.read(Path(path), limits).preview
    try:
        gray = decode.decode(
            path,
            max_pixels=limits.max_pixels,
            max_bytes=limits.max_bytes,
            for_processing=limits.for_processing,
        ).pixels
    except decoded.ImageError:
        return None
    return reads.preview(gray)


def build_demo(
    source: ModelSource,
    limits: Limits | None = None,
    examples: Sequence[str | Path] = (),
    *,
    predict_concurrency: int = 2,
    explain_concurrency: int = 1,
    queue_size: int = 64,
    keep_uploads_s: int = 600,
) -> gr.Blocks:
    """The app's ``gr.Blocks``, queue configured; launch it with ``**launch_options(limits)``.

    ``source`` says which run to serve (re-checked on every request); ``examples`` are image
    files offered under the upload box. At most ``predict_concurrency`` predictions and
    ``explain_concurrency`` explanations run at once; at most ``queue_size`` requests wait.
    Uploads and the heatmaps drawn from them are deleted ``keep_uploads_s`` seconds after they
    were written (long enough to ask for LIME or SHAP of the same upload), and all of them when
    the app stops.
    """
    limits = limits or Limits()
    outputs = OwnFiles(keep_s=keep_uploads_s)
    ledger = Ledger(
        dict(limits.rates),
        limits.explain_in_flight,
        limits.explain_capacity,
        upload_budget=limits.upload_budget_mb * 2**20,
        max_upload=limits.max_bytes,
        upload_per_client=None
        if limits.upload_per_client_mb is None
        else int(limits.upload_per_client_mb * 2**20),
    )

    def predict(path: str | None) -> tuple[dict | None, str, str, str | None]:
        if path is None:
            return None, "", render.WAITING, None
        served = source.current()
        a = no_model(source.problem) if served is None else served.assess(Path(path), limits)
        return (
            a.as_dict(),
            render.gauge_html(a),
            render.verdict_html(a),
            outputs.png(render.gradcam_overlay(a)),
        )

    def explainer(method: str) -> Any:
        def run(
            path: str | None, request: gr.Request, progress: gr.Progress = _PROGRESS
        ) -> tuple[str | None, str]:
            try:
                return explained(path, progress)
            finally:
                ledger.done(request.client.host if request.client else None)

        def explained(path: str | None, progress: gr.Progress) -> tuple[str | None, str]:
            if path is None:
                return None, "Upload a chest X-ray first."
            served = source.current()
            if served is None:
                return None, render.refusal_note(no_model(source.problem).reason)
            progress(0.0, desc=f"{method.upper()}: scoring perturbed copies of the image")
            a, overlay = served.explain(
                Path(path),
                method,
                limits,
                progress=lambda f: progress(f, desc=f"{method.upper()}: scoring"),
            )
            if overlay is None:
                return None, render.refusal_note(a.reason)
            return outputs.png(overlay), render.explain_note(method, a)

        return run

    def card() -> str:
        served = source.current()
        external = [] if served is None else source.store.external_evals(served.run.id)
        return model_card(served, external, source.problem)

    cleanup = (min(60, keep_uploads_s), keep_uploads_s)

    def top() -> str:
        return banner(source.current())

    def preview_of(path: str | None) -> str | None:
        return outputs.png(_as_read(path, source, limits))

    with gr.Blocks(title=render.TITLE, delete_cache=cleanup) as demo:
        banner_md = gr.Markdown(elem_id="banner")
        gr.Markdown(render.INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                image = _undecoded(
                    gr.File(
                        label="Chest X-ray (PNG, JPEG or DICOM)",
                        file_count="single",
                        type="filepath",
                        height=120,
                        elem_id="upload",
                    )
                )
                gr.Markdown(render.upload_note(limits), elem_id="upload-note")
                preview = _shown_image("Your image, as read", "preview")
                if examples:
                    gr.Examples(
                        examples=[[str(p)] for p in examples],
                        inputs=[image],
                        example_labels=[Path(p).stem for p in examples],
                        label="Or try an example",
                        api_visibility="private",
                    )
            with gr.Column(scale=1):
                verdict = gr.HTML(render.WAITING, label="Verdict", elem_id="verdict")
                probability = gr.HTML(label="P(TB) against the threshold", elem_id="probability")
                heatmap = _shown_image(
                    "Grad-CAM: what pushed towards TB (magenta line: the lungs)", "gradcam"
                )
        with gr.Row():
            lime_button, lime_image, lime_note = _explainer_column(
                "lime", "LIME: image regions, switched off at random"
            )
            shap_button, shap_image, shap_note = _explainer_column(
                "shap", "SHAP: image regions, blurred in turn"
            )
        gr.HTML(render.LEGEND_HTML, elem_id="legend")
        with gr.Accordion("Details (what the API returns)", open=False):
            details = gr.JSON(label="Result")
        card_md = gr.Markdown(elem_id="model-card")

        predicted = image.change(
            predict,
            inputs=image,
            outputs=[details, probability, verdict, heatmap],
            api_name="predict",
            api_description=render.PREDICT_API,
            concurrency_id="predict",
            concurrency_limit=predict_concurrency,
            show_progress="minimal",
        )
        predicted.then(card, outputs=card_md, queue=False, api_visibility="private")
        # After the prediction, which has decoded the upload: the preview reuses that read.
        predicted.then(
            preview_of,
            inputs=image,
            outputs=preview,
            api_name="preview",
            concurrency_id="predict",
            concurrency_limit=predict_concurrency,
            show_progress="hidden",
            api_visibility="private",
        )
        # In the browser: an event without a server function is one less for clients to call.
        image.change(
            None,
            outputs=[lime_image, lime_note, shap_image, shap_note],
            js="() => [null, '', null, '']",
        )
        for button, method, out_image, note in (
            (lime_button, "lime", lime_image, lime_note),
            (shap_button, "shap", shap_image, shap_note),
        ):
            button.click(
                explainer(method),
                inputs=image,
                outputs=[out_image, note],
                api_name=method,
                api_description=f"{method.upper()} heatmap over the prepared image, and a note.",
                concurrency_id="explain",
                concurrency_limit=explain_concurrency,
            )
        demo.load(card, outputs=card_md, queue=False, api_visibility="private")
        demo.load(top, outputs=banner_md, queue=False, api_visibility="private")
    # api_open=False: queued events run through the queue only, never on /gradio_api/run/<name>,
    # which would skip its concurrency limits and the fair-use limits.
    demo.queue(max_size=queue_size, default_concurrency_limit=1, api_open=False)
    demo._queue.pending_messages_per_session = Sessions(demo._queue)
    demo.fair_use = ledger  # read by launch_options
    demo.own_files = outputs  # its folder is deleted on SIGTERM (__main__)
    return demo


def _shown_image(label: str, elem_id: str) -> gr.Image:
    """An output picture: the app hands it a PNG file of the request's own (:class:`OwnFiles`)."""
    return gr.Image(label=label, type="filepath", interactive=False, height=360, elem_id=elem_id)


def _explainer_column(method: str, label: str) -> tuple[gr.Button, gr.Image, gr.Markdown]:
    """A column with the button that asks for one slow explanation, its heatmap and its note."""
    with gr.Column():
        button = gr.Button(f"Explain with {method.upper()} (5–15 s)")
        image = _shown_image(label, method)
        note = gr.Markdown(label=f"{method.upper()} note")
    return button, image, note


def launch_options(limits: Limits | None = None, demo: gr.Blocks | None = None) -> dict[str, Any]:
    """``demo.launch`` settings the app needs wherever it runs (see :func:`serve`).

    Gradio itself refuses uploads over the size limit (the browser says so before sending);
    errors show no tracebacks; the run history, which would keep X-rays in the browser of a
    possibly shared computer, is off, and so is Gradio's monitoring page, which would tell
    anyone the app's request counts and timings. Gradio keeps a copy of every component's
    settings per session (each API call is a session) up to ``state_session_capacity``; the
    app keeps no per-session state, so a small capacity stops that memory growing with traffic
    (about 100 KB per request otherwise, up to the default 10,000 sessions). With ``demo``, its
    fair-use limits apply (:mod:`gradio_app.flood`) and only the event calls
    :mod:`gradio_app.events` allows run.
    """
    limits = limits or Limits()
    middleware = []
    if demo is not None:
        middleware.append(Middleware(FairUse, ledger=demo.fair_use, events=Events(demo)))
    return {
        "app_kwargs": {"middleware": middleware},
        "max_file_size": limits.max_bytes,
        "show_error": False,
        "run_history": False,
        "footer_links": ["api", "gradio", "settings"],
        "mcp_server": False,
        "ssr_mode": False,
        "css": CSS,
        "state_session_capacity": 256,
        "enable_monitoring": False,
    }


def serve(
    demo: gr.Blocks,
    limits: Limits | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    quiet: bool = False,
) -> str:
    """Launch ``demo`` (from :func:`build_demo`) with :func:`launch_options` and the server's
    outermost layer (:mod:`gradio_app.security`: security headers on every response, no CORS
    grant, no server banner, a sentence for any unhandled error); returns its URL.

    ``block``: wait until the server is stopped (Ctrl-C or SIGTERM, see ``__main__``);
    otherwise return at once and stop it later with ``demo.close()``.
    """
    demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        quiet=quiet,
        **launch_options(limits, demo),
    )
    harden(demo.server)
    if block:
        demo.block_thread()
    return demo.local_url
