"""Pretraining runs on the dashboard (``python -m pipeline pretrain``): their table under the
leaderboard, their page (loss terms per epoch and the encoder's card), and the encoders the
Launch page offers as ``model.init``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard import charts, manage
from db import Run, RunStore
from pipeline import encoder, formats

TERMS = ("loss", "invariance", "variance", "covariance")


def encoder_choices(store: RunStore) -> dict[str, str]:
    """``model.init`` values to offer, each with its label: scratch, the shipped encoders and
    the encoder of every succeeded pretraining run."""
    choices = {"scratch": "scratch (random weights)"}
    for name in encoder.shipped_names():
        choices[name] = f"{name} (shipped)"
    for run in store.list_runs(status="succeeded", kind="pretrain"):
        path = Path(run.artifacts_dir or "") / "encoder.keras"
        if path.is_file():
            choices[str(path)] = f"{run.name} · {run.id[:6]} (pretraining run)"
    return choices


def section(store: RunStore) -> None:
    """The table of pretraining runs, when there are any."""
    runs = store.list_runs(kind="pretrain")
    if not runs:
        return
    st.subheader("Pretraining runs")
    st.caption(
        "Encoders pretrained on unlabelled X-rays (`python -m pipeline pretrain`); a classifier "
        "starts from one with model.init on the Launch page."
    )
    rows = []
    for run in runs:
        epochs = store.epochs(run.id)
        probe = run.metrics.get("pretrain", {}).get("linear_probe", {})
        rows.append(
            {
                "id": run.id,
                "name": run.name,
                "status": run.status,
                "epochs": len(epochs),
                "final loss": formats.number(epochs[-1].loss if epochs else None),
                "linear probe AUC": ", ".join(
                    f"{name} {formats.number(p['auc'])}" for name, p in probe.items()
                )
                or "—",
                "duration": formats.duration(run.duration_s),
                "created": f"{run.created_at:%Y-%m-%d %H:%M}",
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="lb.pretrain")


def page(store: RunStore, run: Run) -> None:
    """The Run page of a pretraining run: loss terms per epoch and the encoder's card."""
    bar = st.container(horizontal=True)
    manage.archive_and_delete(store, run, bar)
    history = run.metrics.get("history") or {"loss": [e.loss for e in store.epochs(run.id)]}
    if any(history.get(t) for t in TERMS):
        st.plotly_chart(loss_terms(history), key=f"run.pretrain.{run.id}")
    else:
        st.caption("No epoch finished yet.")
    card = run.metrics.get("pretrain")
    if card:
        st.subheader("Encoder card")
        st.markdown(
            f"**{card['method']}** on {card['n_images']:,} images "
            f"({', '.join(f'{k} {v:,}' for k, v in card['images'].items())}), "
            f"{card['epochs']} epochs in {formats.duration(card['seconds'])} on {card['device']}; "
            f"views: {card['views']}."
        )
        probe = card.get("linear_probe", {})
        if probe:
            st.markdown("**Linear probe** (logistic regression on frozen features, 5 folds)")
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "dataset": name,
                            "images": p["n"],
                            "AUC, pretrained": formats.number(p["auc"]),
                            "AUC, same encoder untrained": formats.number(p["auc_scratch"]),
                        }
                        for name, p in probe.items()
                    ]
                ),
                hide_index=True,
                key=f"run.probe.{run.id}",
            )
        st.code(f"--set model.init={run.artifacts_dir}/encoder.keras", language="text")
    if run.error:
        with st.expander("Failure", expanded=True):
            st.code(run.error, language="text")


def loss_terms(history: dict[str, list[float]]) -> go.Figure:
    """The VICReg loss and its three terms per epoch."""
    shown = [t for t in TERMS if history.get(t)]
    fig = make_subplots(rows=1, cols=len(shown), subplot_titles=shown)
    for col, term in enumerate(shown, start=1):
        values = history[term]
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(values) + 1)),
                y=values,
                mode="lines+markers",
                name=term,
                showlegend=False,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=col)
    return charts.layout(fig, height=300, panels=True)
