"""A suite's results per setting, and which settings really differ from the suite's reference.

:func:`summary` puts one row per setting: mean ± std over seeds of the internal test metrics and,
for runs with external sets, of the mean and worst external AUC and the worst external
sensitivity. Each setting is compared with the suite's reference setting (the one that is the
suite's preset unchanged, ``baseline`` by default, else the suite's first) by a paired test:
over seeds, the paired t-test on the per-seed differences (runs of one seed share their split);
with a single seed, DeLong's test on the test images both runs scored
(:func:`pipeline.evaluation.compare.delong`). A setting is marked better or worse than the reference
only when that test gives p < :data:`ALPHA`; otherwise it is not shown to differ, however its means
compare.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from db import ExternalSummary
from pipeline import formats
from pipeline.config import PRESETS, preset
from pipeline.evaluation.compare import delong, paired_seeds
from pipeline.experiments.spec import key_of, setting_label, values_at

if TYPE_CHECKING:
    from db import Run, RunStore

ALPHA = 0.05
# The metrics each setting is compared on, with how to read them from a run (None: no value).
COMPARED: dict[str, str] = {
    "auc": "internal test AUC",
    "ext_auc": "mean external AUC",
    "ext_sens": "worst external sensitivity",
}
SUMMARY_COLUMNS: tuple[str, ...] = (
    "setting",
    "runs",
    "succeeded",
    "auc_mean",
    "auc_std",
    "auc_lo",
    "auc_hi",
    "sensitivity_mean",
    "sensitivity_std",
    "specificity_mean",
    "specificity_std",
    "f1_mean",
    "ext_auc_mean",
    "ext_auc_std",
    "ext_auc_worst",
    "ext_sens_mean",
    "ext_sens_std",
    "epochs_mean",
    "wall_time_s",
    "reference",
    *(f"{m}_{part}" for m in COMPARED for part in ("p", "test", "vs_ref")),
    "best",
)


def summary(store: RunStore, suite_id: str) -> pd.DataFrame:
    """One row per setting of the suite, in the suite's order (columns: ``SUMMARY_COLUMNS``).

    Runs are grouped by the values of the suite's varied fields in their configs. ``runs`` counts
    every run of the setting; means and stds (sample std, NaN for fewer than two) use only the
    succeeded ones; ``auc_lo``/``auc_hi`` are the means of the runs' bootstrap 95% bounds;
    ``wall_time_s`` sums every run's duration, failed ones included. ``ext_auc_*`` is each run's
    mean AUC over its external folders, ``ext_auc_worst`` the mean of each run's lowest,
    ``ext_sens_*`` each run's lowest external sensitivity. ``reference`` marks the reference
    setting; ``<metric>_p``, ``<metric>_test`` and ``<metric>_vs_ref`` ("better", "worse",
    "no difference shown", "" for the reference or when untestable) compare each other setting
    with it. ``best`` marks the highest mean external AUC when the suite has external sets, else
    the highest mean internal AUC. ``df.attrs`` holds ``suite``, ``question``, ``skipped`` and
    ``ranked_by``.
    """
    suite = store.get_suite(suite_id)
    settings = settings_of(store, suite_id)
    groups = {key: runs for key, (_, runs) in settings.items()}
    externals = store.external_summaries()
    df = pd.DataFrame([_row(label, runs, externals) for label, runs in settings.values()])
    df = df.reindex(columns=list(SUMMARY_COLUMNS))
    varied = suite.spec["varied_fields"]
    unchanged = preset(suite_preset(suite.spec)).model_dump(mode="json")
    today = key_of(values_at(unchanged, varied), varied)
    ref_pos = next((i for i, k in enumerate(groups) if k == today), 0)
    df["reference"] = [i == ref_pos for i in range(len(df))]
    reference = list(groups.values())[ref_pos] if groups else []
    for metric in COMPARED:
        compared = [
            (float("nan"), "", "") if i == ref_pos else _compare(metric, runs, reference, externals)
            for i, runs in enumerate(groups.values())
        ]
        for j, part in enumerate(("p", "test", "vs_ref")):
            df[f"{metric}_{part}"] = [c[j] for c in compared]
    ranked_by = "ext_auc_mean" if df["ext_auc_mean"].notna().any() else "auc_mean"
    df["best"] = False
    if df[ranked_by].notna().any():
        df.loc[df[ranked_by].idxmax(), "best"] = True
    df.attrs = {
        "suite": suite.name,
        "question": suite.description,
        "skipped": suite.spec.get("skipped", []),
        "ranked_by": ranked_by,
    }
    return df


def settings_of(store: RunStore, suite_id: str) -> dict[str, tuple[str, list[Run]]]:
    """The suite's runs grouped by setting, in the suite's order: key -> (label, runs).

    Runs are grouped by the values of the suite's varied fields in their configs; a run added
    to the suite later is labelled by what it changes from the suite's preset.
    """
    suite = store.get_suite(suite_id)
    varied = suite.spec.get("varied_fields")
    if varied is None:
        raise ValueError(
            f"suite {suite_id} ({suite.name}) has no 'varied_fields' in its spec; it was not "
            "created by pipeline.experiments.plan.enqueue, so its runs cannot be grouped by setting"
        )
    out: dict[str, tuple[str, list[Run]]] = {
        key_of(s["values"], varied): (s["label"], []) for s in suite.spec.get("settings", [])
    }
    baseline = values_at(preset(suite_preset(suite.spec)).model_dump(mode="json"), varied)
    for run in store.list_runs(suite_id=suite_id):
        values = values_at(run.config, varied)
        changed = {f: v for f, v in values.items() if v != baseline.get(f)}
        out.setdefault(key_of(values, varied), (setting_label(changed), []))[1].append(run)
    return out


def suite_preset(spec: dict[str, Any]) -> str:
    """The preset a stored suite's runs started from; suites stored before suites named theirs
    were all built on what is now ``baseline-v1``."""
    return spec.get("preset", "baseline-v1" if "baseline-v1" in PRESETS else "baseline")


def _metric(metric: str, externals: dict[str, ExternalSummary]) -> Callable[[Run], Any]:
    if metric == "auc":
        return lambda r: r.auc
    field = "auc_mean" if metric == "ext_auc" else "sensitivity_worst"
    return lambda r: getattr(externals[r.id], field) if r.id in externals else None


def _by_seed(runs: list[Run], value: Callable[[Run], Any]) -> dict[int, float]:
    out = {}
    for r in runs:
        v = value(r) if r.status == "succeeded" else None
        if v is not None and not pd.isna(v):
            out[int(r.config.get("seed", 0))] = float(v)
    return out


def _compare(
    metric: str, runs: list[Run], reference: list[Run], externals: dict[str, ExternalSummary]
) -> tuple[float, str, str]:
    """(p, test used, verdict) of ``runs`` against the ``reference`` runs on ``metric``."""
    value = _metric(metric, externals)
    mine, theirs = _by_seed(runs, value), _by_seed(reference, value)
    paired = paired_seeds(mine, theirs)
    if paired is not None:
        return paired.p, f"paired t, {paired.n} seeds", _verdict(paired.p, paired.mean_difference)
    shared = sorted(set(mine) & set(theirs))
    if metric == "auc" and len(shared) == 1:
        seed = shared[0]
        a, b = (_seed_run(rs, seed) for rs in (runs, reference))
        scored = _same_test_images(a, b)
        if scored is not None:
            result = delong(*scored)
            return result.p, "DeLong, 1 seed", _verdict(result.p, result.difference)
    return float("nan"), "", ""


def _verdict(p: float, difference: float) -> str:
    if p < ALPHA:
        return "better" if difference > 0 else "worse"
    return "no difference shown"


def _seed_run(runs: list[Run], seed: int) -> Run:
    return next(r for r in runs if r.status == "succeeded" and r.config.get("seed", 0) == seed)


def _test_scores(run: Run) -> dict[str, tuple[int, float]] | None:
    if not run.artifacts_dir:
        return None
    path = Path(run.artifacts_dir) / "predictions.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        return {
            r["path"]: (int(r["label"]), float(r["score"]))
            for r in csv.DictReader(f)
            if r["split"] == "test"
        }


def _same_test_images(a: Run, b: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Labels and both runs' scores on the test images they share (None if they share none)."""
    sa, sb = _test_scores(a), _test_scores(b)
    if not sa or not sb or set(sa) != set(sb):
        return None
    paths = sorted(sa)
    y = np.array([sa[p][0] for p in paths])
    if len(set(y.tolist())) < 2:
        return None
    return y, np.array([sa[p][1] for p in paths]), np.array([sb[p][1] for p in paths])


def _row(label: str, runs: list[Run], externals: dict[str, ExternalSummary]) -> dict[str, Any]:
    """One summary row: counts over all runs, statistics over the succeeded ones."""
    ok = [r for r in runs if r.status == "succeeded"]
    ext = [externals.get(r.id) for r in ok]

    def column(values: Iterable[Any]) -> pd.Series:
        # dtype float turns a missing metric (None) into NaN, which means and stds skip.
        return pd.Series(list(values), dtype=float)

    auc = column(r.auc for r in ok)
    sensitivity = column(r.sensitivity for r in ok)
    specificity = column(r.specificity for r in ok)
    ext_auc = column(e.auc_mean if e else None for e in ext)
    ext_sens = column(e.sensitivity_worst if e else None for e in ext)
    return {
        "setting": label,
        "runs": len(runs),
        "succeeded": len(ok),
        "auc_mean": auc.mean(),
        "auc_std": auc.std(),
        "auc_lo": column(r.auc_lo for r in ok).mean(),
        "auc_hi": column(r.auc_hi for r in ok).mean(),
        "sensitivity_mean": sensitivity.mean(),
        "sensitivity_std": sensitivity.std(),
        "specificity_mean": specificity.mean(),
        "specificity_std": specificity.std(),
        "f1_mean": column(r.f1 for r in ok).mean(),
        "ext_auc_mean": ext_auc.mean(),
        "ext_auc_std": ext_auc.std(),
        "ext_auc_worst": column(e.auc_worst if e else None for e in ext).mean(),
        "ext_sens_mean": ext_sens.mean(),
        "ext_sens_std": ext_sens.std(),
        "epochs_mean": column(r.metrics.get("epochs_trained") for r in ok).mean(),
        "wall_time_s": float(sum(r.duration_s or 0.0 for r in runs)),
    }


def mean_std(mean: float, std: float) -> str:
    """``0.912 ± 0.010``; the mean alone without a std; ``—`` without a mean."""
    if pd.isna(mean):
        return "—"
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def p_text(p: float, verdict: str) -> str:
    """``p 0.003 ▲`` (better), ``p 0.41`` (no difference shown), ``ref``/``—``."""
    if verdict == "":
        return "—"
    arrow = {"better": " ▲", "worse": " ▼"}.get(verdict, "")
    return (f"p {p:.3f}" if p < 0.1 else f"p {p:.2f}") + arrow


def format_summary(df: pd.DataFrame) -> str:
    """:func:`summary` as an aligned plain-text table, with a legend and any skipped settings.

    Cells read ``mean ± std`` (the mean alone for a single run, ``—`` with no result); each
    compared metric is followed by the p of its paired test against the reference, ▲ or ▼ when it
    is better or worse at p < 0.05. ★ marks the best (see :func:`summary`). Labels may contain
    brackets, so print it with rich markup off (``console.print(text, markup=False)``).
    """
    external = df["ext_auc_mean"].notna().any()
    header = ["", "setting", "ok/runs", "AUC", "vs ref", "AUC 95% CI"]
    if external:
        header += ["ext AUC mean", "vs ref", "ext AUC worst", "ext sens worst", "vs ref"]
    header += ["sensitivity", "specificity", "epochs", "wall time"]
    rows = [tuple(header)]
    for r in df.itertuples(index=False):
        mark = "★" if r.best else "ref" if r.reference else ""
        row = [
            mark,
            r.setting,
            f"{r.succeeded}/{r.runs}",
            mean_std(r.auc_mean, r.auc_std),
            "ref" if r.reference else p_text(r.auc_p, r.auc_vs_ref),
            formats.interval((r.auc_lo, r.auc_hi)),
        ]
        if external:
            row += [
                mean_std(r.ext_auc_mean, r.ext_auc_std),
                "ref" if r.reference else p_text(r.ext_auc_p, r.ext_auc_vs_ref),
                "—" if pd.isna(r.ext_auc_worst) else f"{r.ext_auc_worst:.3f}",
                mean_std(r.ext_sens_mean, r.ext_sens_std),
                "ref" if r.reference else p_text(r.ext_sens_p, r.ext_sens_vs_ref),
            ]
        row += [
            mean_std(r.sensitivity_mean, r.sensitivity_std),
            mean_std(r.specificity_mean, r.specificity_std),
            "—" if pd.isna(r.epochs_mean) else f"{r.epochs_mean:.1f}",
            formats.duration(r.wall_time_s),
        ]
        rows.append(tuple(row))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    best = "mean external AUC" if df.attrs.get("ranked_by") == "ext_auc_mean" else "mean AUC"
    lines.append(
        f"★ best {best} · vs ref: p of the paired test against the reference setting (paired t "
        "over seeds; DeLong on the shared test images for one seed), ▲ better / ▼ worse only "
        f"when p < {ALPHA}"
    )
    for s in df.attrs.get("skipped", []):
        lines.append(f"skipped {setting_label(s['setting'])}: {s['reason']}")
    return "\n".join(lines)
