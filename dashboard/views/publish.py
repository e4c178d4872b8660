"""Publish: choose the run the public Gradio app serves, and the threshold it serves it at (the
run's validated one, or one of its site calibrations). The choice is a promotion in the run
store; the app re-reads it every few seconds, so it needs no restart."""

import pandas as pd
import streamlit as st

from dashboard import ui
from db import Calibration, ExternalSummary, Promotion, Run, StoreError
from pipeline import formats
from pipeline.config import make_config
from pipeline.data import synth

VALIDATED = "validated"

st.title("Publish")
store = ui.store()

flash = st.session_state.pop("pub.flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")


def card(run: Run) -> None:
    row = ui.metric_row()
    row.metric(
        "AUC (test)",
        formats.number(run.auc),
        help=formats.with_interval(run.auc, (run.auc_lo, run.auc_hi)),
        width="content",
    )
    row.metric("sensitivity", formats.number(run.sensitivity), width="content")
    row.metric("specificity", formats.number(run.specificity), width="content")
    row.metric(
        "threshold", formats.number(run.threshold, 4), help="chosen on validation", width="content"
    )
    row.metric("WHO target", "met" if run.who_met else "not met", width="content")
    ext = store.external_evals(run.id)
    size = run.config.get("data", {}).get("image_size")
    summary = ExternalSummary.of(run.id, ext)
    st.caption(
        f"`{run.id}` · {size} px · {run.config.get('data', {}).get('enhancement')} · "
        f"AUC 95% CI {formats.with_interval(run.auc, (run.auc_lo, run.auc_hi))}"
        + (
            f" · external AUC mean {formats.number(summary.auc_mean)}, "
            f"worst {formats.number(summary.auc_worst)}"
            f", worst external sensitivity {formats.number(summary.sensitivity_worst)} "
            f"({len(summary.datasets)} sets)"
            if ext
            else " · no external evaluation"
        )
    )


st.subheader("Served now")
served = store.served_run()
promotions = store.promotions()
if served is None:
    st.info("The public app has no model to serve yet: promote a succeeded run below.")
else:
    # A run is served only through a promotion (db.serving.served_run).
    promoted = next(p for p in promotions if p.run_id == served.id)
    by = promoted.promoted_by or "—"
    why = f": {promoted.note}" if promoted.note else ""
    how = f"promoted {promoted.promoted_at:%Y-%m-%d %H:%M} UTC by {by}{why}"
    st.markdown(f"**{served.name}** · {how}")
    card(served)
    served_cal = store.served_calibration()
    if served_cal is None:
        st.caption(
            f"The public gets the run's validated threshold, {formats.number(served.threshold, 4)}."
        )
    else:
        c = served_cal
        st.caption(
            f"The public gets the threshold calibrated for **{c.site}**, "
            f"{formats.number(c.threshold, 4)} (check part: sensitivity "
            f"{formats.with_interval(c.sensitivity, (c.sensitivity_lo, c.sensitivity_hi))}, "
            "specificity "
            f"{formats.with_interval(c.specificity, (c.specificity_lo, c.specificity_hi))})."
        )

st.subheader("Promote a run")
done = sorted(
    store.list_runs(status="succeeded"), key=lambda r: -1 if r.auc is None else r.auc, reverse=True
)
if not done:
    ui.no_runs_yet("succeeded runs")
    st.stop()
candidate = ui.pick_run(done, key="pub.run", label="Run (best test AUC first)")
card(candidate)
if candidate.who_met is False:
    st.warning(
        "This run does not meet the WHO target (sensitivity ≥ 0.90, specificity ≥ 0.70) on its "
        "test set."
    )
# Options are calibration ids, and VALIDATED for the run's own threshold: a None option would
# read as "nothing chosen" once Streamlit stores it, and show "Choose an option" after a rerun.
calibrations = {c.id: c for c in store.calibrations(candidate.id)}
chosen = st.selectbox(
    "Threshold the public gets",
    [VALIDATED, *calibrations],
    format_func=lambda c: (
        f"validated on the run's own data: {formats.number(candidate.threshold, 4)}"
        if c == VALIDATED
        else f"calibrated for {calibrations[c].site} ({calibrations[c].created_at:%Y-%m-%d}, "
        f"{calibrations[c].n_images} images): {formats.number(calibrations[c].threshold, 4)}"
    ),
    key="pub.calibration",
    help="Site calibrations are made on the run page (Calibrate).",
)
calibration: Calibration | None = calibrations.get(chosen)
external = store.external_evals(candidate.id)
synthetic = any(synth.is_synthetic(f) for f in make_config(candidate.config).data.sources)
cautions = []
if not external:
    cautions.append(
        "it has **no external evaluation**: nobody knows how it does on X-rays from another "
        "hospital (evaluate it on one first: run page, or `python -m pipeline evaluate`)"
    )
if synthetic:
    cautions.append(
        "it was **trained on synthetic phantoms**: the public app will label it a demonstration "
        "that must not be used on real X-rays"
    )
c_who, c_why = st.columns([1, 2])
who = c_who.text_input("Your name", key="pub.who", max_chars=80)
note = c_why.text_input("Why this model (kept in the history)", key="pub.note", max_chars=200)
confirmed = True
if cautions:
    st.warning("Before you promote this run: " + "; ".join(cautions) + ".")
    confirmed = st.checkbox("I have read this and promote it anyway", key="pub.confirm")
missing = [f for f, v in (("your name", who), ("why", note)) if not v.strip()]
if missing:
    st.caption(f"To promote, fill in {' and '.join(missing)}.")
current = store.served_calibration()
is_served = (
    served is not None
    and served.id == candidate.id
    and (None if current is None else current.id)
    == (None if calibration is None else calibration.id)
)
if st.button(
    "Already served" if is_served else "Promote to the public app",
    type="primary",
    disabled=is_served or bool(missing) or not confirmed,
    key="pub.promote",
    icon=":material/publish:",
):
    try:
        store.promote(
            candidate.id,
            note.strip(),
            calibration_id=None if calibration is None else calibration.id,
            promoted_by=who.strip(),
        )
    except StoreError as err:
        st.error(str(err))
    else:
        st.session_state["pub.flash"] = (
            f"{candidate.name} ({candidate.id}) is now served; the public app switches to it "
            "within seconds, without a restart."
        )
        st.rerun()


def served_at(promotion: Promotion, run: Run | None) -> dict[str, object]:
    """The threshold a promotion served, and the site calibration it came from (if any)."""
    if promotion.calibration_id is None:
        threshold = None if run is None else run.threshold
        return {"threshold": threshold, "calibrated for": "— (validated)"}
    try:
        cal = store.get_calibration(promotion.calibration_id)
    except StoreError:
        return {"threshold": None, "calibrated for": f"(deleted, #{promotion.calibration_id})"}
    return {"threshold": cal.threshold, "calibrated for": f"{cal.site} (#{cal.id})"}


st.subheader("History")
if promotions:
    names = {r.id: r for r in store.list_runs()}
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "promoted": p.promoted_at,
                    "run": names[p.run_id].name if p.run_id in names else "(deleted)",
                    "id": p.run_id,
                    "AUC": names[p.run_id].auc if p.run_id in names else None,
                    **served_at(p, names.get(p.run_id)),
                    "by": p.promoted_by,
                    "why": p.note,
                }
                for p in promotions
            ]
        ),
        hide_index=True,
        key="pub.history",
    )
else:
    st.caption("Nothing promoted yet.")
