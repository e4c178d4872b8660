"""Run management beyond the store's rows: deleting a run with its files, a suite's progress.

The store refuses to delete a run that is queued, running or served (:mod:`db.manage`); here
the rows go first, then the run's artifacts folder and its log, so a refused delete leaves
every file in place.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from db import Run, RunStore
from pipeline import paths

FINISHED = ("succeeded", "failed", "cancelled")


def delete_run(store: RunStore, run_id: str) -> tuple[Run, list[Path]]:
    """Delete the run's rows, then its artifacts folder and log; returns it and what was removed.

    ``run_id`` may be a unique prefix. A folder is removed only when it is named after the
    run (``runs/<id>``), so a wrong path in the store can never take another folder with it.
    Raises StoreError (nothing deleted) for a run that is queued, running or served.
    """
    run = store.discard_run(store.get_run(run_id).id)
    candidates = [paths.run_log(run.id)]
    if run.artifacts_dir and Path(run.artifacts_dir).name == run.id:
        candidates.append(Path(run.artifacts_dir))
    removed = []
    for path in candidates:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return run, removed


@dataclass(frozen=True)
class SuiteProgress:
    """How far a suite is: runs per state and, once a run finished, the time left.

    ``seconds_left`` assumes every run takes as long as the succeeded ones did on average and
    that the suite keeps as many runs going at once as it has running now (at least one);
    None until a run has succeeded or when nothing is left to do.
    """

    total: int
    done: int
    running: int
    queued: int
    succeeded: int
    failed: int
    cancelled: int
    seconds_left: float | None

    @property
    def finished(self) -> bool:
        """True when no run of the suite is queued or running."""
        return self.running == 0 and self.queued == 0


def suite_progress(runs: list[Run], now: datetime | None = None) -> SuiteProgress:
    """The progress of a suite made of ``runs`` (see :class:`SuiteProgress`)."""
    now = now or datetime.now(UTC)
    count = {status: sum(r.status == status for r in runs) for status in (*FINISHED, "running")}
    queued = sum(r.status == "queued" for r in runs)
    durations = [r.duration_s for r in runs if r.status == "succeeded" and r.duration_s]
    seconds_left = None
    if durations and (queued or count["running"]):
        mean = sum(durations) / len(durations)
        running_left = sum(
            max(mean - (now - r.started_at).total_seconds(), 0.0)
            for r in runs
            if r.status == "running" and r.started_at is not None
        )
        seconds_left = (queued * mean + running_left) / max(count["running"], 1)
    return SuiteProgress(
        total=len(runs),
        done=sum(count[s] for s in FINISHED),
        running=count["running"],
        queued=queued,
        succeeded=count["succeeded"],
        failed=count["failed"],
        cancelled=count["cancelled"],
        seconds_left=seconds_left,
    )
