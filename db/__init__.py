"""The run store: SQLAlchemy 2 tables behind an API that returns frozen dataclasses.

SQLite file ``runs/tbxray.db`` by default; ``TBXRAY_DB_URL`` selects any SQLAlchemy URL.
"""

from __future__ import annotations

from db.models import RUN_STATUSES
from db.store import (
    EPOCH_METRICS,
    Epoch,
    ExternalEval,
    Promotion,
    Run,
    RunNotFound,
    RunStore,
    StoreError,
    Suite,
    Worker,
    default_url,
)

__all__ = [
    "EPOCH_METRICS",
    "RUN_STATUSES",
    "Epoch",
    "ExternalEval",
    "Promotion",
    "Run",
    "RunNotFound",
    "RunStore",
    "StoreError",
    "Suite",
    "Worker",
    "default_url",
]
