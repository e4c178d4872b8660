"""A queue worker whose runs train nothing, for the queue tests: ``python -m tests.queue_worker``.

Each claimed run heart-beats for ``--seconds`` and then succeeds with placeholder results, so
claims, stops and drains can be tested in seconds; everything else is the real worker.
"""

from __future__ import annotations

import argparse
import time

from db import Run, RunStore
from pipeline.runs.worker import Executor, WorkerOptions, work


def idle_executor(seconds: float) -> Executor:
    """An executor that holds the run for ``seconds`` (heart-beating), then marks it done."""

    def execute(store: RunStore, run: Run, options: WorkerOptions) -> Run:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            store.heartbeat(run.id)
            time.sleep(0.05)
        return store.finish_run(
            run.id,
            metrics={"auc": 0.5},
            artifacts_dir=f"nowhere/{run.id}",
            data_fingerprint="-",
            versions={},
            duration_s=seconds,
        )

    return execute


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    options = WorkerOptions(name=args.name, once=args.once, poll_s=0.1, heartbeat_s=0.5)
    work(RunStore(), options, executor=idle_executor(args.seconds))


if __name__ == "__main__":
    main()
