"""TensorFlow's start-up noise kept out of the terminal and the run logs.

On a machine without a GPU, TensorFlow 2.21 writes from C++ to file descriptor 2, whatever
``TF_CPP_MIN_LOG_LEVEL`` says:

- while it loads, absl's "All log messages before absl::InitializeLog() is called are written to
  STDERR" and INFO lines (oneDNN is on; no CUDA drivers), twice: absl writes everything to
  stderr until it is initialised, before TensorFlow applies the level;
- when it first looks for a GPU, "failed call to cuInit: … UNKNOWN ERROR (303)", an ERROR, which
  only ``TF_CPP_MIN_LOG_LEVEL=3`` would hide, along with every real error.
  ``CUDA_VISIBLE_DEVICES=""`` does not stop it.

:func:`install`, called by every entry point before anything imports TensorFlow, sets
``TF_CPP_MIN_LOG_LEVEL=2`` unless it is set, and makes the first ``import tensorflow``
(wherever it happens: ``keras`` imports it too) load TensorFlow and list its GPUs with file
descriptor 2 sent to a temporary file; every line written there except the known ones in
:data:`NOISE` is then written to file descriptor 2. Other warnings and errors, and everything
after start-up, pass untouched; with ``TF_CPP_MIN_LOG_LEVEL=0`` nothing is filtered.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

# absl's line prefix: severity and date, time, thread id, then "file.cc:line] ".
_ABSL = rb"[IWE]\d{4} [\d:.]+ +\d+ "
NOISE: tuple[re.Pattern[bytes], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
        rb"STDERR$",
        _ABSL + rb"port\.cc:\d+\] oneDNN custom operations are on\.",
        _ABSL + rb"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will "
        rb"not be used\.$",
        # No GPU here (303: no driver; 100: no device); other cuInit failures are real.
        _ABSL + rb"cuda_platform\.cc:\d+\] failed call to cuInit: .*"
        rb"(UNKNOWN ERROR \(303\)|CUDA_ERROR_NO_DEVICE)",
    )
)


def install() -> None:
    """Quiet TensorFlow's start-up in this process (see the module docstring); does nothing
    once TensorFlow is imported, when already installed, or with ``TF_CPP_MIN_LOG_LEVEL=0``."""
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if level == "0" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietStart) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietStart())


def is_noise(line: bytes) -> bool:
    """Whether ``line`` (without its line break) is one of TensorFlow's known start-up lines."""
    return any(pattern.search(line) for pattern in NOISE)


@contextmanager
def noise_filtered() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file meanwhile, then write to it every line that
    is not :func:`is_noise`, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught if not is_noise(line.rstrip(b"\r\n"))]
            os.write(2, b"".join(kept))


class _QuietStart(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, with a loader that runs its start-up in :func:`noise_filtered`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, executing the package and its first GPU lookup quietly."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # TensorFlow's own loader from here on, for anything that asks the module for it.
        module.__loader__ = module.__spec__.loader = self.loader
        with noise_filtered():
            self.loader.exec_module(module)
            # cuInit runs here; listing physical devices still allows memory-growth settings.
            module.config.list_physical_devices("GPU")
