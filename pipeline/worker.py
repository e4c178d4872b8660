"""The queue worker: claims queued runs from the store, trains them, records the outcome.

Launching a run or a suite only enqueues it; ``python -m pipeline worker`` does the training.
Several workers, on one machine or many, may share a store: a run is claimed atomically, so it
is trained exactly once. While training, a background thread heart-beats; a run whose worker
died (killed, machine lost) stops heart-beating, and the next worker to look marks it failed —
or re-queues it, with ``requeue``. Each run's output (stdout and stderr, TensorFlow's included)
goes to its log file, kept with its artifacts.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from db import Run, RunStore
from pipeline import preprocess
from pipeline.config import make_config

LOG_NAME = "train.log"


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker behaves; the defaults suit a long-lived worker on a shared store."""

    name: str = f"{socket.gethostname()}:{os.getpid()}"
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
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextmanager
def _heartbeat(store: RunStore, run_id: str, every_s: float) -> Iterator[None]:
    """Heart-beat the run from a daemon thread for as long as the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            store.heartbeat(run_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def execute(store: RunStore, run: Run, options: WorkerOptions) -> Run:
    """Train one claimed run with its output logged; returns the run as stored afterwards."""
    from pipeline import train

    log = preprocess.runs_dir() / "logs" / f"{run.id}.log"
    with _heartbeat(store, run.id, options.heartbeat_s), _output_to(log):
        print(f"run {run.id} ({run.name}) on worker {options.name}", flush=True)
        try:
            train.run(make_config(run.config), store, run_id=run.id, progress=True)
        except train.RunCancelled:
            print(f"run {run.id} cancelled", flush=True)
        except Exception:
            # Already stored as failed with its traceback; the worker goes on to the next run.
            print(f"run {run.id} failed", flush=True)
    done = store.get_run(run.id)
    if done.artifacts_dir:
        shutil.move(log, Path(done.artifacts_dir) / LOG_NAME)
    return done


def work(store: RunStore, options: WorkerOptions) -> list[Run]:
    """Claim and train queued runs until the queue is empty (``once``) or ``max_runs`` ran.

    Before each claim, runs whose worker died are failed or re-queued. Returns the runs this
    worker executed, as stored when each ended.
    """
    executed: list[Run] = []
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
        done = execute(store, run, options)
        print(f"worker {options.name}: run {done.id} {done.status}", flush=True)
        executed.append(done)
    return executed
