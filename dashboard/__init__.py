"""The Streamlit dashboard (``streamlit run dashboard/app.py``): pages under ``views/``, and the
helpers they share — ``ui`` (store, pickers, workers), ``tables`` (leaderboard frames),
``filters`` (the leaderboard's safe filter expressions), ``charts`` (Plotly figures), ``forms``
(the run-config form) and ``imaging`` (dataset image statistics)."""
