"""Where the project keeps what it writes: run folders, caches and logs.

Every path is relative to ``$TBXRAY_RUNS_DIR`` (default ``./runs``) unless an environment variable
moves it; no other module spells these locations out.
"""

from __future__ import annotations

import os
from pathlib import Path

LOG_NAME = "train.log"


def runs_dir() -> Path:
    """Root of run artifacts (and of the default SQLite store): ``$TBXRAY_RUNS_DIR`` or ./runs."""
    return Path(os.environ.get("TBXRAY_RUNS_DIR", "runs"))


def cache_dir() -> Path:
    """Root of preprocessing caches: ``$TBXRAY_CACHE_DIR`` or <runs_dir>/cache."""
    return Path(os.environ.get("TBXRAY_CACHE_DIR", runs_dir() / "cache"))


def run_dir(run_id: str) -> Path:
    """The folder of a finished run's artifacts."""
    return runs_dir() / run_id


def partial_dir(run_id: str) -> Path:
    """Where a run writes its artifacts while it trains; renamed to :func:`run_dir` at the end,
    so a run that stops half-way never leaves a half-written run folder."""
    return runs_dir() / f".partial-{run_id}"


def run_log(run_id: str) -> Path:
    """The log of a run while it is queued or training (moved beside its artifacts after)."""
    return runs_dir() / "logs" / f"{run_id}.log"


def eval_log(job_id: int) -> Path:
    """The log of a queued external evaluation."""
    return runs_dir() / "logs" / f"eval-{job_id}.log"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this machine: files named after their writer's pid
    (partial caches, the public app's upload folders) are cleaned up once it is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
