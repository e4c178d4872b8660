"""The run store: SQLAlchemy 2 tables behind an API that returns frozen dataclasses.

SQLite file ``runs/tbxray.db`` by default; ``TBXRAY_DB_URL`` selects any SQLAlchemy URL.
"""

from __future__ import annotations

from db.engine import default_url, make_engine
from db.errors import RunNotFound, StoreError
from db.migrate import StoreVersionError
from db.models import RUN_STATUSES
from db.records import (
    Calibration,
    Epoch,
    EvalJob,
    ExternalEval,
    ExternalSummary,
    Promotion,
    Run,
    Suite,
    Worker,
)
from db.store import EPOCH_METRICS, RunStore

__all__ = [
    "EPOCH_METRICS",
    "RUN_STATUSES",
    "Calibration",
    "Epoch",
    "EvalJob",
    "ExternalEval",
    "ExternalSummary",
    "Promotion",
    "Run",
    "RunNotFound",
    "RunStore",
    "StoreError",
    "StoreVersionError",
    "Suite",
    "Worker",
    "default_url",
    "make_engine",
]
