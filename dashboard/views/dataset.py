"""Dataset: what is in a dataset folder before anything trains on it — counts, imbalance,
sizes and modes, bad files, near-duplicates, sample images with their lung outlines, lung-area
statistics per class, mean images, intensity histograms under each enhancement, and bright boxes
at the border that a model could learn instead of TB."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, imaging, ui
from pipeline.data import layouts, scan
from pipeline.lungs import segmenter
from pipeline.lungs.masks import draw_outline

MAGENTA, ORANGE = (255, 0, 255), (255, 140, 0)  # a lung outline drawn with / without confidence

st.title("Dataset")
store = ui.store()
known = ui.known_datasets(store)

FOUND, OTHER = "a dataset found", "another folder"
if not known:
    # Nothing to pick from: the typed path is the only way in (set before the radio is drawn).
    st.session_state["ds.source"] = OTHER
c_source, c_folder = st.columns([1, 3], vertical_alignment="bottom")
source = c_source.radio("Folder", [FOUND, OTHER], key="ds.source", horizontal=True)
if source == FOUND:
    path = c_folder.selectbox("Dataset folder", known, key="ds.pick", format_func=ui.folder_label)
else:
    path = c_folder.text_input(
        "Folder path",
        key="ds.path",
        placeholder="../shared/data/tb-cxr",
        help="A folder with Normal/ and Tuberculosis/ (or two class folders like healthy/ and "
        "tb/, or NLM-style *_0.png / *_1.png names).",
    ).strip()
st.caption(ui.data_roots_note())
if not path:
    st.info(
        "No dataset folder yet. Make the phantom dataset with "
        "`python -m pipeline synth --out data/phantoms --n 600`, or type a folder path."
    )
    st.stop()


@st.cache_data(show_spinner=False, max_entries=8)
def sample(folder: str, fingerprint: str, seed: int) -> imaging.Sample:
    return imaging.sample(ui.scan(folder), seed=seed)


@st.cache_data(show_spinner=False, max_entries=8)
def histograms(folder: str, fingerprint: str, seed: int) -> dict:
    return imaging.intensity_histograms(sample(folder, fingerprint, seed))


problem = ui.dataset_problem(path)
if problem:
    st.error(problem, icon=":material/error:")
    st.stop()
path = str(Path(path).expanduser().resolve())
index = ui.scan(path)
summary = scan.summarise(index)
counts = summary["counts"]

st.caption(f"`{index.root}` · layout {index.layout} · fingerprint `{index.fingerprint[:16]}…`")
row = ui.metric_row()
row.metric("images", summary["n_images"], width="content")
row.metric("normal", counts["normal"], width="content")
row.metric("TB", counts["tb"], width="content")
ratio = summary["imbalance_ratio"]
row.metric(
    "imbalance",
    f"{ratio:.2f} : 1" if ratio else "—",
    help="majority / minority",
    width="content",
)
row.metric("bad files", summary["n_bad_files"], width="content")
row.metric(
    "near-duplicate groups",
    summary["n_duplicate_groups"],
    help=f"{summary['n_images_in_duplicate_groups']} images; each group stays on one side of "
    "every train/validation/test split",
    width="content",
)
if summary["mixed_label_groups"]:
    st.error(
        f"{len(summary['mixed_label_groups'])} near-duplicate groups hold the same radiograph "
        "labelled both normal and TB: fix these labels before training."
    )

c_counts, c_sizes, c_modes = st.columns([2, 2, 1])
with c_counts:
    st.markdown("**Images per class**")
    st.plotly_chart(charts.class_counts(counts), key="ds.counts")
with c_sizes:
    st.markdown(f"**Image sizes** ({summary['n_sizes']} distinct)")
    st.dataframe(
        pd.DataFrame(summary["sizes"], columns=["width", "height", "images"]),
        hide_index=True,
        key="ds.sizes",
    )
with c_modes:
    st.markdown("**Modes**")
    st.dataframe(
        pd.DataFrame(list(summary["modes"].items()), columns=["mode", "images"]),
        hide_index=True,
        key="ds.modes",
    )

st.subheader("Bad files")
if index.bad_files:
    st.dataframe(
        pd.DataFrame(
            [
                {"file": os.path.relpath(b.path, index.root), "reason": b.reason}
                for b in index.bad_files
            ]
        ),
        hide_index=True,
        key="ds.bad",
    )
else:
    st.caption("None: every file in the class folders decodes as an image.")

seed = st.number_input("Sample seed", min_value=0, value=0, step=1, key="ds.seed")
with st.spinner("Reading a sample of images…"):
    s = sample(path, index.fingerprint, seed)


@st.cache_data(show_spinner=False, max_entries=8)
def lungs(folder: str, fingerprint: str, seed: int, weights: str) -> tuple[dict, pd.DataFrame]:
    return imaging.lung_fields(sample(folder, fingerprint, seed))


lung_masks, lung_table = None, None
# Opt-in: the segmenter is a Keras model, and a page that shows no model loads no TensorFlow.
if st.toggle(
    "Find the lungs in the sample",
    key="ds.lungs_on",
    help="outlines on the thumbnails and lung-area statistics per class (loads the shipped "
    "segmenter: a few seconds the first time)",
):
    try:
        with st.spinner("Finding the lungs in the sample…"):
            weights = segmenter.shipped().sha256
            lung_masks, lung_table = lungs(path, index.fingerprint, seed, weights)
    except segmenter.SegmenterError as err:
        st.warning(f"No lung outlines: {err}", icon=":material/warning:")

st.subheader("Samples")
if lung_masks is not None:
    st.caption(
        "Magenta: the lung fields found by the shipped segmenter (pipeline/lungs); orange: an "
        "outline drawn with low confidence (the segmenter was unsure over much of it)."
    )
for cls in ("normal", "tb"):
    thumbs = s.thumbs[cls][:8]
    captions = [os.path.basename(r.path) for r in s.records[cls][:8]]
    if lung_masks is not None:
        sure = lung_table[lung_table["class"] == cls]["confident"].tolist()
        thumbs = [
            draw_outline(np.stack([t] * 3, axis=-1), m, MAGENTA if ok else ORANGE)
            for t, m, ok in zip(thumbs, lung_masks[cls], sure, strict=False)
        ]
        captions = [
            c if ok else f"{c} · low-confidence lungs"
            for c, ok in zip(captions, sure, strict=False)
        ]
    st.markdown(f"**{'Normal' if cls == 'normal' else 'TB'}** ({counts[cls]} images)")
    st.image(list(thumbs), caption=captions, width=112)

if lung_table is not None and len(lung_table):
    st.subheader("Lung fields")
    c_area, c_bad = st.columns(2)
    fig = go.Figure(
        [
            go.Box(y=part["lung share"], name=cls, boxpoints="all")
            for cls, part in lung_table.groupby("class")
        ]
    )
    fig.update_layout(
        height=320, margin={"l": 0, "r": 0, "t": 30, "b": 0}, title="lung share of the image"
    )
    fig.update_yaxes(tickformat=".0%")
    c_area.plotly_chart(fig, key="ds.lungs")
    per_class = lung_table.groupby("class").agg(
        images=("file", "size"),
        mean_share=("lung share", "mean"),
        implausible=("plausible", lambda v: int((~v).sum())),
        low_confidence=("confident", lambda v: int((~v).sum())),
    )
    c_bad.dataframe(per_class, key="ds.lungstats")
    bad = lung_table[~lung_table["plausible"]]
    if len(bad):
        c_bad.markdown(f"**{len(bad)} implausible lung masks** (check these images)")
        c_bad.dataframe(bad[["class", "file", "why not"]], hide_index=True, key="ds.lungbad")
    else:
        c_bad.caption("Every sampled image shows two plausible lungs.")

st.subheader("Mean image per class")
means = imaging.mean_images(s)
c_normal, c_tb, c_diff = st.columns(3)
c_normal.image(means["normal"].astype(np.uint8), caption="mean normal", width="stretch")
c_tb.image(means["tb"].astype(np.uint8), caption="mean TB", width="stretch")
diff = means["tb"] - means["normal"]
limit = float(np.abs(diff).max()) or 1.0
fig = go.Figure(
    go.Heatmap(z=diff, colorscale="RdBu_r", zmin=-limit, zmax=limit, colorbar={"title": "Δ"})
)
fig.update_yaxes(autorange="reversed", scaleanchor="x", visible=False)
fig.update_xaxes(visible=False)
fig.update_layout(height=340, margin={"l": 0, "r": 0, "t": 30, "b": 0}, title="TB − normal")
c_diff.plotly_chart(fig, key="ds.diff")
st.caption(
    "Where the classes differ on average. Bright spots at the edges rather than in the lungs "
    "point to labels, boxes or markers a model could learn instead of the disease."
)

st.subheader("Intensity histograms before and after each enhancement")
st.plotly_chart(
    charts.intensity_histograms(histograms(path, index.fingerprint, seed)), key="ds.hist"
)

st.subheader("Artefact check: bright boxes at the border")
shares, flagged = imaging.border_artefacts(s)
c_chart, c_examples = st.columns([1, 1])
c_chart.plotly_chart(charts.border_artefacts(shares), key="ds.artefacts")
with c_examples:
    for cls in ("normal", "tb"):
        picks = flagged[cls][:6]
        label = "Normal" if cls == "normal" else "TB"
        if picks:
            st.markdown(f"**{label}**: examples with a bright border box")
            st.image([s.thumbs[cls][i] for i in picks], width=90)
        else:
            st.caption(f"{label}: no bright border box in the sample.")
st.caption(
    f"On a sample of {len(s.thumbs['normal'])} normal and {len(s.thumbs['tb'])} TB images: a "
    "solid near-white rectangle in the outer fifth of the image "
    "(pipeline.preprocessing.artefacts). A box far "
    "commoner in one class (anonymisation patches on TB images, say) is a shortcut a model can "
    "learn; check its heatmaps on the Explain page, or crop or mask it."
)

st.subheader("Burned-in marks, and what removing them does")
audit, shown = imaging.artefact_audit(s)
c_share, c_pairs = st.columns([1, 2])
share = audit.pivot(index="kind", columns="class", values="share").rename(
    index={"boxes": "solid boxes", "marks": "text and markers"}
)
c_share.dataframe(share.style.format("{:.0%}"), key="ds.marks")
with c_pairs:
    for cls, before, marked, after in shown:
        st.image(
            [before, marked, after],
            caption=[f"{cls}: as stored", "marks found", "inpainted (data.artefacts=inpaint)"],
            width=150,
        )
st.caption(
    "Share of the sampled images of each class with burned-in marks "
    "(pipeline.preprocessing.artefacts): "
    "solid near-white boxes anywhere, and small bright text or markers near the edges. A mark "
    "far commoner in one class is a shortcut; train with data.artefacts=inpaint (shown) or "
    "crop_border, and compare the runs' external AUC."
)

st.subheader("Near-duplicate groups")
groups = imaging.duplicate_groups(index, limit=6)
if not groups:
    st.caption("No near-duplicates found.")
for group in groups:
    names = [layouts.CLASS_NAMES[r.label] for r in group]
    st.markdown(f"{len(group)} images · labels: {', '.join(sorted(set(names)))}")
    st.image(
        [imaging.thumbnail(r.path) for r in group[:8]],
        caption=[os.path.basename(r.path) for r in group[:8]],
        width=110,
    )
