"""Plotly figures for the dashboard; each function returns a figure and never shows or saves it.

Colours are fixed across every page: normal is blue and TB is red, each run status has its own
colour, and runs being compared take the colours of one qualitative palette in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from db import Epoch
from pipeline.evaluation.metrics import WHO_MIN_SENSITIVITY as WHO_SENSITIVITY
from pipeline.evaluation.metrics import WHO_MIN_SPECIFICITY as WHO_SPECIFICITY

NORMAL_COLOUR = "#4C78A8"
TB_COLOUR = "#E45756"
CLASS_COLOURS = {"normal": NORMAL_COLOUR, "tb": TB_COLOUR}
STATUS_COLOURS = {
    "queued": "#BAB0AC",
    "running": "#F58518",
    "succeeded": "#54A24B",
    "failed": "#B279A2",
    "cancelled": "#9D755D",
}
RUN_COLOURS = px.colors.qualitative.Safe
WHO_COLOUR = "#555555"
_HEIGHT = 340


def layout(fig: go.Figure, height: int = _HEIGHT, *, panels: bool = False) -> go.Figure:
    """Shared look: legend in one row above the plot (above the panel titles with ``panels``)."""
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 60 if panels else 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.12 if panels else 1.02, "x": 0},
    )
    return fig


def learning_curves(epochs: Sequence[Epoch]) -> go.Figure:
    """Loss, accuracy and AUC per epoch: training solid, validation dashed."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "accuracy", "AUC"))
    x = [e.epoch for e in epochs]
    for col, metric in enumerate(("loss", "accuracy", "auc"), start=1):
        for split, dash, colour in (("train", "solid", "#4C78A8"), ("val", "dash", "#F58518")):
            attr = metric if split == "train" else f"val_{metric}"
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[getattr(e, attr) for e in epochs],
                    mode="lines+markers",
                    name="training" if split == "train" else "validation",
                    line={"dash": dash, "color": colour},
                    legendgroup=split,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    # Several sources checkpointed per source (eval.per_source): the AUC early stopping reads.
    if any(e.val_source_auc is not None for e in epochs):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[e.val_source_auc for e in epochs],
                mode="lines+markers",
                name="validation, mean per source",
                line={"dash": "dot", "color": "#54A24B"},
            ),
            row=1,
            col=3,
        )
    return layout(fig, height=320, panels=True)


def confusion_matrix(confusion: dict[str, int]) -> go.Figure:
    """The 2×2 test confusion matrix at the run's threshold, counts in the cells.

    Short tick labels and the count under its name in each cell keep it readable in a third of
    the page at 1024 px (a cell there is about 60 px wide)."""
    z = [[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]]
    text = [
        [f"TN<br>{confusion['tn']}", f"FP<br>{confusion['fp']}"],
        [f"FN<br>{confusion['fn']}", f"TP<br>{confusion['tp']}"],
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=["normal", "TB"],
            y=["normal", "TB"],
            text=text,
            texttemplate="%{text}",
            textfont={"size": 14},
            colorscale="Blues",
            showscale=False,
        )
    )
    fig.update_xaxes(title_text="predicted class", tickangle=0)
    fig.update_yaxes(autorange="reversed", title_text="true class")
    return layout(fig, height=300)


def roc(
    curves: Sequence[tuple[str, dict[str, Any]]], points: Sequence[tuple[float, float]] = ()
) -> go.Figure:
    """ROC curves ``(label, {"fpr", "tpr"})``, the chance line, the WHO target corner and
    optional operating points as ``(1 - specificity, sensitivity)``."""
    fig = go.Figure()
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": "#999"})
    fig.add_shape(
        type="rect",
        x0=0,
        x1=1 - WHO_SPECIFICITY,
        y0=WHO_SENSITIVITY,
        y1=1,
        line={"color": WHO_COLOUR, "dash": "dash"},
        fillcolor="rgba(84,162,75,0.12)",
    )
    fig.add_annotation(
        x=1 - WHO_SPECIFICITY,
        y=WHO_SENSITIVITY,
        text="WHO target",
        showarrow=False,
        xanchor="left",
        yanchor="top",
        font={"color": WHO_COLOUR},
    )
    for i, (label, curve) in enumerate(curves):
        fig.add_trace(
            go.Scatter(
                x=curve.get("fpr", []),
                y=curve.get("tpr", []),
                mode="lines",
                name=label,
                line={"color": RUN_COLOURS[i % len(RUN_COLOURS)]},
            )
        )
    for i, (x, y) in enumerate(points):
        fig.add_trace(
            go.Scatter(
                x=[x],
                y=[y],
                mode="markers",
                marker={"size": 12, "symbol": "x", "color": RUN_COLOURS[i % len(RUN_COLOURS)]},
                name="operating point",
                showlegend=i == 0,
            )
        )
    fig.update_xaxes(title_text="1 − specificity", range=[0, 1])
    fig.update_yaxes(title_text="sensitivity", range=[0, 1.02])
    return layout(fig)


def precision_recall(curves: Sequence[tuple[str, dict[str, Any]]]) -> go.Figure:
    """Precision-recall curves ``(label, {"precision", "recall"})``."""
    fig = go.Figure()
    for i, (label, curve) in enumerate(curves):
        fig.add_trace(
            go.Scatter(
                x=curve.get("recall", []),
                y=curve.get("precision", []),
                mode="lines",
                name=label,
                line={"color": RUN_COLOURS[i % len(RUN_COLOURS)], "shape": "hv"},
            )
        )
    fig.update_xaxes(title_text="recall (sensitivity)", range=[0, 1])
    fig.update_yaxes(title_text="precision (PPV)", range=[0, 1.02])
    return layout(fig)


def threshold_sweep(roc_curve: dict[str, Any], chosen: float, current: float) -> go.Figure:
    """Sensitivity and specificity against the threshold (from the test ROC), with the WHO
    minimums and two vertical lines: the threshold chosen on validation and the slider's."""
    thresholds = np.asarray(roc_curve.get("thresholds", []), dtype=float)
    tpr = np.asarray(roc_curve.get("tpr", []), dtype=float)
    fpr = np.asarray(roc_curve.get("fpr", []), dtype=float)
    keep = np.isfinite(thresholds) & (thresholds <= 1.0)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=thresholds[keep],
            y=tpr[keep],
            name="sensitivity",
            line={"color": TB_COLOUR, "shape": "hv"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=thresholds[keep],
            y=1 - fpr[keep],
            name="specificity",
            line={"color": NORMAL_COLOUR, "shape": "hv"},
        )
    )
    for y, label in (
        (WHO_SENSITIVITY, f"WHO sensitivity ≥ {WHO_SENSITIVITY:.2f}"),
        (WHO_SPECIFICITY, f"WHO specificity ≥ {WHO_SPECIFICITY:.2f}"),
    ):
        fig.add_hline(
            y=y,
            line={"dash": "dash", "color": WHO_COLOUR},
            annotation_text=label,
            annotation_position="bottom left",
        )
    fig.add_vline(x=chosen, line={"color": "#54A24B"}, annotation_text="chosen on validation")
    if abs(current - chosen) > 1e-9:
        fig.add_vline(x=current, line={"color": "#333", "dash": "dot"}, annotation_text="slider")
    fig.update_xaxes(title_text="threshold (P(TB) ≥ threshold → TB)", range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return layout(fig)


def score_histogram(labels: np.ndarray, scores: np.ndarray, threshold: float) -> go.Figure:
    """Test-set P(TB) by true class, with the threshold."""
    fig = go.Figure()
    for label, name in ((0, "normal"), (1, "tb")):
        fig.add_trace(
            go.Histogram(
                x=scores[labels == label],
                name="normal" if label == 0 else "TB",
                marker_color=CLASS_COLOURS[name],
                opacity=0.7,
                xbins={"start": 0, "end": 1, "size": 0.05},
            )
        )
    fig.add_vline(x=threshold, line={"color": "#333", "dash": "dot"})
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text="P(TB)", range=[0, 1])
    fig.update_yaxes(title_text="test images")
    return layout(fig)


def parallel_coordinates(frame: pd.DataFrame, params: Sequence[str], metric: str) -> go.Figure:
    """One line per run through the chosen ``params`` to ``metric`` (coloured by it).

    Text columns become evenly spaced categories with their values as tick labels.
    """
    dimensions = []
    for column in [*params, metric]:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            dimensions.append({"label": column, "values": values.astype(float)})
        else:
            text = values.astype(str)
            categories = sorted(text.unique())
            codes = text.map({c: i for i, c in enumerate(categories)})
            dimensions.append(
                {
                    "label": column,
                    "values": codes,
                    "tickvals": list(range(len(categories))),
                    "ticktext": categories,
                }
            )
    fig = go.Figure(
        go.Parcoords(
            line={
                "color": frame[metric].astype(float),
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": metric}},
            },
            dimensions=dimensions,
        )
    )
    return layout(fig, height=380).update_layout(margin={"l": 100, "r": 60, "t": 50, "b": 20})


def scatter(frame: pd.DataFrame, x: str, y: str, colour: str) -> go.Figure:
    """Any two leaderboard columns against each other, one point per run."""
    colours = STATUS_COLOURS if colour == "status" else None
    data = frame.assign(**{colour: frame[colour].astype(str)}) if colour != "status" else frame
    fig = px.scatter(
        data,
        x=x,
        y=y,
        color=colour,
        color_discrete_map=colours,
        color_discrete_sequence=RUN_COLOURS,
        hover_data=["name", "id"],
    )
    fig.update_traces(marker={"size": 11})
    return layout(fig)


def overlaid_curves(histories: Sequence[tuple[str, Sequence[Epoch]]], metric: str) -> go.Figure:
    """One metric per epoch for several runs: validation solid, training dotted.

    The legend names each run once (a click hides both its curves); the figure grows by a
    legend row per run, so that the curves keep their height however many runs there are.
    """
    fig = go.Figure()
    for i, (label, epochs) in enumerate(histories):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        x = [e.epoch for e in epochs]
        for attr, dash, suffix in ((f"val_{metric}", "solid", "val"), (metric, "dot", "train")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[getattr(e, attr) for e in epochs],
                    mode="lines+markers",
                    name=label,
                    hovertemplate=f"{label} ({suffix})<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>",
                    line={"color": colour, "dash": dash},
                    legendgroup=label,
                    showlegend=suffix == "val",
                )
            )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text=metric)
    layout(fig, height=_HEIGHT + 20 * len(histories))
    return fig.update_layout(legend={"font": {"size": 11}})


def factor_chart(summary: pd.DataFrame, metric: str) -> go.Figure:
    """A suite's settings against ``metric``: mean with ± std error bars, best marked, and each
    mean written just above its error bar (a bar's own text sits where the error bar crosses)."""
    means = summary[f"{metric}_mean"]
    stds = summary[f"{metric}_std"].fillna(0.0)
    colours = [
        "#54A24B" if best else "#4C78A8" for best in summary.get("best", [False] * len(summary))
    ]
    fig = go.Figure(
        go.Bar(
            x=summary["setting"],
            y=means,
            error_y={"type": "data", "array": stds, "visible": True},
            marker_color=colours,
            hovertext=[
                f"{n} succeeded of {r}"
                for n, r in zip(summary["succeeded"], summary["runs"], strict=True)
            ],
        )
    )
    for setting, mean, top in zip(summary["setting"], means, means + stds, strict=True):
        if pd.notna(mean):
            fig.add_annotation(
                x=setting, y=top, text=f"{mean:.3f}", showarrow=False, yanchor="bottom", yshift=3
            )
    # The axis spans the data, not 0..1: differences of a few hundredths must stay visible.
    low = (means - stds).min(skipna=True)
    high = (means + stds).max(skipna=True)
    span = [0.0, 1.05] if pd.isna(low) else [max(0.0, low - 0.05), min(1.05, high + 0.05)]
    fig.update_yaxes(title_text=f"{metric} (mean ± std over seeds)", range=span)
    return layout(fig)


def class_counts(counts: dict[str, int]) -> go.Figure:
    """Images per class as two bars in the class colours."""
    fig = go.Figure(
        go.Bar(
            x=["normal", "TB"],
            y=[counts["normal"], counts["tb"]],
            marker_color=[NORMAL_COLOUR, TB_COLOUR],
            text=[counts["normal"], counts["tb"]],
            textposition="auto",
        )
    )
    fig.update_yaxes(title_text="images")
    return layout(fig, height=260)


def intensity_histograms(histograms: dict[str, dict[str, np.ndarray]]) -> go.Figure:
    """Pixel-intensity distributions, one panel per enhancement, normal and TB overlaid.

    ``histograms[enhancement][class]`` is a 256-bin density.
    """
    names = list(histograms)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    for col, name in enumerate(names, start=1):
        for cls, density in histograms[name].items():
            fig.add_trace(
                go.Scatter(
                    x=np.arange(256),
                    y=density,
                    mode="lines",
                    name="normal" if cls == "normal" else "TB",
                    line={"color": CLASS_COLOURS[cls]},
                    legendgroup=cls,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="intensity", range=[0, 255], row=1, col=col)
    return layout(fig, height=300, panels=True)


def border_artefacts(shares: pd.DataFrame) -> go.Figure:
    """Share of images with a bright box along each border, normal vs TB side by side.

    ``shares`` has columns ``edge``, ``class`` (normal / tb) and ``share`` (0..1).
    """
    fig = go.Figure()
    for cls in ("normal", "tb"):
        part = shares[shares["class"] == cls]
        fig.add_trace(
            go.Bar(
                x=part["edge"],
                y=part["share"],
                name="normal" if cls == "normal" else "TB",
                marker_color=CLASS_COLOURS[cls],
                text=[f"{v:.0%}" for v in part["share"]],
                textposition="outside",
            )
        )
    fig.update_yaxes(title_text="share of images", tickformat=".0%", range=[0, 1.1])
    return layout(fig, height=280)
