"""Explain: one image through a succeeded run — P(TB) and the verdict at the run's threshold,
Grad-CAM at once, LIME and SHAP on request, side by side with the image the model saw, each with
the lung outline and the share of its energy inside the lungs.

The only page (with the Run page's heatmaps) that loads a model, and so TensorFlow; the
model is cached per run."""

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard import ui
from pipeline.formats import probability_and_threshold
from pipeline.imaging import decode

st.title("Explain")
store = ui.store()
done = store.list_runs(status="succeeded")
if not done:
    ui.no_runs_yet("succeeded runs")
    st.stop()

run = ui.pick_run(done, key="ex.run")
source = st.segmented_control(
    "Image", ["test set", "upload"], default="test set", key="ex.source", required=True
)
truth = None
if source == "upload":
    upload = st.file_uploader(
        "A chest X-ray (PNG, JPEG, DICOM, BMP or TIFF)",
        type=["png", "jpg", "jpeg", "dcm", "dicom", "bmp", "tif", "tiff"],
        key="ex.upload",
        help="Of a DICOM file only the image and its display settings are read, never the "
        "patient's name, ID or dates.",
    )
    if upload is None:
        st.info("Upload an image to explain it.")
        st.stop()
    data, name = upload.getvalue(), upload.name
else:
    preds = ui.predictions(run)
    test = preds[preds["split"] == "test"]
    if test.empty:
        st.warning("This run has no test predictions; upload an image instead.")
        st.stop()
    which = st.segmented_control(
        "Show",
        ["all", "TB", "normal", "misclassified"],
        default="all",
        key="ex.filter",
        required=True,
    )
    called = (test["score"] >= run.threshold).astype(int)
    subset = {
        "all": test,
        "TB": test[test["label"] == 1],
        "normal": test[test["label"] == 0],
        "misclassified": test[called != test["label"]],
    }[which or "all"]
    if subset.empty:
        st.info(f"No {which} image in this run's test set.")
        st.stop()
    row = st.selectbox(
        "Test image",
        list(subset.index),
        format_func=lambda i: (
            f"{test.at[i, 'path']} · {'TB' if test.at[i, 'label'] else 'normal'}"
            f" · P(TB) {probability_and_threshold(test.at[i, 'score'], run.threshold)[0]}"
        ),
        key="ex.image",
    )
    path = Path(test.at[row, "file"])
    truth = "TB" if test.at[row, "label"] == 1 else "normal"
    name = str(test.at[row, "path"])
    try:
        data = path.read_bytes()
    except OSError as err:
        st.error(f"Cannot read {path}: {err.strerror}. Was the dataset moved?")
        st.stop()

from pipeline.explain import heatmaps  # noqa: E402 - TensorFlow, only once there is an image to explain
from pipeline.explain.faithfulness import energy_inside  # noqa: E402
from pipeline.lungs.masks import draw_outline  # noqa: E402
from pipeline.serving.assess import ASSESSED, REFUSED  # noqa: E402

try:
    predictor = ui.predictor(run)
    assessor = ui.assessor(run)
except (OSError, ValueError) as err:
    st.error(f"Cannot load run {run.id}'s model: {err}")
    st.stop()
image_key = hashlib.sha1(data).hexdigest()[:16]
# The public app's assessment and `predict`'s: the same verdict, or "Cannot assess" and why.
# Kept for the image on screen, so moving a slider does not decode and segment it again.
seen = st.session_state.get("ex.assessed")
if seen is None or seen[0] != (run.id, image_key):
    seen = ((run.id, image_key), assessor.screen(data))
    st.session_state["ex.assessed"] = seen
assessed = seen[1]
for note in assessed.notes:
    st.warning(f"{note}.", icon=":material/warning:")
if assessed.status == REFUSED:
    st.error(f"{name}: {assessed.reason}", icon=":material/error:")
    st.stop()
if assessed.status == ASSESSED:
    prepared, lungs = assessed.image, assessed.lungs
    probability, verdict = assessed.probability, assessed.verdict
else:
    st.error(f"**Cannot assess** — {assessed.reason}", icon=":material/block:")
    if not st.toggle(
        "Look at the model's output anyway (for research: it is not a verdict)",
        key="ex.anyway",
        help="The public app and `predict` give this image no verdict either.",
    ):
        st.stop()
    prediction = predictor.predict(decode.decode(data).pixels, with_lungs=True)
    prepared, lungs = prediction.image, prediction.lungs
    probability, verdict = prediction.probability, "Cannot assess"


def shown(result: heatmaps.Explanation) -> np.ndarray:
    """The overlay with the lung outline drawn on it, when the lungs were found."""
    drawn = result.overlay(prepared, alpha)
    return drawn if lungs is None else draw_outline(drawn, lungs)


def in_lungs(result: heatmaps.Explanation) -> str:
    """Caption part: the share of the heatmap's energy inside the lungs (no lesion labels)."""
    return "" if lungs is None else f", {energy_inside(result.heatmap, lungs):.0%} in the lungs"


shown_p, shown_t = probability_and_threshold(probability, predictor.threshold)
row = ui.metric_row()
row.metric(
    "P(TB)",
    shown_p,
    help="the network's raw output, not a calibrated probability"
    if predictor.calibrator is None
    else f"calibrated ({predictor.calibrator.kind} scaling fitted on the validation split)",
    width="content",
)
called = "TB" if probability >= predictor.threshold else "normal"
row.metric("verdict", called if assessed.status == ASSESSED else "none", width="content")
row.metric(
    "threshold",
    shown_t,
    help="chosen on the run's validation split",
    width="content",
)
row.metric("true label", truth or "unknown", width="content")
st.caption(f"{verdict} · run {run.name} ({run.id[:6]}) · {name}")

alpha = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key="ex.alpha")
st.caption(f"Every heatmap, one colour scale — {heatmaps.LEGEND}.")
results = st.session_state.setdefault("ex.results", {})
cols = st.columns(4)
side = prepared.shape[0]
cols[0].image(
    prepared if lungs is None else draw_outline(np.stack([prepared] * 3, axis=-1), lungs),
    caption=f"what the model sees ({side}×{side}, preprocessed"
    + (
        f", ROI {predictor.config.data.roi}; magenta: the lungs found)"
        if lungs is not None
        else ")"
    ),
    width="stretch",
)
try:
    cam = heatmaps.explain(predictor.model, prepared, "gradcam")
except heatmaps.ExplainError as err:
    cols[1].error(str(err))
else:
    cols[1].image(
        shown(cam),
        caption=f"Grad-CAM ({cam.seconds * 1000:.0f} ms{in_lungs(cam)})",
        width="stretch",
    )

DESCRIPTIONS = {
    "lime": ("LIME", "superpixels switched off at random; a local linear model of P(TB)"),
    "shap": ("SHAP", "Partition SHAP over image regions"),
}
for col, (method, (title, what)) in zip(cols[2:], DESCRIPTIONS.items(), strict=True):
    key = (run.id, image_key, method)
    with col:
        if key in results:
            result = results[key]
            st.image(
                shown(result),
                caption=f"{title} ({result.seconds:.1f} s{in_lungs(result)})",
                width="stretch",
            )
        elif st.button(f"Run {title}", key=f"ex.{method}", help=what, icon=":material/play_arrow:"):
            bar = st.progress(0.0, text=f"{title}…")
            try:
                results[key] = heatmaps.explain(
                    predictor.model,
                    prepared,
                    method,
                    progress=lambda f, t=title, b=bar: b.progress(f, text=f"{t}… {f:.0%}"),
                )
            except heatmaps.ExplainError as err:
                st.error(str(err))
            else:
                st.rerun()
        else:
            st.caption(f"{title}: {what}. Takes a few seconds.")
