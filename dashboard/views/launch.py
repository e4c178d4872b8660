"""Launch: queue one run (every config field in a form) or a preset experiment suite, and
watch the queue and the workers that drain it. Launching only enqueues; workers train."""

import json
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import forms, pretraining, tables, ui
from db import RunNotFound, StoreError
from pipeline.config import PRESETS, ConfigError, absolute_paths, override, parse_overrides, preset
from pipeline.data import catalog
from pipeline.experiments.plan import enqueue, expand, missing_folders
from pipeline.experiments.spec import MODES, setting_label
from pipeline.experiments.suites import SUITES

st.title("Launch")
store = ui.store()
datasets = ui.known_datasets(store)

flash = st.session_state.pop("launch.flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")


def folder_problems(values: dict[str, Any]) -> list[str]:
    """Why the form's folders cannot be used, found by the scan a worker would run: each
    dataset folder (``data.path``) and each external folder (which may hold one class)."""
    problems = [f"data.path: {p}" for p in dataset_problems(values["data.path"])]
    for folder in values["data.external"] or ():
        problem = ui.dataset_problem(folder, one_class=True)
        if problem:
            problems.append(f"data.external: {problem}")
    return problems


def dataset_problems(paths: str | list[str]) -> list[str]:
    """:func:`ui.dataset_problem` for one dataset folder or each of several."""
    folders = [paths] if isinstance(paths, str) else paths or [""]
    return [p for folder in folders if (p := ui.dataset_problem(folder))]


def use_found(picker: str, target: str) -> None:
    """Put the dataset picked in ``picker`` into the ``target`` text area, in view, and clear
    the picker, so that what the text area shows is what will be queued."""
    st.session_state[target] = st.session_state[picker]
    st.session_state[picker] = None


def dataset_picker(container: DeltaGenerator, target: str, field: str, *, key: str) -> None:
    """A picker of the datasets found whose choice replaces the folders in the text area
    ``target`` (labelled ``field``)."""
    container.selectbox(
        "Use a dataset found",
        datasets,
        index=None,
        format_func=ui.folder_label,
        key=key,
        placeholder="choose one" if datasets else "none found",
        help=f"puts the folder in {field}, replacing what is there; type more folders there, "
        "one per line",
        on_change=use_found,
        args=(key, target),
        disabled=not datasets,
    )


tab_run, tab_suite = st.tabs(["One run", "Experiment suite"])

with tab_run:
    bases: dict[str, dict[str, Any]] = {}
    source = st.query_params.get("from")
    if source:
        try:
            run = store.get_run(source)
            bases[f"run {run.name} · {run.id[:6]} (re-launch with changes)"] = run.config
        except RunNotFound as err:
            st.error(f"Cannot re-launch: {err}")
    # A preset's sources are looked for under the data roots (screening names three).
    roots = catalog.data_roots()
    for name, (why, _) in PRESETS.items():
        config = preset(name).model_dump(mode="json")
        found = absolute_paths(list(preset(name).data.sources), roots)
        if all(Path(p).is_dir() for p in found):
            config["data"]["path"] = found[0] if len(found) == 1 else found
        elif datasets:
            config["data"]["path"] = datasets[0]
        bases[f"preset {name}: {why}"] = config
    c_base, c_found = st.columns([3, 2])
    base = c_base.selectbox("Start from", list(bases), key="launch.base")
    if st.session_state.get("launch.loaded") != base or not forms.is_loaded():
        forms.load(bases[base])
        st.session_state["launch.loaded"] = base
    dataset_picker(c_found, forms.PREFIX + "data.path", "path", key="launch.found")
    st.caption(ui.data_roots_note())

    config = forms.render(
        check=folder_problems, choices={"model.init": pretraining.encoder_choices(store)}
    )
    c_seeds, c_go = st.columns([1, 3], vertical_alignment="bottom")
    repeats = c_seeds.number_input(
        "Seeds",
        min_value=1,
        max_value=50,
        value=1,
        key="launch.repeats",
        help="one run per seed: seed, seed + 1, …",
    )
    planned = []
    if config is not None:
        try:
            planned = [
                override(
                    config,
                    {
                        "seed": config.seed + i,
                        "name": config.name if repeats == 1 else f"{config.name} · seed {i}",
                        "data.path": absolute_paths(config.data.path, roots),
                        "data.external": absolute_paths(config.data.external, roots),
                    },
                )
                for i in range(repeats)
            ]
        except ConfigError as err:
            st.error("\n\n".join(err.problems))
    label = f"Queue {len(planned)} run{'s' if len(planned) != 1 else ''}"
    if c_go.button(label, type="primary", disabled=not planned, key="launch.enqueue"):
        ids = [store.create_run(json.loads(c.to_json()), name=c.name).id for c in planned]
        st.session_state["launch.flash"] = f"Queued {len(ids)} run(s): {', '.join(ids)}"
        st.rerun()
    if config is None:
        st.caption("Fix the fields marked above to queue runs.")

with tab_suite:
    names = list(SUITES)
    suite_name = st.selectbox(
        "Suite",
        names,
        format_func=lambda n: f"{names.index(n) + 1} · {n}",
        key="suite.name",
    )
    spec = SUITES[suite_name]
    st.caption(spec.question)
    c_data, c_seeds, c_cap, c_mode = st.columns([3, 1, 1, 1.4])
    st.session_state.setdefault("suite.data", datasets[0] if datasets else "data/phantoms")
    dataset_picker(c_data, "suite.data", "Dataset folders", key="suite.found")
    data_paths = forms.folder_lines(
        c_data.text_area(
            "Dataset folders, one per line",
            key="suite.data",
            height=68,
            help="several folders train together, each image keeping its source; "
            "leave_one_source_out holds each out in turn",
        )
    )
    data_error = dataset_problems(data_paths)
    if data_error:
        c_data.error("\n\n".join(data_error), icon=":material/error:")
    seeds = c_seeds.number_input("Seeds", min_value=1, max_value=20, value=1, key="suite.seeds")
    cap = c_cap.number_input(
        "Run cap",
        min_value=1,
        value=None,
        step=1,
        key="suite.cap",
        placeholder="none",
        help="at most this many settings (a seeded sample), before seeds multiply",
    )
    mode = c_mode.selectbox(
        "Mode",
        [None, *MODES],
        format_func=lambda m: f"suite's own ({spec.mode})" if m is None else m,
        key="suite.mode",
    )
    overrides_text = st.text_area(
        "Overrides for every run (FIELD=VALUE per line)",
        key="suite.overrides",
        placeholder="train.epochs=5\ndata.image_size=64",
        height=90,
    )
    overrides: dict[str, Any] = {}
    problems = []
    try:
        overrides = parse_overrides(overrides_text.splitlines())
    except ConfigError as err:
        problems = err.problems
    plan = None
    if not problems:
        try:
            plan = expand(
                spec,
                data_path=absolute_paths(data_paths),
                seeds=seeds,
                max_runs=cap,
                mode=mode,
                overrides=overrides,
            )
        except ConfigError as err:
            problems = err.problems
        else:
            problems = missing_folders(plan)
            plan = None if problems else plan
    if problems:
        st.error("\n\n".join(problems), icon=":material/error:")
    if plan is not None:
        settings = pd.DataFrame(
            [{"setting": p.label, "seed": p.seed, "run name": p.config.name} for p in plan]
        )
        st.info(
            f"{len(plan)} runs will be queued: {settings['setting'].nunique()} settings × "
            f"{seeds} seed{'s' if seeds != 1 else ''}."
        )
        with st.expander("Planned runs"):
            st.dataframe(settings, hide_index=True, key="suite.plan")
            for s in plan.skipped:
                st.caption(f"skipped {setting_label(s.setting)}: {s.reason}")
    ready = plan is not None and not data_error
    if st.button(
        f"Queue suite ({len(plan) if plan else 0} runs)",
        type="primary",
        disabled=not ready,
        key="suite.enqueue",
    ):
        suite, queued = enqueue(store, spec, plan)
        st.session_state["launch.flash"] = (
            f"Queued suite {suite.name} ({suite.id}) with {len(queued)} runs"
        )
        st.rerun()

st.divider()
st.subheader("Queue and workers")
busy = ui.busy(store, (r.status for r in ui.active_runs(store)))


@st.fragment(run_every=ui.every(busy))
def queue() -> None:
    """Queued and running runs with cancel buttons, and the workers. Re-read every few seconds
    while anything is queued, running or being stopped, and every :data:`ui.IDLE_EVERY_S`
    otherwise, so that a run launched elsewhere appears."""
    current = ui.active_runs(store)
    if ui.busy(store, (r.status for r in current)) != busy:
        st.rerun()  # the whole page, to refresh at the other pace
    bar = st.container(horizontal=True, vertical_alignment="center")
    if current:
        bar.caption(f"{len(current)} in the queue · refreshes every {ui.every(busy):g} s")
    else:
        bar.caption("The queue is empty.")
    ui.refresh_button(bar, key="launch.refresh")
    for run in current:
        c_name, c_state, c_button = st.columns([4, 2, 1], vertical_alignment="center")
        c_name.page_link(ui.RUN, label=ui.run_label(run), query_params={"run": run.id})
        c_state.caption(tables.progress(run))
        if c_button.button("Cancel", key=f"cancel.{run.id}", icon=":material/cancel:"):
            try:
                store.cancel_run(run.id)
            except StoreError as err:
                st.error(str(err))
            st.rerun(scope="fragment")
    ui.worker_panel(store, key="launch.start_worker")


queue()
