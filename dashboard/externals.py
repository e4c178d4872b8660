"""The run page's External evaluations section: the run's evaluations on other hospitals'
folders, and "Evaluate on another folder".

The page never scores an image: the folder is checked by the scan a worker would run, then an
evaluation job is queued (:meth:`db.RunStore.queue_eval`) for a worker, whose progress is shown
until the result joins the table, or the reason it failed is shown instead.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import ui
from db import EvalJob, ExternalEval, ExternalSummary, Run, RunStore
from pipeline import formats, paths
from pipeline.runs import loso

ACTIVE = ("queued", "running")


def _table(run: Run, externals: list[ExternalEval]) -> None:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "dataset": e.dataset_path,
                    "images": e.n_images,
                    "AUC (95% CI)": formats.with_interval(e.auc, (e.auc_lo, e.auc_hi)),
                    "sensitivity": e.sensitivity,
                    "specificity": e.specificity,
                    "F1": e.f1,
                    "accuracy": e.accuracy,
                    "evaluated": e.created_at,
                }
                for e in externals
            ]
        ),
        hide_index=True,
        key="run.externals",
    )
    summary = ExternalSummary.of(run.id, externals)
    st.caption(
        f"Internal test AUC {formats.number(run.auc)} · external AUC mean "
        f"{formats.number(summary.auc_mean)}, "
        f"worst {formats.number(summary.auc_worst)} · external sensitivity worst "
        f"{formats.number(summary.sensitivity_worst)} (newest evaluation per folder, at the "
        "threshold chosen on validation). A folder of one class has no AUC."
    )


def cli_hint(run: Run) -> str:
    """The command that evaluates the run from a terminal, as it works from anywhere: in the
    checkout, on the runs folder this dashboard reads."""
    runs = shlex.quote(str(paths.runs_dir().resolve()))
    return (
        f"cd {shlex.quote(str(ui.ROOT))} && TBXRAY_RUNS_DIR={runs} "
        f"python -m pipeline evaluate {run.id} --data FOLDER"
    )


def _job_line(job: EvalJob) -> None:
    if job.status == "queued":
        st.info(f"Evaluation on {job.dataset_path} is queued for a worker.")
        return
    done, total = job.n_done or 0, job.n_total or 0
    text = (
        f"{job.dataset_path}: {done} of {total} images scored"
        if total
        else (f"{job.dataset_path}: reading the folder")
    )
    st.progress(done / total if total else 0.0, text=f"{text} · worker {job.worker}")


def _trained_on(run: Run) -> list[Path]:
    path = run.config.get("data", {}).get("path", "")
    return [Path(p).resolve() for p in ([path] if isinstance(path, str) else path) if p]


def _problem(run: Run, folder: str) -> str | None:
    """Why the run cannot be evaluated on ``folder``; None when a worker can go ahead."""
    problem = ui.dataset_problem(folder, one_class=True)
    if problem is None and Path(folder).expanduser().resolve() in _trained_on(run):
        problem = (
            "this is the folder the run was trained on; external validation needs another "
            "hospital's images, which the model has never seen"
        )
    return problem


def _use_found() -> None:
    """Put the dataset picked into the folder field, so that the field is what is queued."""
    st.session_state["ext.path"] = st.session_state["ext.found"]
    st.session_state["ext.found"] = None


def _form(store: RunStore, run: Run) -> None:
    trained = _trained_on(run)
    offered = [f for f in ui.known_datasets(store) if Path(f).resolve() not in trained]
    st.markdown("**Evaluate on another folder** — at the run's validated threshold, by a worker")
    c_found, c_path, c_go = st.columns([2, 3, 1], vertical_alignment="bottom")
    c_found.selectbox(
        "Use a dataset found",
        offered,
        index=None,
        format_func=ui.folder_label,
        key="ext.found",
        placeholder="choose one" if offered else "none found",
        on_change=_use_found,
        disabled=not offered,
    )
    folder = c_path.text_input(
        "Folder",
        key="ext.path",
        placeholder="/data/another-hospital (Normal/ and/or Tuberculosis/)",
        help="a folder of one class is accepted: sensitivity or specificity alone, no AUC",
    ).strip()
    problem = _problem(run, folder) if folder else None
    if c_go.button(
        "Evaluate", key="ext.go", icon=":material/play_arrow:", disabled=not folder or bool(problem)
    ):
        job = store.queue_eval(run.id, str(Path(folder).expanduser().resolve()))
        st.session_state["ext.flash"] = f"Evaluation {job.id} on {job.dataset_path} queued."
        st.rerun()
    if problem:
        st.error(f"Cannot evaluate on {folder}: {problem}", icon=":material/error:")
    st.caption(ui.data_roots_note())


def section(store: RunStore, run: Run) -> None:
    """The whole External evaluations section of a succeeded run."""
    flash = st.session_state.pop("ext.flash", None)
    if flash:
        st.success(flash, icon=":material/check_circle:")
    jobs = store.eval_jobs(run.id)
    if any(j.status in ACTIVE for j in jobs):

        @st.fragment(run_every=ui.LIVE_EVERY_S)
        def progress() -> None:
            active = [j for j in store.eval_jobs(run.id) if j.status in ACTIVE]
            if not active:
                st.rerun()  # the whole page, so that the result joins the table
            for job in active:
                _job_line(job)
            if any(j.status == "queued" for j in active):
                ui.worker_panel(store, key="ext.start_worker")

        progress()
    failed = jobs[0] if jobs and jobs[0].status == "failed" else None
    if failed:
        st.error(f"The evaluation on {failed.dataset_path} failed: {failed.error}")
    externals = store.external_evals(run.id)
    if externals:
        _table(run, externals)
    else:
        st.caption(
            "None yet. Train with external folders (`data.external`, `--external FOLDER`), "
            f"evaluate on one below, or from a terminal: `{cli_hint(run)}`"
        )
    _form(store, run)


def loso_section(run: Run) -> None:
    """A multi-source run's figures with each source held out in turn (``pipeline loso``)."""
    figures = run.metrics.get(loso.KEY)
    sources = run.config.get("data", {}).get("path")
    if figures is None:
        if isinstance(sources, list) and len(sources) > 1:
            st.caption(
                f"This run trained on {len(sources)} collections, so none of them is unseen. "
                "Its figure for a new hospital is leave-one-source-out: "
                f"`python -m pipeline loso {run.id}` trains its recipe without each source in "
                "turn and stores the figures here."
            )
        else:
            st.caption(
                "Trained on one collection: its external evaluations above are its figures on "
                "hospitals it did not train on."
            )
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "held out": name,
                    "images": f["n"],
                    "AUC (95% CI)": formats.with_interval(f["auc"], f["auc_ci"]),
                    "sens. (95% CI)": formats.with_interval(f["sensitivity"], f["sensitivity_ci"]),
                    "spec. (95% CI)": formats.with_interval(f["specificity"], f["specificity_ci"]),
                    "fold run": f["run_id"],
                    "encoder saw its films": {True: "yes", False: "no"}.get(
                        f.get("encoder_saw_held_out"), "—"
                    ),
                }
                for name, f in figures["folds"].items()
            ]
        ),
        hide_index=True,
        key="run.loso",
    )
    st.caption(
        f"Unseen-hospital AUC mean {formats.number(figures['auc_mean'])}, worst "
        f"{formats.number(figures['auc_worst'])} · sensitivity worst "
        f"{formats.number(figures['sensitivity_worst'])}. Each row is this run's recipe trained "
        "on the other sources only (same seed) and read on the source it never saw, at the "
        "threshold chosen on its own validation split: the held-out source chose nothing."
        + (
            " Where the pretrained encoder saw the held-out films (not their labels), that "
            "row is not a hospital the model never saw."
            if any(f.get("encoder_saw_held_out") for f in figures["folds"].values())
            else ""
        )
    )
