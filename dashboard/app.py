"""TB X-ray Lab dashboard: ``streamlit run dashboard/app.py``.

The entry point only frames the pages: page config, navigation (one file per page under
``views/``) and a sidebar footer naming the store and its workers. Every page reads the run
store through :mod:`dashboard.ui`; nothing here trains or loads a model. The folder is not
called ``pages/``: Streamlit would then serve a deep link opened first after a restart from
that folder directly (its old multipage mode), skipping this file.
"""

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the project root that holds
# the pipeline and db packages.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import streamlit as st  # noqa: E402

from dashboard import auth, ui  # noqa: E402
from db import StoreError  # noqa: E402
from pipeline import quiet  # noqa: E402

quiet.install()  # pages import TensorFlow when they need it

st.set_page_config(page_title="TB X-ray Lab", page_icon=":material/pulmonology:", layout="wide")
# Before anything else: on a network, only people who log in see or change anything.
auth.gate()

pages = {
    "Runs": [
        st.Page(ui.LEADERBOARD, title="Leaderboard", icon=":material/leaderboard:", default=True),
        st.Page(ui.RUN, title="Run", icon=":material/monitoring:"),
        st.Page(ui.COMPARE, title="Compare", icon=":material/compare_arrows:"),
    ],
    "Build": [
        st.Page(ui.DATASET, title="Dataset", icon=":material/photo_library:"),
        st.Page(ui.LAUNCH, title="Launch", icon=":material/rocket_launch:"),
    ],
    "Ship": [
        st.Page(ui.EXPLAIN, title="Explain", icon=":material/visibility:"),
        st.Page(ui.PUBLISH, title="Publish", icon=":material/publish:"),
    ],
}
page = st.navigation(pages)

try:
    store = ui.store()
except StoreError as err:
    # An older server store, or one newer than this code: say what to run, on every page.
    st.error(f"The run store cannot be opened: {err}")
    st.stop()
with st.sidebar:
    alive = len(ui.alive_workers(store))
    dot = ":green[●]" if alive else "○"
    st.caption(f"{dot} {alive} worker{'' if alive == 1 else 's'} alive  \nstore: `{store.url}`")

page.run()
