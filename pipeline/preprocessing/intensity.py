"""Intensity standardisation (``data.intensity``): the same grey levels for the same anatomy,
whichever machine took the film.

Collections differ in brightness and contrast (on the shared data both external sets are brighter
than tb-cxr, and tb-cxr's TB films have lower contrast than its normals, which a model can learn).
Two standardisations, applied identically in training and serving, after resizing and before
enhancement:

- ``percentile``: clip to the :data:`LOW`..:data:`HIGH` percentiles and stretch them to 0..255;
- ``hist_match``: map the image's grey-level distribution onto a fixed reference distribution
  shipped with the code (``pipeline/preprocessing/reference/intensity.json``, made by
  ``python -m pipeline intensity-reference``; its card says from which images).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np

from pipeline.preprocessing.enhance import contrast_stretch

INTENSITIES: tuple[str, ...] = ("none", "percentile", "hist_match")
LOW, HIGH = 1.0, 99.0
REFERENCE = Path(__file__).parent / "reference" / "intensity.json"
QUANTILES = 256  # the reference is the grey level at 256 evenly spaced quantiles


def percentile(img: np.ndarray) -> np.ndarray:
    """Clip to the 1st..99th percentile and stretch to 0..255 (uint8 H×W in and out)."""
    return contrast_stretch(img, LOW, HIGH)


def reference_quantiles(images: list[np.ndarray]) -> np.ndarray:
    """The mean of each image's grey-level quantiles: float (:data:`QUANTILES`,), increasing."""
    qs = np.linspace(0.0, 1.0, QUANTILES)
    return np.mean([np.quantile(img, qs) for img in images], axis=0)


def write_reference(images: list[np.ndarray], source: str, command: str, path: Path) -> dict:
    """Write the reference distribution of ``images`` with its card (where it came from)."""
    values = reference_quantiles(images)
    card = {
        "what": "mean grey-level quantiles used by data.intensity=hist_match",
        "source": source,
        "images": len(images),
        "made_by": command,
        "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quantiles": [round(float(v), 3) for v in values],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=1))
    return card


@cache
def shipped_reference() -> np.ndarray:
    """The reference quantiles shipped with the code."""
    return np.asarray(json.loads(REFERENCE.read_text())["quantiles"], dtype=np.float64)


def hist_match(img: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Map ``img``'s grey levels so that its quantiles become ``reference``'s (uint8 H×W).

    Each grey level goes to the reference value at that level's mid-rank quantile, so ties stay
    ties and the mapping is monotone: the anatomy keeps its order of brightness.
    """
    reference = shipped_reference() if reference is None else reference
    counts = np.bincount(img.ravel(), minlength=256).astype(np.float64)
    cdf = np.cumsum(counts) / counts.sum()
    mid = cdf - counts / (2 * counts.sum())
    lut = np.interp(mid, np.linspace(0.0, 1.0, len(reference)), reference)
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)[img]


def standardise(img: np.ndarray, mode: str) -> np.ndarray:
    """The ``data.intensity`` step (see the module docstring)."""
    if mode == "none":
        return img
    if mode == "percentile":
        return percentile(img)
    if mode == "hist_match":
        return hist_match(img)
    raise ValueError(f"data.intensity must be one of {INTENSITIES}, got {mode!r}")
