"""The model card shown with every verdict: which run, how good it is, its data, its limits."""

from __future__ import annotations

import json
from pathlib import Path

from db import ExternalEval
from gradio_app.service import ServedModel
from pipeline.runs.loso import KEY as LOSO_KEY

DISCLAIMER = (
    "**A research tool, not a diagnosis.** It has not been cleared for clinical use. A verdict "
    "here must never replace a clinician, a radiologist or a microbiological test (sputum "
    "smear, culture, Xpert MTB/RIF)."
)


DEMO_WARNING = (
    "⚠️ **Demonstration model, trained on synthetic images** (computer-drawn phantoms, not "
    "X-rays of people). It shows how the app works; **do not use it on real chest X-rays** — "
    "its verdicts on them mean nothing."
)


def model_card(
    served: ServedModel | None, external: list[ExternalEval], problem: str | None = None
) -> str:
    """Markdown describing the served run, or saying that no model is available yet.

    ``problem``: why the run the store names is not the one served (it failed to load).
    """
    warning = f"> **Note:** {problem}.\n\n" if problem else ""
    if served is None:
        return (
            "### No model is available yet\n\n"
            + warning
            + "The team trains one with `python -m pipeline train --preset baseline` or promotes "
            "a run from the dashboard; this page picks it up by itself.\n\n" + DISCLAIMER
        )
    run, cfg = served.run, served.predictor.config
    m = run.metrics
    lines = [
        f"### Model card — run `{run.id}` ({run.name})",
        "",
        f"> {DEMO_WARNING}\n" if served.synthetic else "",
        warning,
        f"- **Trained** {run.finished_at:%Y-%m-%d} on **{_data_summary(served)}**, at "
        f"{cfg.data.image_size}×{cfg.data.image_size} px, enhancement `{cfg.data.enhancement}`, "
        f"region `{cfg.data.roi}`"
        + (" (the lungs found by the project's own segmenter)." if cfg.data.roi != "full" else "."),
        f"- **Held-out test set of the same "
        f"{'collections' if len(cfg.data.sources) > 1 else 'collection'}** "
        f"({m.get('n', '?')} images, "
        f"{m.get('n_pos', '?')} TB): "
        f"AUC {_ci(run.auc, m.get('auc_ci'))}, sensitivity "
        f"{_ci(run.sensitivity, m.get('sensitivity_ci'))}, specificity "
        f"{_ci(run.specificity, m.get('specificity_ci'))} (95 % bootstrap intervals).",
        f"- **Threshold** {run.threshold:.3f}, chosen on the validation split "
        f"(rule `{cfg.eval.threshold_rule}`) and applied unchanged; the WHO screening target "
        f"(sensitivity ≥ 90 %, specificity ≥ 70 %) is "
        f"{'met' if run.who_met else 'not met'} on that test set, which says little about "
        "X-rays from elsewhere (below).",
    ]
    cal = served.calibration
    if cal is not None:
        lines.append(
            f"- **Threshold used here: {cal.threshold:.3f}, calibrated for {cal.site}** "
            f"({cal.created_at:%Y-%m-%d}, {cal.n_images} labelled X-rays from the site: chosen on "
            f"{cal.details['n_calibration']}, checked on {cal.details['n_check']}): on the check "
            f"part, sensitivity {_ci(cal.sensitivity, [cal.sensitivity_lo, cal.sensitivity_hi])}, "
            f"specificity {_ci(cal.specificity, [cal.specificity_lo, cal.specificity_hi])}."
        )
    if served.predictor.calibrator is not None:
        lines.append(
            f"- **P(TB)** is calibrated ({served.predictor.calibrator.kind} scaling, fitted on "
            "the validation split): among X-rays given 0.3, about 3 in 10 had TB there."
        )
    else:
        lines.append(
            "- **P(TB)** is the network's raw output, not a calibrated probability: compare it "
            "with the threshold, not with 50 %."
        )
    loso = m.get(LOSO_KEY)
    if loso:
        lines += _loso_lines(loso)
    if not external and not loso:
        lines.append(
            "- **On X-rays from other hospitals: not measured.** Nobody has evaluated this model "
            "on a collection it was not trained on; models like it often do much worse there "
            "(AUC 0.55–0.70 is common), so treat its verdicts on your X-rays as untested."
        )
    for ev in external:
        calibration = ev.metrics.get("calibration")
        drift = (
            f"; its P(TB) there is off by {calibration['ece']:.2f} on average (expected "
            "calibration error)"
            if calibration
            else ""
        )
        lines.append(
            f"- **Another collection** ({Path(ev.dataset_path).name}, {ev.n_images} images): "
            f"AUC {_ci(ev.auc, ev.metrics.get('auc_ci'))}, sensitivity {_pct(ev.sensitivity)}, "
            f"specificity {_pct(ev.specificity)}{drift} — expect it to do this much worse on "
            "X-rays from hospitals and machines it has not seen."
        )
    lines += [
        f'- **"Cannot assess"**: an upload must pass image checks (not colour, blank, noise or '
        f"an odd shape) and look like the training X-rays to the model (reference "
        f"{served.reference_note}).",
        "",
        DISCLAIMER,
    ]
    return "\n".join(lines)


def _loso_lines(loso: dict) -> list[str]:
    """The card's lines for a run's recipe with each of its sources held out in turn."""
    folds = "; ".join(
        f"{name} ({f['n']} images): AUC {_ci(f['auc'], f['auc_ci'])}, sensitivity "
        f"{_pct(f['sensitivity'])}, specificity {_pct(f['specificity'])}"
        + (
            " — its pretrained encoder had seen these films, not their labels"
            if f.get("encoder_saw_held_out")
            else ""
        )
        for name, f in loso["folds"].items()
    )
    return [
        f"- **On hospitals it did not train on** (leave-one-source-out: the same recipe trained "
        f"without each collection in turn, read on the one left out at its own validated "
        f"threshold): {folds}. Worst AUC {_ci(loso['auc_worst'], None)}, worst sensitivity "
        f"{_pct(loso['sensitivity_worst'])} — the figure to expect on X-rays from a new hospital."
    ]


def banner(served: ServedModel | None) -> str:
    """The line at the very top of the page: empty, or a warning that the served model is a
    demonstration trained on synthetic images."""
    return f"> {DEMO_WARNING}" if served is not None and served.synthetic else ""


def _data_summary(served: ServedModel) -> str:
    """'tb-cxr (650 training, 93 validation, 186 test images)' from the run's split.json."""
    name = " + ".join(Path(p).name for p in served.predictor.config.data.sources)
    split_file = Path(served.run.artifacts_dir or "") / "split.json"
    if not split_file.is_file():
        return name
    split = json.loads(split_file.read_text())
    counts = ", ".join(
        f"{len(split.get(part, []))} {label}"
        for part, label in (("train", "training"), ("val", "validation"), ("test", "test"))
    )
    return f"{name} ({counts} images)"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _ci(x: float | None, ci: list[float] | None) -> str:
    if x is None:
        return "n/a"
    if not ci or None in ci:
        return f"{x:.3f}"
    return f"{x:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
