"""The run page's Calibrate section: probability calibration, and a threshold for a site.

A site calibration is computed here (the run's model scores the site's labelled images; nothing
trains), previewed with WHO's threshold table and a sensitivity / specificity chart, and stored
only when the user saves it. It never changes the run's own validated threshold; the Publish
page can promote the run with one of its calibrations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, ui
from db import Calibration, Run, RunStore
from pipeline import formats
from pipeline.data.layouts import DatasetLayoutError
from pipeline.imaging.decoded import ImageError


def reliability(reports: dict[str, dict[str, Any]]) -> go.Figure:
    """Reliability diagram: observed TB rate against mean P(TB) per bin, one line per report."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], name="perfect", line={"dash": "dash", "color": charts.WHO_COLOUR}
        )
    )
    for i, (name, report) in enumerate(reports.items()):
        r = report["reliability"]
        fig.add_trace(
            go.Scatter(
                x=r["predicted"],
                y=r["observed"],
                name=f"{name} (ECE {report['ece']:.3f})",
                mode="lines+markers",
                marker={"size": [6 + min(c, 60) / 6 for c in r["count"]]},
                line={"color": charts.RUN_COLOURS[i % len(charts.RUN_COLOURS)]},
                customdata=r["count"],
                hovertemplate="mean P(TB) %{x:.2f}<br>TB rate %{y:.2f}<br>%{customdata} images",
            )
        )
    fig.update_xaxes(title_text="mean P(TB) in the bin", range=[0, 1])
    fig.update_yaxes(title_text="share with TB", range=[0, 1.02])
    return charts.layout(fig)


def site_sweep(table: list[dict[str, float]], site: float, run: float) -> go.Figure:
    """Sensitivity and specificity on the check part by threshold, the WHO box shaded, and the
    site's and the run's thresholds marked."""
    frame = pd.DataFrame(table)
    fig = go.Figure()
    # Where both WHO minimums hold: the box a screening threshold should sit in.
    fig.add_hrect(
        y0=charts.WHO_SENSITIVITY,
        y1=1.0,
        fillcolor="#54A24B",
        opacity=0.08,
        line_width=0,
        annotation_text="WHO: sensitivity ≥ 0.90, specificity ≥ 0.70",
        annotation_position="bottom left",
    )
    fig.add_hline(y=charts.WHO_SPECIFICITY, line={"dash": "dash", "color": charts.WHO_COLOUR})
    for column, colour in (
        ("sensitivity", charts.TB_COLOUR),
        ("specificity", charts.NORMAL_COLOUR),
    ):
        fig.add_trace(
            go.Scatter(
                x=frame["threshold"],
                y=frame[column],
                name=column,
                line={"color": colour, "shape": "hv"},
            )
        )
    below = {"annotation_position": "bottom right", "annotation_yshift": -2}
    fig.add_vline(x=site, line={"color": "#54A24B"}, annotation_text="site", **below)
    fig.add_vline(
        x=run, line={"color": "#333", "dash": "dot"}, annotation_text="validated", **below
    )
    fig.update_xaxes(title_text="threshold", range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return charts.layout(fig)


def _result_view(result: dict[str, Any], key: str) -> None:
    """Figures of one site calibration: both thresholds on the check part, chart, table."""
    site, at_run = result["check"], result["check_at_run_threshold"]
    row = ui.metric_row()
    row.metric("site threshold", formats.number(result["threshold"], 4), width="content")
    for name in ("sensitivity", "specificity"):
        row.metric(
            f"{name} (check)",
            formats.number(site[name]),
            delta=f"{site[name] - at_run[name]:+.3f}",
            help="change: against the run's validated threshold on the same images; 95% CI "
            f"{formats.with_interval(site[name], site[f'{name}_ci'])}",
            width="content",
        )
    row.metric("AUC at the site", formats.number(site["auc"]), width="content")
    st.caption(
        f"Threshold chosen on {result['n_calibration']} images, checked on the other "
        f"{result['n_check']}; the run's validated threshold {at_run['threshold']:.4f} gives "
        f"sensitivity {formats.number(at_run['sensitivity'])} and specificity "
        f"{formats.number(at_run['specificity'])} on the same check images."
    )
    st.plotly_chart(
        site_sweep(result["table"], result["threshold"], at_run["threshold"]), key=f"{key}.sweep"
    )
    st.dataframe(
        pd.DataFrame(result["table"]).round(3),
        hide_index=True,
        key=f"{key}.table",
        column_config={
            "referred_per_1000": "referred /1000",
            "tb_found_per_1000": "TB found /1000",
            "tb_missed_per_1000": "TB missed /1000",
        },
    )


def _stored(calibrations: list[Calibration]) -> None:
    rows = [
        {
            "id": c.id,
            "site": c.site,
            "date": c.created_at,
            "images": c.n_images,
            "threshold": c.threshold,
            "sensitivity (95% CI)": formats.with_interval(
                c.sensitivity, (c.sensitivity_lo, c.sensitivity_hi)
            ),
            "specificity (95% CI)": formats.with_interval(
                c.specificity, (c.specificity_lo, c.specificity_hi)
            ),
            "prevalence": c.prevalence,
        }
        for c in calibrations
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="cal.stored")
    shown = st.selectbox(
        "Show", calibrations, format_func=lambda c: f"{c.id} · {c.site}", key="cal.show"
    )
    _result_view(shown.details, key="cal.stored_view")


def _same_folder(a: str, b: str) -> bool:
    return bool(a and b) and Path(a).resolve() == Path(b).resolve()


def section(store: RunStore, run: Run) -> None:
    """The whole Calibrate section of a succeeded run."""
    m = run.metrics
    st.markdown("**Probability calibration** (test split)")
    reports = {}
    if "calibration_before" in m:
        reports["network output"] = m["calibration_before"]
    if "calibration" in m:
        kind = run.config.get("eval", {}).get("calibration", "none")
        reports["served P(TB)" if kind == "none" else f"after {kind} scaling"] = m["calibration"]
    if reports:
        c_chart, c_note = st.columns([2, 1])
        c_chart.plotly_chart(reliability(reports), key="cal.reliability")
        c_note.caption(
            "Points on the diagonal: P(TB) means what it says. A run trained with "
            "`eval.calibration=platt` or `isotonic` maps its output to a calibrated probability, "
            "fitted on the validation split. Brier score (lower is better): "
            + ", ".join(f"{k} {v['brier']:.3f}" for k, v in reports.items())
        )
    else:
        st.caption("This run was trained before calibration measures were recorded.")

    st.markdown(
        "**Calibrate for a site** — a threshold for the population and X-ray machines "
        "where the model is used (WHO's guidance on CAD for TB)"
    )
    calibrations = store.calibrations(run.id)
    if calibrations:
        _stored(calibrations)
    with st.form("cal.form"):
        c = st.columns(2) + st.columns([2, 1, 1])
        trained_on = run.config.get("data", {}).get("path", "")
        # One folder (a string) or several: none of them is a site.
        trained = [trained_on] if isinstance(trained_on, str) else trained_on
        sites = [
            f for f in ui.known_datasets(store) if not any(_same_folder(f, t) for t in trained)
        ]
        known = c[0].selectbox(
            "Site images (labelled)",
            sites,
            key="cal.folder",
            help="A dataset folder of the site's own X-rays, labelled; never the training data.",
        )
        typed = c[1].text_input("…or any folder path", key="cal.path")
        folder = typed.strip() or known
        site = c[2].text_input("Site name", placeholder="District clinic A", key="cal.site")
        prevalence = c[3].number_input(
            "TB prevalence", 0.001, 0.999, 0.05, format="%.3f", key="cal.prevalence"
        )
        check = c[4].number_input("check share", 0.1, 0.9, 0.5, step=0.1, key="cal.check")
        go_ = st.form_submit_button("Calibrate", icon=":material/tune:", key="cal.go")
    if go_:
        from pipeline.runs.external import site_calibration

        try:
            with st.spinner("Scoring the site's images…"):
                index, result = site_calibration(
                    ui.predictor(run), folder, prevalence=prevalence, check_fraction=check
                )
        except (ValueError, OSError, DatasetLayoutError, ImageError) as err:
            st.error(f"Cannot calibrate on {folder}: {err}")
        else:
            where = str(index.root)
            st.session_state["cal.preview"] = (run.id, site, where, index.fingerprint, result)
    preview = st.session_state.get("cal.preview")
    if preview and preview[0] == run.id:
        _, site_name, folder, fingerprint, result = preview
        st.markdown(f"**Preview** — {site_name or '(unnamed site)'}, {folder}")
        _result_view(result, key="cal.preview_view")
        if st.button(
            "Save this calibration", type="primary", key="cal.save", disabled=not site_name
        ):
            cal = store.add_calibration(
                run.id,
                site=site_name,
                dataset_path=folder,
                data_fingerprint=fingerprint,
                result=result,
            )
            del st.session_state["cal.preview"]
            st.success(f"Saved as calibration {cal.id}; promote it on the Publish page.")
            st.rerun()
        if not site_name:
            st.caption("Name the site to save this calibration.")
