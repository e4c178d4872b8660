"""Leaderboard (home): every run with its status, suite, key config and test metrics.

Filter by status, suite, date, tags and notes and an expression over any column (archived runs
only when asked); sort by any column; group by
a config field; compare params with AUC in parallel coordinates and any two columns in a
scatter. The table re-reads the store every few seconds while runs are queued or training,
and every ten otherwise, so that runs launched elsewhere appear.
"""

from datetime import date

import pandas as pd
import streamlit as st

from dashboard import charts, filters, manage, pretraining, tables, ui
from db import RUN_STATUSES
from pipeline import formats

st.title("Leaderboard")
store = ui.store()
if deleted := st.session_state.pop(manage.DELETED, None):
    st.success(deleted, icon=":material/delete:")


def load() -> pd.DataFrame:
    """Every run as a leaderboard row, with its external evaluations summarised."""
    suites = {s.id: s.name for s in store.list_suites()}
    return tables.leaderboard(store.list_runs(), suites, store.external_summaries())


def states(frame: pd.DataFrame) -> dict[str, str]:
    """Each run's status by id: when this changes, the whole page is drawn again."""
    return dict(zip(frame["id"], frame["status"], strict=True))


frame = load()
if frame.empty:
    ui.no_runs_yet()

    @st.fragment(run_every=ui.IDLE_EVERY_S)
    def first_run() -> None:
        """Wait for a run launched elsewhere (another tab, the command line, a teammate)."""
        if store.list_runs(limit=1):
            st.rerun()
        ui.refresh_button(st.container(), key="lb.refresh")
        ui.worker_panel(store, key="lb.start_worker")

    first_run()
    pretraining.section(store)
    st.stop()

# One dataset at a time, as experiments separate runs in MLflow: runs on other data rank on other
# test images. It opens on the dataset of the newest run; "all datasets" shows every run.
ALL_DATASETS = "all datasets"
scopes = tables.dataset_scopes(frame.sort_values("created", ascending=False))
scope = st.selectbox(
    "Dataset",
    [ALL_DATASETS, *dict.fromkeys(scopes)],
    index=1,
    key="lb.dataset",
    help="a dataset is the folder's name and the identity of its images and labels (the same "
    "files anywhere give the same one); runs still queued go with their folder's name",
)
# The date range needs about 220 px and the toggle's label 160: three filters a row, and the
# toggle beside the expression, keep both whole at 1024 px.
c_status, c_suite, c_date = st.columns([2, 2, 3], vertical_alignment="bottom")
statuses = c_status.multiselect("Status", RUN_STATUSES, key="lb.status", placeholder="any")
suite_names = sorted({s for s in frame["suite"] if s})
suites = c_suite.multiselect("Suite", suite_names, key="lb.suite", placeholder="any")
span = (frame["created"].min().date(), frame["created"].max().date())
if st.session_state.get("lb.dates", span) == st.session_state.get("lb.dates_span"):
    # Left as it was: the range follows the runs, so a run created on a later day shows.
    st.session_state["lb.dates"] = span
st.session_state["lb.dates_span"] = span
st.session_state.setdefault("lb.dates", span)
dates = c_date.date_input("Created between", key="lb.dates")
c_expr, c_archived = st.columns([2, 1], vertical_alignment="bottom")
archived = c_archived.toggle(
    f"Show archived ({int(frame['archived'].sum())})",
    key="lb.archived",
    help="Archived runs are hidden until shown here; restore one on its run page.",
)
expression = c_expr.text_input(
    "Filter expression",
    key="lb.expr",
    placeholder=filters.EXAMPLE,
    help="Columns by name (auc, sensitivity, enhancement, learning_rate, status, …) or any "
    "config field by its dotted name (model.dropout); numbers, quoted text, comparisons, "
    '`in [...]`, and / or / not, + − × ÷. `"baseline" in tags` keeps runs with that tag, '
    '`"lr" in note` those whose note mentions it.',
)


def apply_filters(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the filter widgets keep; a bad expression is reported under its input."""
    if scope != ALL_DATASETS:
        frame = frame[tables.dataset_scopes(frame) == scope]
    if not archived:
        frame = frame[~frame["archived"]]
    if statuses:
        frame = frame[frame["status"].isin(statuses)]
    if suites:
        frame = frame[frame["suite"].isin(suites)]
    if isinstance(dates, tuple) and len(dates) == 2:
        day = frame["created"].dt.tz_convert(None).dt.date
        frame = frame[(day >= dates[0]) & (day <= dates[1])]
    elif isinstance(dates, date):
        frame = frame[frame["created"].dt.tz_convert(None).dt.date == dates]
    return filters.filter_frame(frame, expression)


try:
    shown = apply_filters(frame)
except filters.ExpressionError as err:
    st.error(f"Filter expression: {formats.plain(str(err))}", icon=":material/error:")
    shown = frame.iloc[0:0]

all_columns = [c for c in frame.columns if c not in ("id",)]
with st.expander("Columns and sorting"):
    c_cols, c_sort, c_desc = st.columns([4, 2, 1])
    columns = c_cols.multiselect(
        "Columns",
        all_columns,
        default=[c for c in tables.DEFAULT_COLUMNS if c in frame.columns],
        key="lb.columns",
    )
    sort_by = c_sort.selectbox(
        "Sort by", all_columns, index=all_columns.index("auc"), key="lb.sort"
    )
    descending = c_desc.toggle("Descending", value=True, key="lb.desc")

LOSO_HELP = (
    "leave-one-source-out (`python -m pipeline loso RUN`): the run's recipe trained without each "
    "of its sources in turn and read on the one left out, at the threshold chosen on validation"
)
COLUMN_CONFIG = {
    "name": st.column_config.TextColumn("name", width="medium", pinned=True),
    "auc": st.column_config.NumberColumn("AUC", format="%.3f", help="test AUC"),
    "auc_ci": st.column_config.TextColumn("AUC 95% CI"),
    "sensitivity": st.column_config.NumberColumn(
        "sensitivity", format="%.3f", help="at the threshold chosen on validation"
    ),
    "specificity": st.column_config.NumberColumn(
        "specificity", format="%.3f", help="at the threshold chosen on validation"
    ),
    "f1": st.column_config.NumberColumn("F1", format="%.3f"),
    "accuracy": st.column_config.NumberColumn("accuracy", format="%.3f"),
    "precision": st.column_config.NumberColumn("precision", format="%.3f"),
    "threshold": st.column_config.NumberColumn("threshold", format="%.3f"),
    "who_met": st.column_config.CheckboxColumn(
        "WHO", help="sensitivity ≥ 0.90 and specificity ≥ 0.70 on test"
    ),
    "ext_auc_mean": st.column_config.NumberColumn(
        "ext AUC mean", format="%.3f", help="mean AUC over the run's external folders"
    ),
    "ext_auc_worst": st.column_config.NumberColumn(
        "ext AUC worst", format="%.3f", help="lowest AUC over the run's external folders"
    ),
    "ext_sens_mean": st.column_config.NumberColumn(
        "ext sens mean",
        format="%.3f",
        help="mean sensitivity on external folders, at the threshold chosen on validation",
    ),
    "ext_sens_worst": st.column_config.NumberColumn(
        "ext sens worst",
        format="%.3f",
        help="lowest sensitivity on external folders, at the threshold chosen on validation",
    ),
    "loso_auc_mean": st.column_config.NumberColumn(
        "unseen-hospital AUC mean", format="%.3f", help=LOSO_HELP
    ),
    "loso_auc_worst": st.column_config.NumberColumn(
        "unseen-hospital AUC worst", format="%.3f", help=LOSO_HELP
    ),
    "loso_sens_mean": st.column_config.NumberColumn(
        "unseen-hospital sens. mean", format="%.3f", help=LOSO_HELP
    ),
    "loso_sens_worst": st.column_config.NumberColumn(
        "unseen-hospital sens. worst", format="%.3f", help=LOSO_HELP
    ),
    "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
    "tags": st.column_config.ListColumn("tags", help='filter with "baseline" in tags'),
    "note": st.column_config.TextColumn("note", width="medium"),
    "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
    "learning_rate": st.column_config.NumberColumn("learning rate", format="%.0e"),
}

busy = ui.busy(store, frame["status"])
# The page has just read the store: the table reads it again only on the fragment's own reruns.
unread = [frame]


@st.fragment(run_every=ui.every(busy))
def run_table() -> None:
    """The table and the workers, re-read from the store every few seconds (faster while runs
    are queued or training). A run that appears, changes status or is cancelled (here, in
    another tab, from the command line) redraws the whole page: counts, filters, charts."""
    current = unread.pop() if unread else load()
    if states(current) != states(frame) or ui.busy(store, current["status"]) != busy:
        st.rerun()
    try:
        rows = apply_filters(current)
    except filters.ExpressionError:
        rows = current.iloc[0:0]
    rows = rows.sort_values(sort_by, ascending=not descending, na_position="last", kind="stable")
    counts = rows["status"].value_counts()
    st.caption(
        f"{len(rows)} of {len(current)} runs · "
        + " · ".join(f"{counts[s]} {s}" for s in RUN_STATUSES if s in counts)
        + f" · refreshes every {ui.every(busy):g} s"
    )
    selection = st.dataframe(
        rows.set_index("id")[[c for c in columns if c in rows.columns]],
        column_config=COLUMN_CONFIG,
        on_select="rerun",
        selection_mode="multi-row",
        key="lb.table",
        height=min(38 + 35 * len(rows), 560),
    )
    picked = [rows["id"].iloc[i] for i in selection.selection.rows if i < len(rows)]
    actions = st.container(horizontal=True, vertical_alignment="center")
    if actions.button(
        "Open run", disabled=len(picked) != 1, key="lb.open", icon=":material/monitoring:"
    ):
        st.switch_page(ui.RUN, query_params={"run": picked[0]})
    if actions.button(
        "Compare",
        disabled=not 2 <= len(picked) <= 6,
        key="lb.compare",
        icon=":material/compare_arrows:",
    ):
        st.switch_page(ui.COMPARE, query_params={"runs": ",".join(picked)})
    ui.refresh_button(actions, key="lb.refresh")
    actions.caption("Tick rows to open one run or compare 2–6 runs.")
    ui.worker_panel(store, key="lb.start_worker")


run_table()

st.subheader("Group by a config field")
groupable = ["suite", "status", *tables.config_columns(frame)]
by = st.selectbox("Group by", groupable, index=None, key="lb.group", placeholder="no grouping")
if by and shown.empty:
    st.info("No run is left by the filters above to group.")
elif by:
    summary = tables.group_summary(shown, by)
    st.dataframe(
        summary[[by, "runs", "succeeded", *tables.METRICS[:5]]],
        hide_index=True,
        key="lb.group_table",
    )

st.subheader("Charts")
done = shown[shown["status"] == "succeeded"]
if done.empty:
    st.info("Charts appear when the filtered runs include succeeded ones.")
    pretraining.section(store)
    st.stop()
st.markdown("**Parallel coordinates**: each line is a run, from its params to a metric")
params = tables.config_columns(done)


def default_axes() -> list[str]:
    """The params that differ between the charted runs, four at most; when the runs all come
    from one suite, every factor of the suite that differs comes first, however many."""
    varied = [p for p in params if done[p].astype(str).nunique() > 1]
    factors: list[str] = []
    if done["suite_id"].nunique() == 1 and done["suite_id"].iloc[0]:
        spec = store.get_suite(done["suite_id"].iloc[0]).spec
        short = {dotted: name for name, dotted in tables.KEY_CONFIG.items()}
        named = [short.get(f, f) for f in spec.get("varied_fields", [])]
        factors = [p for p in named if p in varied]
    rest = [p for p in varied if p not in factors]
    return factors + rest[: max(0, 4 - len(factors))] or params[1:3]


# The box is set from the session state, not from `default`: a widget applies a changed default
# only in the browser, so the chart would draw the previous axes until the next rerun. When the
# filters change which params differ, the axes start again from the new default.
axes = default_axes()
if st.session_state.get("lb.parcoords_default") != axes or "lb.parcoords" not in st.session_state:
    st.session_state["lb.parcoords"] = axes
    st.session_state["lb.parcoords_default"] = axes
c_params, c_metric = st.columns([4, 1])
chosen = c_params.multiselect("Params", params, key="lb.parcoords")
metric = c_metric.selectbox("Metric", [*tables.METRICS[:5], *tables.EXTERNAL], key="lb.parmetric")
if chosen:
    st.plotly_chart(charts.parallel_coordinates(done, chosen, metric), key="lb.parfig")

st.markdown("**Scatter** of any two columns, one point per run")
plottable = [
    c for c in frame.columns if c not in ("id", "error", "auc_ci", "progress", "tags", "note")
]
cx, cy, cc = st.columns(3)
x = cx.selectbox("x", plottable, index=plottable.index("specificity"), key="lb.x")
y = cy.selectbox("y", plottable, index=plottable.index("sensitivity"), key="lb.y")
colour = cc.selectbox("colour", ["status", "suite", *tables.config_columns(frame)], key="lb.colour")
st.plotly_chart(charts.scatter(shown, x, y, colour), key="lb.scatterfig")

pretraining.section(store)
