"""Compare: 2–6 runs side by side (config diff, metrics, ROC and learning curves), and an
experiment suite's progress (cancel the rest) and settings against a metric with error bars over
seeds."""

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts, manage, tables, ui
from pipeline import formats
from pipeline.experiments import spec
from pipeline.experiments import summary as suite_summary

METRIC_NAMES = {
    "auc": "AUC",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "ext_auc": "external AUC (mean)",
    "ext_sens": "external sensitivity (worst)",
}


def different_test_sets(chosen: list, labels: list[str]) -> str | None:
    """A warning when the runs' test metrics were measured on different images (another
    dataset, or another split of it), naming who was tested on what; None when all share one."""
    groups: dict[frozenset, list[str]] = {}
    for run, label in zip(chosen, labels, strict=True):
        rows = ui.predictions(run)
        files = frozenset(rows.loc[rows["split"] == "test", "file"])
        if files:
            data = run.config.get("data", {}).get("path", "?")
            names = ", ".join(Path(p).name for p in (data if isinstance(data, list) else [data]))
            groups.setdefault(files, []).append(f"{label} ({len(files)} images of {names})")
    if len(groups) <= 1:
        return None
    described = "; ".join(" and ".join(runs) for runs in groups.values())
    return (
        "These runs were tested on different images, so their test metrics do not rank them "
        f"like for like: {described}. Compare runs of one dataset and split, or their AUC on a "
        "shared external folder."
    )


st.title("Compare")
store = ui.store()
runs = store.list_runs()
if not runs:
    ui.no_runs_yet()
    st.stop()
by_id = {r.id: r for r in runs}

tab_runs, tab_suite = st.tabs(["Runs", "Suite"])

with tab_runs:
    asked = [w for w in st.query_params.get("runs", "").split(",") if w]
    wanted = [w for w in asked if w in by_id]
    unknown = [w for w in asked if w not in by_id]
    if unknown:
        st.error(
            "No run " + ", ".join(f"`{w}`" for w in unknown) + " here: the link is wrong, or "
            "the runs were deleted. Pick runs below.",
            icon=":material/link_off:",
        )
    succeeded = [r.id for r in runs if r.status == "succeeded"]
    chosen_ids = st.multiselect(
        "Runs (2–6)",
        list(by_id),
        default=wanted if asked else succeeded[:2],
        format_func=lambda i: ui.run_label(by_id[i]),
        max_selections=6,
        key="cmp.runs",
    )
    # A wrong link stays in the address bar until the visitor picks runs themselves.
    if st.query_params.get("runs", "") != ",".join(chosen_ids) and chosen_ids != wanted:
        st.query_params["runs"] = ",".join(chosen_ids)
    chosen = [by_id[i] for i in chosen_ids]
    if len(chosen) < 2:
        st.info("Pick at least two runs (tick them on the Leaderboard, or choose them here).")
    else:
        labels = tables.run_labels(chosen)
        warning = different_test_sets(chosen, labels)
        if warning:
            st.warning(warning, icon=":material/warning:")
        st.subheader("Metrics")
        rows = {
            "status": [r.status for r in chosen],
            "AUC (95% CI)": [formats.with_interval(r.auc, (r.auc_lo, r.auc_hi)) for r in chosen],
            "sensitivity (95% CI)": [
                formats.with_interval(r.sensitivity, (r.sensitivity_lo, r.sensitivity_hi))
                for r in chosen
            ],
            "specificity (95% CI)": [
                formats.with_interval(r.specificity, (r.specificity_lo, r.specificity_hi))
                for r in chosen
            ],
            "F1": [formats.number(r.f1) for r in chosen],
            "accuracy": [formats.number(r.accuracy) for r in chosen],
            "threshold": [formats.number(r.threshold, 4) for r in chosen],
            "WHO target": [
                "—" if r.who_met is None else "met" if r.who_met else "not met" for r in chosen
            ],
            "external AUC mean / worst": [],
            "external sensitivity mean / worst": [],
            "epochs trained": [str(r.metrics.get("epochs_trained", "—")) for r in chosen],
            "duration": [formats.duration(r.duration_s) for r in chosen],
        }
        summaries = store.external_summaries()
        for r in chosen:
            ext = summaries.get(r.id)
            sets = f" ({len(ext.datasets)} sets)" if ext else ""
            rows["external AUC mean / worst"].append(
                f"{formats.number(ext.auc_mean)} / {formats.number(ext.auc_worst)}{sets}"
                if ext
                else "none"
            )
            rows["external sensitivity mean / worst"].append(
                f"{formats.number(ext.sensitivity_mean)} / {formats.number(ext.sensitivity_worst)}"
                if ext
                else "none"
            )
        st.dataframe(
            pd.DataFrame.from_dict(rows, orient="index", columns=labels),
            height=36 * (len(rows) + 1) + 2,
            # Wide enough for "external sensitivity mean / worst", and kept in view while the
            # runs' columns scroll on a narrow page.
            column_config={"_index": st.column_config.TextColumn(width=230, pinned=True)},
            key="cmp.metrics",
        )

        st.subheader("Config differences")
        diff = tables.config_diff(chosen)
        if diff.empty:
            st.caption("The configs are identical.")
        else:
            st.dataframe(diff, key="cmp.diff")

        c_roc, c_curve = st.columns(2)
        with c_roc:
            st.markdown("**ROC** (test)")
            done = [(label, r) for label, r in zip(labels, chosen, strict=True) if r.metrics]
            st.plotly_chart(
                charts.roc(
                    [(label, r.metrics.get("roc", {})) for label, r in done],
                    [
                        (1 - r.specificity, r.sensitivity)
                        for _, r in done
                        if r.specificity is not None
                    ],
                ),
                key="cmp.roc",
            )
        with c_curve:
            metric = st.segmented_control(
                "Learning curves: validation solid, training dotted",
                ["auc", "loss", "accuracy"],
                default="auc",
                key="cmp.metric",
            )
            histories = [
                (label, store.epochs(r.id)) for label, r in zip(labels, chosen, strict=True)
            ]
            st.plotly_chart(charts.overlaid_curves(histories, metric or "auc"), key="cmp.curves")

with tab_suite:
    suites = store.list_suites()
    if not suites:
        st.info("No experiment suite launched yet.")
        st.page_link(ui.LAUNCH, label="Launch a suite", icon=":material/rocket_launch:")
    else:
        suite_ids = [s.id for s in suites]
        names = {s.id: f"{s.name} · {s.id[:6]} · {s.created_at:%Y-%m-%d %H:%M}" for s in suites}
        wanted_suite = st.query_params.get("suite")
        suite_id = st.selectbox(
            "Suite",
            suite_ids,
            index=suite_ids.index(wanted_suite) if wanted_suite in suite_ids else 0,
            format_func=names.get,
            key="cmp.suite",
        )
        manage.suite_panel(store, suite_id)
        try:
            summary = suite_summary.summary(store, suite_id)
        except ValueError as err:
            st.error(str(err))
            st.stop()
        st.caption(summary.attrs.get("question", ""))
        external = bool(summary["ext_auc_mean"].notna().any())
        choices = ["auc", "sensitivity", "specificity"] + (
            ["ext_auc", "ext_sens"] if external else []
        )
        metric = st.segmented_control(
            "Metric",
            choices,
            default="ext_auc" if external else "auc",
            format_func=METRIC_NAMES.get,
            key="cmp.suite_metric",
        )
        st.plotly_chart(charts.factor_chart(summary, metric or "auc"), key="cmp.factor")

        def vs_ref(metric: str) -> list[str]:
            return [
                "ref" if ref else suite_summary.p_text(p, verdict)
                for ref, p, verdict in zip(
                    summary["reference"],
                    summary[f"{metric}_p"],
                    summary[f"{metric}_vs_ref"],
                    strict=True,
                )
            ]

        def cells(metric: str) -> list[str]:
            return [
                suite_summary.mean_std(m, s)
                for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"], strict=True)
            ]

        columns = {
            "": ["★" if b else "" for b in summary["best"]],
            "setting": summary["setting"],
            "ok / runs": [
                f"{s}/{r}" for s, r in zip(summary["succeeded"], summary["runs"], strict=True)
            ],
            "AUC": cells("auc"),
            "AUC vs ref": vs_ref("auc"),
        }
        if external:
            columns |= {
                "ext AUC mean": cells("ext_auc"),
                "ext AUC vs ref": vs_ref("ext_auc"),
                "ext AUC worst": [formats.number(v) for v in summary["ext_auc_worst"]],
                "ext sens worst": cells("ext_sens"),
                "ext sens vs ref": vs_ref("ext_sens"),
            }
        columns |= {
            "sensitivity": cells("sensitivity"),
            "specificity": cells("specificity"),
            "wall time": [formats.duration(v) for v in summary["wall_time_s"]],
        }
        st.dataframe(pd.DataFrame(columns), hide_index=True, key="cmp.summary")
        best = "mean external AUC" if external else "mean AUC"
        st.caption(
            f"★ best {best} · vs ref: p of the paired test against the reference setting (paired "
            "t over seeds; DeLong on the shared test images for one seed); ▲ better, ▼ worse "
            f"only when p < {suite_summary.ALPHA}. Means ± std over seeds, succeeded runs only."
        )
        for s in summary.attrs.get("skipped", []):
            st.caption(f"skipped {spec.setting_label(s['setting'])}: {s['reason']}")
