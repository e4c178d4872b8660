"""The queue worker: claims queued runs from the store, trains them, records the outcome.

It also runs the external evaluations queued from the dashboard's run page, before any run:
an evaluation takes minutes where a run may take hours. An evaluation job is heart-beaten and
reaped like a run, reports images scored as it goes, and logs to ``runs/logs/eval-<id>.log``.

Launching a run or a suite only enqueues it; ``python -m pipeline worker`` does the training.
Several workers, on one machine or many, may share a store: a run is claimed atomically, so it
is trained exactly once. While training, a background thread heart-beats (see
pipeline.training.train); a run whose worker died (killed, machine lost) stops heart-beating, and
the next worker to look marks it failed — or re-queues it, with ``requeue``. Each run's output
(stdout and stderr, TensorFlow's included) goes to its log: ``runs/<id>/train.log`` once it
succeeded, else ``runs/logs/<id>.log``.

A worker told to stop (SIGTERM, Ctrl-C) stops training at the next batch, puts its run back in
the queue (or fails it with "worker stopped", with ``requeue_on_stop`` off), removes its
presence and exits, printing one line. SIGKILL cannot be caught: that run is reaped as above.
Every worker of one store must write to the same runs folder, which the apps read artifacts
from; a worker whose folder differs from a live worker's refuses to start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from db import EvalJob, Run, RunStore, StoreError
from pipeline import formats, paths
from pipeline.config import make_config
from pipeline.heartbeat import beating
from pipeline.stop import StopRequested


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
    requeue_on_stop: bool = True  # told to stop: re-queue the running run (else fail it)


class SharedFolderError(ValueError):
    """This worker's runs folder differs from the one the store's live workers write to."""


class _StopSignals:
    """SIGTERM and SIGINT, turned into a request to stop instead of a traceback.

    While a run executes (``in_run``) the first signal raises
    :class:`pipeline.stop.StopRequested` in the main thread, so training stops at the next
    batch; while idle it only sets ``stopped``, which the worker's loop checks. Further
    signals are ignored: the first one is being honoured. Installed only in the main thread
    (Python allows handlers nowhere else).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.stopped: str | None = None
        self.in_run = False
        self._saved: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.stopped is not None:
            return
        self.stopped = signal.Signals(signum).name
        if self.in_run:
            raise StopRequested(self.stopped)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def log_path(run: Run) -> Path:
    """Where the run's training output is: with its artifacts once it succeeded."""
    if run.artifacts_dir and (Path(run.artifacts_dir) / paths.LOG_NAME).exists():
        return Path(run.artifacts_dir) / paths.LOG_NAME
    return paths.run_log(run.id)


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
    from pipeline.training import callbacks, train

    log = paths.run_log(run.id)
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
        except callbacks.RunCancelled:
            pass  # stored as cancelled by train.run; the closing line says so
        except Exception:
            # train.run stores its own failures; an error before it started (an invalid stored
            # config) must not leave the run 'running' until it is reaped as a dead worker's.
            traceback.print_exc()
            if store.get_run(run.id).status == "running":
                store.fail_run(run.id, traceback.format_exc())
        done = store.get_run(run.id)
        print(closing_line(done), flush=True)
    if done.artifacts_dir:
        shutil.move(log, Path(done.artifacts_dir) / paths.LOG_NAME)
    return done


def closing_line(run: Run) -> str:
    """The last line of a run's log: how it ended and, when it succeeded, its test figures."""
    if run.status == "succeeded":
        return (
            f"run {run.id} succeeded in {formats.duration(run.duration_s)}: test AUC "
            f"{formats.with_interval(run.auc, (run.auc_lo, run.auc_hi))}, sensitivity "
            f"{formats.number(run.sensitivity)} and specificity {formats.number(run.specificity)}"
            f" at the validated threshold {formats.number(run.threshold, 4)}, "
            f"{run.metrics.get('epochs_trained', '—')} epochs"
        )
    if run.status == "failed":
        last = (run.error or "").strip().splitlines()
        return f"run {run.id} failed: {last[-1] if last else 'no error recorded'}"
    return f"run {run.id} {run.status}"


def evaluate(store: RunStore, job: EvalJob, options: WorkerOptions) -> EvalJob:
    """Run one claimed evaluation job with its output logged; returns the job as stored after.

    Whatever stops the evaluation (a bad folder, images shared with the run's data, an
    unreadable model) fails the job with the error's sentence; the traceback is in the log.
    """
    from pipeline.runs.external import evaluate_external

    log = paths.eval_log(job.id)
    with _output_to(log):
        print(f"evaluation {job.id}: run {job.run_id} on {job.dataset_path}", flush=True)
        try:
            with beating(
                lambda: store.heartbeat_eval(job.id), options.heartbeat_s, f"evaluation {job.id}"
            ):
                result = evaluate_external(
                    store,
                    job.run_id,
                    job.dataset_path,
                    progress=True,
                    on_progress=lambda done, total: store.eval_progress(job.id, done, total),
                )
        except StopRequested:
            raise
        except Exception as err:
            traceback.print_exc()
            return store.fail_eval_job(job.id, f"{err or type(err).__name__} (log: {log})")
    return store.finish_eval_job(job.id, result.id)


class _Presence:
    """Heart-beats the worker's own row from a daemon thread, so that the dashboard can tell a
    live worker (idle or training) from a dead one; the current run is reported with it."""

    def __init__(self, store: RunStore, name: str, every_s: float) -> None:
        self.store, self.name, self.every_s = store, name, every_s
        self.runs_dir = str(paths.runs_dir().resolve())
        self.current_run: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"worker-{name}", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.store.worker_alive(self.name, self.current_run, self.runs_dir)
            except SQLAlchemyError as err:
                print(f"worker heartbeat failed, retrying: {err}", file=sys.stderr)
            if self._stop.wait(self.every_s):
                return

    def set_run(self, run_id: str | None) -> None:
        self.current_run = run_id
        self.store.worker_alive(self.name, run_id, self.runs_dir)

    def __enter__(self) -> _Presence:
        self.store.worker_alive(self.name, None, self.runs_dir)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.store.worker_stopped(self.name)


def check_runs_folder(store: RunStore, name: str) -> None:
    """Refuse to work where this worker's runs folder differs from a live worker's.

    A run's artifacts are read (by the apps, ``predict``, ``explain``) from the folder its
    worker wrote them to, so all workers of one store must share one runs folder.
    """
    mine = str(paths.runs_dir().resolve())
    for other in store.workers():
        if other.alive and other.name != name and other.runs_dir and other.runs_dir != mine:
            raise SharedFolderError(
                f"this worker would write runs to {mine}, but worker {other.name}, alive on the "
                f"same store, writes to {other.runs_dir}. Workers sharing a store must share one "
                "runs folder (and the apps must read it): set TBXRAY_RUNS_DIR to a folder every "
                "machine mounts at the same path (README, 'Scaling out')"
            )


Executor = Callable[[RunStore, Run, WorkerOptions], Run]


def work(store: RunStore, options: WorkerOptions, executor: Executor = execute) -> list[Run]:
    """Claim and train queued runs until the queue is empty (``once``) or ``max_runs`` ran.

    Queued evaluation jobs (:func:`evaluate`) go before runs; they are not counted as runs.
    Before each claim, runs and jobs whose worker died are failed or re-queued. The worker
    heart-beats its own presence in the store while it lives. Returns the runs this worker
    executed, as stored when each ended (a run given back on stop included). ``executor``
    trains one claimed run (:func:`execute`; tests pass a stand-in). Raises SharedFolderError
    when a live worker of the store writes to another runs folder.
    """
    check_runs_folder(store, options.name)
    executed: list[Run] = []
    evaluations = 0
    given_back: str | None = None
    with _StopSignals() as stop, _Presence(store, options.name, options.heartbeat_s) as presence:
        while stop.stopped is None and (
            options.max_runs is None or len(executed) < options.max_runs
        ):
            for reaped in store.reap_stale(options.stale_after_s, requeue=options.requeue):
                print(f"run {reaped.id}: its worker died; now {reaped.status}", flush=True)
            for job in store.reap_stale_evals(options.stale_after_s, requeue=options.requeue):
                print(f"evaluation {job.id}: its worker died; now {job.status}", flush=True)
            job = store.claim_next_eval(options.name)
            if job is not None:
                print(f"worker {options.name}: evaluation {job.id} of run {job.run_id}", flush=True)
                given_back = _evaluate_or_release(store, job, options, stop)
                evaluations += 1
                continue
            run = store.claim_next(options.name)
            if run is None:
                if options.once:
                    break
                _idle(options.poll_s, stop)
                continue
            print(f"worker {options.name}: training run {run.id} ({run.name})", flush=True)
            presence.set_run(run.id)
            done, given_back = _execute_or_release(store, run, options, executor, stop)
            presence.set_run(None)
            if given_back is None:
                print(f"worker {options.name}: run {done.id} {done.status}", flush=True)
            executed.append(done)
    if stop.stopped is None:
        plural = "" if evaluations == 1 else "s"
        done_too = f" and {evaluations} evaluation{plural}" if evaluations else ""
        print(f"worker {options.name}: {len(executed)} runs{done_too} executed", flush=True)
    else:
        print(f"worker {options.name}: stopped ({stop.stopped}); {given_back or 'was idle'}")
    return executed


def _idle(seconds: float, stop: _StopSignals) -> None:
    """Wait for the next look at the queue, in short steps so that a stop is noticed at once."""
    deadline = time.monotonic() + seconds
    while stop.stopped is None and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _execute_or_release(
    store: RunStore, run: Run, options: WorkerOptions, executor: Executor, stop: _StopSignals
) -> tuple[Run, str | None]:
    """Execute the run; if the worker is told to stop meanwhile, give the run back.

    Returns the run as stored afterwards, and what became of it when it was given back.
    """
    try:
        stop.in_run = True
        try:
            return executor(store, run, options), None
        finally:
            stop.in_run = False
    except StopRequested:
        try:
            released = store.release_run(
                run.id,
                options.name,
                requeue=options.requeue_on_stop,
                reason=f"worker {options.name} stopped ({stop.stopped}) while training this run",
            )
            verb = "re-queued" if options.requeue_on_stop else "marked failed"
        except StoreError:
            released = store.get_run(run.id)  # it finished or was cancelled meanwhile
            verb = f"already {released.status}"
        return released, f"run {run.id} {verb}"


def _evaluate_or_release(
    store: RunStore, job: EvalJob, options: WorkerOptions, stop: _StopSignals
) -> str | None:
    """Run the evaluation job; if the worker is told to stop meanwhile, give it back.

    Returns what became of the job when it was given back, else None.
    """
    try:
        stop.in_run = True
        try:
            done = evaluate(store, job, options)
        finally:
            stop.in_run = False
    except StopRequested:
        reason = f"worker {options.name} stopped ({stop.stopped}) while evaluating"
        try:
            released = store.release_eval_job(
                job.id, requeue=options.requeue_on_stop, reason=reason
            )
        except StoreError:
            released = store.get_eval_job(job.id)  # it ended or was reaped meanwhile
        return f"evaluation {job.id} now {released.status}"
    print(f"worker {options.name}: evaluation {job.id} {done.status}", flush=True)
    return None
