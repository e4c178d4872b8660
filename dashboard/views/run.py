"""Run: one run in full — tags and note, archive or delete, its suite's progress, config, live
learning curves, test metrics, curves, threshold, external evaluations, calibration
(probabilities, site thresholds), misclassified images with Grad-CAM, files to download, log and
failure traceback."""

from datetime import UTC, datetime

import numpy as np
import streamlit as st

from dashboard import calibrate, charts, externals, manage, pretraining, ui
from db import Run, StoreError
from pipeline import formats
from pipeline.evaluation import metrics
from pipeline.imaging import decode, decoded

store = ui.store()
runs = store.list_runs(kind=None)
if not runs:
    st.title("Run")
    ui.no_runs_yet()
    st.stop()

run = ui.pick_run(runs, key="run.pick")
st.title(run.name)
suite = store.get_suite(run.suite_id).name if run.suite_id else "—"
st.caption(
    f"`{run.id}` · **{run.status}** · suite {suite} · created "
    f"{run.created_at:%Y-%m-%d %H:%M} UTC · worker {run.worker or '—'} · "
    f"duration {formats.duration(run.duration_s)}"
)
if run.kind == "pretrain":
    pretraining.page(store, run)
    st.stop()

actions = st.container(horizontal=True)
if actions.button("Re-launch with changes", icon=":material/edit:", key="run.relaunch"):
    st.switch_page(ui.LAUNCH, query_params={"from": run.id})
if run.status == "succeeded" and actions.button(
    "Explain images", icon=":material/visibility:", key="run.explain"
):
    st.switch_page(ui.EXPLAIN, query_params={"run": run.id})
if run.status in ui.ACTIVE and actions.button("Cancel", icon=":material/cancel:", key="run.cancel"):
    try:
        store.cancel_run(run.id)
    except StoreError as err:
        st.error(str(err))
    st.rerun()
manage.archive_and_delete(store, run, actions)
manage.labels(store, run)
if run.suite_id:
    with st.expander(f"Suite {suite}: progress"):
        manage.suite_panel(store, run.suite_id)


def curves(run_id: str) -> None:
    epochs = store.epochs(run_id)
    if epochs:
        st.plotly_chart(charts.learning_curves(epochs), key=f"run.curves.{run_id}")
    else:
        st.caption("No epoch finished yet.")


def log(r: Run) -> None:
    tail = ui.log_tail(r)
    with st.expander("Log (last 60 lines)", expanded=r.status == "failed"):
        if tail is None:
            st.caption("No log written yet.")
        else:
            st.code(tail, language="text")


if run.status == "running":

    @st.fragment(run_every=ui.LIVE_EVERY_S)
    def live() -> None:
        current = store.get_run(run.id)
        if current.status != "running":
            st.rerun()
        total = current.config.get("train", {}).get("epochs") or 1
        epoch = current.current_epoch or 0
        beat = current.heartbeat_at or current.started_at
        ago = (datetime.now(UTC) - beat).total_seconds() if beat else 0.0
        st.progress(
            min(epoch / total, 1.0),
            text=f"epoch {epoch} of at most {total} · last heartbeat {ago:.0f} s ago",
        )
        curves(current.id)
        log(current)

    st.subheader("Training")
    live()
elif run.status == "queued":
    queued = store.list_runs(status="queued")
    ahead = sum(r.created_at < run.created_at for r in queued)
    st.info(f"Queued: {ahead} run{'s' if ahead != 1 else ''} ahead of it in the queue.")
    ui.worker_panel(store, key="run.start_worker")
elif run.status == "failed":
    st.error("This run failed. The traceback is below; its log may say more.")
    st.code(run.error or "no traceback recorded", language="python")
    curves(run.id)
    log(run)
elif run.status == "cancelled":
    st.warning("This run was cancelled; the epochs it trained are kept.")
    curves(run.id)
    log(run)

if run.status == "succeeded":
    m = run.metrics
    row = ui.metric_row()
    row.metric(
        "AUC (test)",
        formats.number(run.auc),
        help=f"95% CI {formats.with_interval(run.auc, (run.auc_lo, run.auc_hi))}",
        width="content",
    )
    row.metric(
        "sensitivity",
        formats.number(run.sensitivity),
        help="95% CI "
        + formats.with_interval(run.sensitivity, (run.sensitivity_lo, run.sensitivity_hi)),
        width="content",
    )
    row.metric(
        "specificity",
        formats.number(run.specificity),
        help="95% CI "
        + formats.with_interval(run.specificity, (run.specificity_lo, run.specificity_hi)),
        width="content",
    )
    row.metric("F1", formats.number(run.f1), width="content")
    row.metric("accuracy", formats.number(run.accuracy), width="content")
    row.metric(
        "threshold",
        formats.number(run.threshold, 4),
        help=f"chosen on validation by the {m.get('threshold_rule', '?')!r} rule",
        width="content",
    )
    row.metric("WHO target", "met" if run.who_met else "not met", width="content")
    st.caption(
        f"AUC 95% CI {formats.with_interval(run.auc, (run.auc_lo, run.auc_hi))} · "
        f"test n={m.get('n')} "
        f"({m.get('n_pos')} TB, {m.get('n_neg')} normal) · {m.get('epochs_trained')} epochs · "
        "WHO target for TB screening: sensitivity ≥ 0.90 and specificity ≥ 0.70"
    )

    st.subheader("Learning curves")
    curves(run.id)

    st.subheader("Test results")
    c_conf, c_roc, c_pr = st.columns(3)
    with c_conf:
        st.markdown("**Confusion matrix** at the chosen threshold")
        if "confusion" in m:
            st.plotly_chart(charts.confusion_matrix(m["confusion"]), key="run.confusion")
    with c_roc:
        st.markdown("**ROC**, operating point and WHO target")
        point = (1 - run.specificity, run.sensitivity) if run.specificity is not None else None
        st.plotly_chart(
            charts.roc([("test", m.get("roc", {}))], [point] if point else []), key="run.roc"
        )
    with c_pr:
        st.markdown("**Precision-recall**")
        st.plotly_chart(charts.precision_recall([("test", m.get("pr", {}))]), key="run.pr")

    st.subheader("Threshold")
    labels, scores = ui.test_scores(run)

    # A fragment: moving the slider reruns this block only, not the misclassified-image grid.
    @st.fragment
    def threshold_explorer() -> None:
        threshold = st.slider(
            "Threshold (P(TB) ≥ threshold → TB)",
            0.0,
            1.0,
            float(run.threshold),
            step=0.005,
            format="%.3f",
            key="run.threshold",
        )
        at = metrics.metrics(labels, scores, threshold)
        chosen = metrics.metrics(labels, scores, float(run.threshold))
        row = ui.metric_row()
        for key, label in (
            ("sensitivity", "sensitivity"),
            ("specificity", "specificity"),
            ("precision", "PPV"),
            ("npv", "NPV"),
        ):
            delta = at[key] - chosen[key]
            row.metric(
                label,
                formats.number(at[key]),
                delta=None if abs(delta) < 1e-12 or np.isnan(delta) else f"{delta:+.3f}",
                help=f"at the chosen threshold: {formats.number(chosen[key])}",
                width="content",
            )
        row.metric(
            "WHO target at this threshold",
            "met" if at["who_met"] else "not met",
            width="content",
        )
        st.caption(
            "Moving the threshold on the test set itself is for exploration only: a threshold "
            "picked here would make these test figures optimistic. The run's threshold was "
            "chosen on validation."
        )
        c_sweep, c_hist = st.columns(2)
        c_sweep.markdown("**Sensitivity and specificity by threshold** (test)")
        c_hist.markdown("**P(TB) by true class** (test)")
        c_sweep.plotly_chart(
            charts.threshold_sweep(m.get("roc", {}), float(run.threshold), threshold),
            key="run.sweep",
        )
        c_hist.plotly_chart(charts.score_histogram(labels, scores, threshold), key="run.hist")

    if len(labels):
        threshold_explorer()
    else:
        st.caption("This run has no predictions.csv; the threshold cannot be explored.")

    st.subheader("External evaluations")
    externals.section(store, run)

    st.subheader("On hospitals it did not train on")
    externals.loso_section(run)

    st.subheader("Calibrate")
    calibrate.section(store, run)

    st.subheader("Misclassified test images")
    preds = ui.predictions(run)
    test = preds[preds["split"] == "test"]
    wrong = test[(test["score"] >= run.threshold).astype(int) != test["label"]]
    # Missed TB first: in screening a false negative costs more than a false alarm.
    wrong = wrong.assign(missed=wrong["label"] == 1).sort_values(
        ["missed", "score"], ascending=[False, True]
    )
    if wrong.empty:
        st.success("No test image is misclassified at the chosen threshold.")
    else:
        c_info, c_cam = st.columns([3, 1])
        c_info.caption(
            f"{int(wrong['missed'].sum())} missed TB (false negatives) and "
            f"{int((~wrong['missed']).sum())} false alarms; showing up to 12."
        )
        predictor = None
        if c_cam.toggle("Grad-CAM heatmaps", key="run.gradcam", help="loads the model"):
            try:
                predictor = ui.predictor(run)
            except (OSError, ValueError) as err:
                st.error(f"Cannot load the run's model: {err}")
        shown = wrong.head(12)
        grid = st.columns(6)
        for i, row in enumerate(shown.itertuples()):
            caption = (
                f"{'TB, called normal' if row.label == 1 else 'normal, called TB'} · "
                f"P(TB) {formats.probability_and_threshold(row.score, run.threshold)[0]}"
            )
            try:
                img = decode.read_image(row.file)
            except decoded.ImageError as err:
                grid[i % 6].caption(f"{row.path}: {err.reason}")
                continue
            if predictor is not None:
                from pipeline.explain import heatmaps

                prepared = predictor.prepare(img)
                img = heatmaps.overlay(prepared, heatmaps.gradcam(predictor.model, prepared))
            grid[i % 6].image(img, caption=caption, width="stretch")

st.subheader("Files")
manage.downloads(run)
with st.expander("Config"):
    st.json(run.config, expanded=2)
if run.status == "succeeded":
    log(run)
