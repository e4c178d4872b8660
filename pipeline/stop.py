"""The signal a worker raises in its own training when it is told to stop."""

from __future__ import annotations


class StopRequested(BaseException):
    """The worker training this run was told to stop (SIGTERM, Ctrl-C).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it.
    ``pipeline.training.train.run`` removes the attempt's folders and records nothing: the worker
    decides whether the run goes back to the queue or fails.
    """
