"""Progress bars for a terminal, and a few plain lines for a log file.

In a terminal a tqdm bar redraws itself in place. Written to a file — a worker's run log, read on
the dashboard's Run page — the same bar is dozens of ``\\r`` frames per second in one endless
line. :func:`bar` gives tqdm's bar where standard error is a terminal, and otherwise one line per
redraw, drawn at most every :data:`LOG_EVERY_S` seconds (and once at the end), so a log reads
"preprocess: 40% 380/929 …" a few times, not as a wall of frames.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

LOG_EVERY_S = 30.0


class _Lines(io.TextIOBase):
    """A stream for tqdm that writes each frame it draws as a line of its own."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        for frame in text.replace("\n", "\r").split("\r"):
            if frame.strip():
                self.stream.write(frame.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Iterable[Any] | None = None, **options: Any) -> tqdm:
    """``tqdm(iterable, **options)`` in a terminal; in a file, a line at most every
    :data:`LOG_EVERY_S` seconds and one at the end."""
    stream = sys.stderr
    if stream is not None and not stream.isatty():
        options = {
            "file": _Lines(stream),
            "mininterval": LOG_EVERY_S,
            "maxinterval": LOG_EVERY_S * 2,
            "ascii": True,
            "ncols": 100,
            **options,
        }
    return tqdm(iterable, **options)
