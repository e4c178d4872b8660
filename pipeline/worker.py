"""The queue worker: claims queued runs from the store, trains them, records the outcome.

Launching a run or a suite only enqueues it; ``python -m pipeline worker`` does the training.
Several workers, on one machine or many, may share a store: a run is claimed atomically, so it
is trained exactly once. While training, a background thread heart-beats (see pipeline.train);
a run whose worker died (killed, machine lost) stops heart-beating, and the next worker to look
marks it failed — or re-queues it, with ``requeue``. Each run's output (stdout and stderr,
TensorFlow's included) goes to its log: ``runs/<id>/train.log`` once it succeeded, else
``runs/logs/<id>.log``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from db import Run, RunStore
from pipeline import preprocess
from pipeline.config import make_config

LOG_NAME = "train.log"


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker behaves; the defaults suit a long-lived worker on a shared store."""

    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    once: bool = False  # drain the queue, then exit
    max_runs: int | None = None  # exit after this many runs
    heartbeat_s: float = 10.0
    stale_after_s: float = 120.0  # a running run without a heartbeat this long is dead
    requeue: bool = False  # re-queue dead runs instead of failing them
    poll_s: float = 5.0  # idle wait between looks at an empty queue


def log_path(run: Run) -> Path:
    """Where the run's training output is: with its artifacts once it succeeded."""
    if run.artifacts_dir and (Path(run.artifacts_dir) / LOG_NAME).exists():
        return Path(run.artifacts_dir) / LOG_NAME
    return preprocess.runs_dir() / "logs" / f"{run.id}.log"


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's output to ``path``: file descriptors 1 and 2 (TensorFlow's C++ logs)
    and Python's sys.stdout / sys.stderr, which a host such as pytest may have replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with redirect_stdout(log), redirect_stderr(log):
                yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def execute(store: RunStore, run: Run, options: WorkerOptions) -> Run:
    """Train one claimed run with its output logged; returns the run as stored afterwards."""
    from pipeline import train

    log = preprocess.runs_dir() / "logs" / f"{run.id}.log"
    with _output_to(log):
        print(f"run {run.id} ({run.name}) on worker {options.name}", flush=True)
        try:
            train.run(
                make_config(run.config),
                store,
                run_id=run.id,
                progress=True,
                heartbeat_s=options.heartbeat_s,
            )
        except train.RunCancelled:
            print(f"run {run.id} cancelled", flush=True)
        except Exception:
            # train.run stores its own failures; an error before it started (an invalid stored
            # config) must not leave the run 'running' until it is reaped as a dead worker's.
            traceback.print_exc()
            if store.get_run(run.id).status == "running":
                store.fail_run(run.id, traceback.format_exc())
            print(f"run {run.id} failed", flush=True)
    done = store.get_run(run.id)
    if done.artifacts_dir:
        shutil.move(log, Path(done.artifacts_dir) / LOG_NAME)
    return done


class _Presence:
    """Heart-beats the worker's own row from a daemon thread, so that the dashboard can tell a
    live worker (idle or training) from a dead one; the current run is reported with it."""

    def __init__(self, store: RunStore, name: str, every_s: float) -> None:
        self.store, self.name, self.every_s = store, name, every_s
        self.current_run: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"worker-{name}", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.store.worker_alive(self.name, self.current_run)
            except SQLAlchemyError as err:
                print(f"worker heartbeat failed, retrying: {err}", file=sys.stderr)
            if self._stop.wait(self.every_s):
                return

    def set_run(self, run_id: str | None) -> None:
        self.current_run = run_id
        self.store.worker_alive(self.name, run_id)

    def __enter__(self) -> _Presence:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.store.worker_stopped(self.name)


def work(store: RunStore, options: WorkerOptions) -> list[Run]:
    """Claim and train queued runs until the queue is empty (``once``) or ``max_runs`` ran.

    Before each claim, runs whose worker died are failed or re-queued. The worker heart-beats
    its own presence in the store while it lives. Returns the runs this worker executed, as
    stored when each ended.
    """
    executed: list[Run] = []
    with _Presence(store, options.name, options.heartbeat_s) as presence:
        while options.max_runs is None or len(executed) < options.max_runs:
            for reaped in store.reap_stale(options.stale_after_s, requeue=options.requeue):
                print(f"run {reaped.id}: its worker died; now {reaped.status}", flush=True)
            run = store.claim_next(options.name)
            if run is None:
                if options.once:
                    break
                time.sleep(options.poll_s)
                continue
            print(f"worker {options.name}: training run {run.id} ({run.name})", flush=True)
            presence.set_run(run.id)
            done = execute(store, run, options)
            presence.set_run(None)
            print(f"worker {options.name}: run {done.id} {done.status}", flush=True)
            executed.append(done)
    return executed
