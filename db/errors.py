"""The run store's exceptions, shared by the store and its migrations."""

from __future__ import annotations

from collections.abc import Sequence


class StoreError(RuntimeError):
    """The store refused an operation, e.g. starting a run that is not queued."""


class RunNotFound(StoreError):  # noqa: N818 -- the name is part of the public API
    """No run has this id, or an id prefix matches several runs (listed in ``matches``)."""

    def __init__(self, message: str, run_id: str, matches: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.matches = tuple(matches)
