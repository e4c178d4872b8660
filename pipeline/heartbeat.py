"""Heartbeats from a daemon thread: how a training run or an evaluation job says it is alive."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError


@contextmanager
def beating(beat: Callable[[], None], every_s: float, name: str) -> Iterator[None]:
    """Call ``beat`` from a daemon thread every ``every_s`` seconds for as long as the block runs.

    A database hiccup is reported on stderr (naming ``name``) and the next beat tried; a job is
    only reaped if the beats stay away for the whole stale period.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                beat()
            except SQLAlchemyError as err:
                print(f"heartbeat of {name} failed, retrying: {err}", file=sys.stderr)

    thread = threading.Thread(target=loop, name=f"heartbeat {name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
