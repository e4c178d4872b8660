"""Near-duplicate maths, one implementation for the scan, the external-overlap check and the
joining of several sources: perceptual hashes, 32×32 thumbnails and their correlation.

Near-duplicates are found in two steps. Perceptual hashes (pHash, 64 bits) within
:data:`DUP_DISTANCE` bits make a candidate pair; the pair is confirmed when the 32×32 thumbnails
of the two images correlate at :data:`DUP_MIN_CORRELATION` or more.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image

from pipeline.imaging import decode

# pHash alone cannot separate chest X-rays well: they all look alike at 8×8 DCT resolution, so
# at 4 bits it merged 3 pairs of different radiographs in tb-cxr and chained 23 different images
# of nlm-224 into 8 groups (3 of them mixing classes). Measured on tb-cxr + nlm-224 (1,331
# images, 885,000 pairs; tb-cxr's manifest.csv marks which files are the same radiograph):
# - the manifest's one multi-image group (4 copies of a TB image) has pHash distances 0-4 and
#   thumbnail correlations 0.991-1.000; every other pair within 10 bits correlates <= 0.981;
# - resizing 200 of the images to 128-1024 px and re-encoding as JPEG (quality 40-75) moved the
#   hash by at most 4 bits (correlation >= 0.999); a gamma of 0.8 or 1.3 moved it by at most
#   8 bits (correlation >= 0.991). Crops defeat both measures: a 3% border crop is not found.
DUP_DISTANCE = 8
DUP_MIN_CORRELATION = 0.99
THUMB = 32

# Rows of the pairwise-distance matrix computed at once: 1024 × 16k images = 16 MB of uint8;
# and candidate pairs whose thumbnails are compared at once (8192 × 2 × 4 kB = 64 MB).
_CHUNK = 1024
_PAIR_CHUNK = 8192


def phash(gray: np.ndarray) -> str:
    """The 64-bit perceptual hash of a grey image, as 16 hex digits."""
    return str(imagehash.phash(Image.fromarray(gray)))


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """The THUMB×THUMB uint8 thumbnail (area-averaged) whose correlation confirms a pair."""
    return cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def read_thumbnail(path: str | Path) -> np.ndarray:
    """The thumbnail of an image file (raises ImageError or OSError as decoding does)."""
    return thumbnail(decode.read_image(Path(path).read_bytes()))


def hashes(phashes: Sequence[str]) -> np.ndarray:
    """Hex pHashes as uint64, for :func:`close_pairs`."""
    return np.array([int(h, 16) for h in phashes], dtype=np.uint64)


def close_pairs(
    rows: np.ndarray, cols: np.ndarray, max_distance: int = DUP_DISTANCE
) -> Iterator[tuple[int, np.ndarray]]:
    """For each chunk of ``rows`` (uint64 hashes), ``(start, close)``: the boolean matrix of
    which hashes of ``cols`` are within ``max_distance`` bits of ``rows[start:start + chunk]``
    (XOR then a popcount, so 16k images take seconds and little memory)."""
    for start in range(0, len(rows), _CHUNK):
        distance = np.bitwise_count(rows[start : start + _CHUNK, None] ^ cols[None, :])
        yield start, distance <= max_distance


def unit_rows(thumbs: np.ndarray) -> np.ndarray:
    """N thumbnails as mean-centred, unit-length float32 rows: a dot product of two rows is then
    the Pearson correlation, which ignores brightness and contrast changes between copies."""
    flat = thumbs.reshape(len(thumbs), -1)
    centred = flat.astype(np.float32) - flat.mean(axis=1, keepdims=True, dtype=np.float32)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The Pearson correlation of two thumbnails (0 when either is blank)."""
    unit = unit_rows(np.stack([a, b]))
    return float(unit[0] @ unit[1])


def groups(
    phashes: Sequence[str], thumbs: np.ndarray, dup_distance: int = DUP_DISTANCE
) -> np.ndarray:
    """For each image, the index of the first image of its near-duplicate group.

    ``thumbs`` is N×32×32 uint8. Candidate pairs (pHash within ``dup_distance`` bits) come from
    :func:`close_pairs`; confirmed pairs are joined with union-find, so grouping is transitive.
    """
    h = hashes(phashes)
    flat = thumbs.reshape(len(thumbs), -1)
    unit = unit_rows(thumbs)
    parent = np.arange(len(h))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start, close in close_pairs(h, h, dup_distance):
        rows, cols = np.nonzero(close)
        rows += start
        upper = rows < cols  # each pair once, and not an image with itself
        rows, cols = rows[upper], cols[upper]
        for k in range(0, len(rows), _PAIR_CHUNK):
            a, b = rows[k : k + _PAIR_CHUNK], cols[k : k + _PAIR_CHUNK]
            corr = np.einsum("ij,ij->i", unit[a], unit[b])
            # Identical thumbnails also count: blank images have no correlation to measure.
            same = (corr >= DUP_MIN_CORRELATION) | np.all(flat[a] == flat[b], axis=1)
            for i, j in zip(a[same], b[same], strict=True):
                ri, rj = find(int(i)), find(int(j))
                # The smaller index becomes the root, so each group's root is its first record.
                parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(len(h))])
