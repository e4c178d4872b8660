"""What the public page says and shows: its copy (title, introduction, privacy note, the note
under the upload box, the description of the ``/predict`` endpoint) and the renderers of an
assessment (the verdict and the P(TB) gauge as HTML, the Grad-CAM picture, the note under a LIME
or SHAP heatmap). Pure functions of their arguments; :mod:`gradio_app.app` lays them out.
"""

from __future__ import annotations

import html

import numpy as np

from gradio_app.service import ASSESSED, CANNOT_ASSESS, REFUSED, Assessment, Limits
from pipeline import formats
from pipeline.explain.heatmaps import LEGEND
from pipeline.serving.predictor import NEGATIVE, POSITIVE

TITLE = "TB X-ray Lab — chest X-ray TB screening (research tool)"
INTRO = (
    "# TB X-ray Lab\n"
    "Upload a **frontal chest X-ray** (PNG, JPEG or DICOM): you get the probability of "
    "tuberculosis, a verdict at the threshold the model was validated with, and a heatmap of the "
    "regions that drove it. **This is a research tool, not a diagnosis.**"
)
PRIVACY = (
    "Of a DICOM file only the image and its display settings are read: the identifying fields "
    "of its header (name, ID, dates, institution) are not read, shown or kept."
)
PREDICT_API = (
    "Verdict, P(TB) and Grad-CAM of one chest X-ray. Returns (result, P(TB) against "
    "the threshold as HTML, verdict HTML, Grad-CAM overlay); result is a dict with "
    "'verdict' (one "
    f"of {NEGATIVE!r}, {POSITIVE!r}, {CANNOT_ASSESS!r}), 'probability' (None when "
    "it cannot be assessed), 'reason', 'notes' (sentences to read beside the "
    "verdict, e.g. text burned into a DICOM image), 'threshold' and 'run_id'. Takes "
    "PNG, JPEG and DICOM files."
)
_STYLES = {
    NEGATIVE: ("#e7f6ec", "#1b7f3b"),
    POSITIVE: ("#fff1e0", "#b35900"),
    CANNOT_ASSESS: ("#eeeeee", "#444444"),
}
LEGEND_HTML = (
    "<div style='display:flex;align-items:center;gap:10px;flex-wrap:wrap;color:#444'>"
    "<span>Heatmaps, all three:</span>"
    "<span style='display:inline-block;width:160px;height:12px;border-radius:6px;background:"
    "linear-gradient(90deg, rgb(30,80,230), #bbb, rgb(230,30,30))'></span>"
    f"<span>{html.escape(LEGEND)}</span></div>"
)
WAITING = "<div style='padding:12px;color:#666'>Upload a chest X-ray to get a verdict.</div>"


def upload_note(limits: Limits) -> str:
    """The note under the upload box: how to upload, the size limits, what becomes of a file."""
    return (
        f"Drag and drop, or click to pick a file. Up to "
        f"{limits.max_bytes / 2**20:g} MB and {limits.max_pixels / 1e6:g} megapixels. "
        f"Uploads are used for this answer only and deleted within minutes. {PRIVACY}"
    )


def gauge_html(a: Assessment) -> str:
    """P(TB) as a number and a bar with the threshold the verdict used marked on it: one reading,
    the verdict's, never a competing "Normal 76 %" headline. Empty when there is no P(TB)."""
    if a.probability is None or a.status != ASSESSED or a.threshold is None:
        return ""
    p, t = a.probability, a.threshold
    shown_p, shown_t = formats.probability_and_threshold(p, t)
    side = "at or above" if p >= t else "below"
    colour = _STYLES[a.verdict][1]
    return (
        "<div style='padding:8px 0'>"
        f"<div style='font-size:1.15em'><b>P(TB) = {shown_p}</b> — {side} the threshold "
        f"{shown_t} this verdict uses</div>"
        "<div style='position:relative;height:14px;margin:8px 0 4px;background:#e5e5e5;"
        "border-radius:7px' role='img' "
        f"aria-label='P(TB) {shown_p}, threshold {shown_t}'>"
        f"<div style='width:{p:.1%};height:100%;background:{colour};border-radius:7px'></div>"
        f"<div style='position:absolute;left:{t:.1%};top:-4px;width:2px;height:22px;"
        "background:#222'></div></div>"
        "<div style='display:flex;justify-content:space-between;color:#666;font-size:0.85em'>"
        f"<span>0</span><span>threshold {shown_t}</span><span>1</span></div></div>"
    )


def verdict_html(a: Assessment) -> str:
    """The verdict in its colours, why it was given, and the notes to read beside it."""
    background, colour = _STYLES[a.verdict]
    why = "Upload refused" if a.status == REFUSED else "Why"
    return (
        f"<div style='padding:14px;border-radius:8px;background:{background};'>"
        f"<div style='font-size:1.6em;font-weight:600;color:{colour}'>"
        f"{html.escape(a.verdict)}</div>"
        f"<div style='margin-top:6px;color:#333'>{why}: {html.escape(a.reason)}</div>"
        + "".join(
            f"<div style='margin-top:6px;color:#8a4b00'>Note: {html.escape(n)}.</div>"
            for n in a.notes
        )
        + "</div>"
    )


def gradcam_overlay(a: Assessment) -> np.ndarray | None:
    """The Grad-CAM heatmap over the prepared image, the lungs outlined; None without one."""
    if a.heatmap is None or a.image is None:
        return None
    from pipeline.explain.heatmaps import overlay
    from pipeline.lungs.masks import draw_outline

    drawn = overlay(a.image, a.heatmap)
    return drawn if a.lungs is None else draw_outline(drawn, a.lungs)


def explain_note(method: str, a: Assessment) -> str:
    """The note under a LIME or SHAP heatmap (Markdown): the image size, the verdict and why
    (P(TB) against the threshold, as the verdict reads them)."""
    return (
        f"{method.upper()} on the image as the model sees it ({a.image.shape[0]} px): "
        f"{a.verdict}. {formats.plain(a.reason)}."
    )


def refusal_note(reason: str) -> str:
    """The note where a LIME or SHAP heatmap would be, when there is none (Markdown)."""
    return f"{CANNOT_ASSESS}: {formats.plain(reason)}"
