"""Run management on the dashboard: archive or delete a run, its tags and note, its files to
download, and a suite's progress. Calls :mod:`db` and :mod:`pipeline.runs.manage`; no TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from dashboard import ui
from db import Run, RunStore, StoreError
from pipeline import formats
from pipeline.runs.manage import delete_run, suite_progress
from pipeline.runs.worker import log_path

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

# What a run's folder offers for download: file name -> (button label, MIME type).
DOWNLOADS: dict[str, tuple[str, str]] = {
    "model.keras": ("Model", "application/octet-stream"),
    "config.json": ("Config", "application/json"),
    "predictions.csv": ("Predictions", "text/csv"),
}
DELETED = "manage.deleted"  # the sentence the leaderboard shows after a delete


def archive_and_delete(store: RunStore, run: Run, bar: DeltaGenerator) -> None:
    """Archive / Restore and Delete buttons in ``bar``; delete asks for a confirmation first.

    A run that cannot be archived or deleted (queued, running, served) gets the sentence why.
    """
    if run.archived_at is not None:
        st.info(
            f"Archived on {run.archived_at:%Y-%m-%d %H:%M} UTC: the leaderboard hides it unless "
            "archived runs are shown.",
            icon=":material/inventory_2:",
        )
        if bar.button("Restore", icon=":material/unarchive:", key="run.restore"):
            store.archive_run(run.id, archived=False)
            st.rerun()
    elif bar.button("Archive", icon=":material/archive:", key="run.archive"):
        _act(lambda: store.archive_run(run.id))
    if bar.button("Delete…", icon=":material/delete:", key="run.delete"):
        why = store.refusal(run.id, "delete")
        if why:
            st.error(why, icon=":material/block:")
        else:
            st.session_state["run.confirm_delete"] = run.id
    if st.session_state.get("run.confirm_delete") == run.id:
        st.warning(
            f"Delete run {run.id} ({run.name}) for good: its results, history and every file in "
            "its folder (model, predictions, log)? Archiving hides it and can be undone.",
            icon=":material/warning:",
        )
        confirm = st.container(horizontal=True)
        if confirm.button("Delete for good", type="primary", key="run.delete_confirm"):
            st.session_state.pop("run.confirm_delete")
            try:
                gone, removed = delete_run(store, run.id)
            except StoreError as err:
                st.error(str(err), icon=":material/block:")
                return
            st.session_state[DELETED] = (
                f"Run {gone.id} ({gone.name}) deleted with {len(removed)} file(s) or folder(s)."
            )
            st.query_params.clear()
            st.switch_page(ui.LEADERBOARD)
        if confirm.button("Keep it", key="run.delete_cancel"):
            st.session_state.pop("run.confirm_delete")
            st.rerun()


def _act(action: Callable[[], object]) -> None:
    """Do ``action`` and redraw the page, or show the store's refusal where it was asked."""
    try:
        action()
    except StoreError as err:
        st.error(str(err), icon=":material/block:")
        return
    st.rerun()


def labels(store: RunStore, run: Run) -> None:
    """The run's tags and note, editable; saved when the form is submitted. The inputs are keyed
    by run, so that picking another run never shows the last one's text."""
    with st.form("run.labels", border=False):
        c_tags, c_note = st.columns([1, 2])
        tags = c_tags.text_input(
            "Tags", ", ".join(run.tags), key=f"run.tags.{run.id}", help="separated by commas"
        )
        note = c_note.text_input("Note", run.note, key=f"run.note.{run.id}")
        if st.form_submit_button("Save tags and note", icon=":material/sell:"):
            try:
                store.set_tags(run.id, tags.split(","))
            except ValueError as err:
                st.error(str(err))
                return
            store.set_note(run.id, note)
            st.rerun()


def downloads(run: Run) -> None:
    """A download button for each of the run's files that exists: model, config, predictions,
    log; a caption when there is none."""
    folder = Path(run.artifacts_dir) if run.artifacts_dir else None
    files = [
        (folder / name, label, mime)
        for name, (label, mime) in DOWNLOADS.items()
        if folder is not None and (folder / name).is_file()
    ]
    log = log_path(run)
    if log.is_file():
        files.append((log, "Log", "text/plain"))
    if not files:
        st.caption("No files to download: the run wrote no artifacts.")
        return
    bar = st.container(horizontal=True)
    for path, label, mime in files:
        bar.download_button(
            f"{label} ({path.name})",
            data=path.read_bytes(),
            file_name=f"{run.id}-{path.name}",
            mime=mime,
            icon=":material/download:",
            key=f"run.download.{path.name}",
        )


def suite_panel(store: RunStore, suite_id: str) -> None:
    """A suite's progress (done / running / queued, time left) and a button to cancel the rest."""
    progress = suite_progress(store.list_runs(suite_id=suite_id))
    left = (
        f" · about {formats.duration(progress.seconds_left)} left"
        if progress.seconds_left is not None
        else ""
    )
    st.progress(
        progress.done / max(progress.total, 1),
        text=f"{progress.done} of {progress.total} done ({progress.succeeded} succeeded, "
        f"{progress.failed} failed, {progress.cancelled} cancelled) · {progress.running} "
        f"running · {progress.queued} queued{left}",
    )
    if not progress.finished and st.button(
        "Cancel the rest of the suite", icon=":material/cancel:", key="suite.cancel"
    ):
        cancelled = store.cancel_suite(suite_id)
        st.toast(f"{len(cancelled)} queued or running runs cancelled")
        st.rerun()
