"""Stratified train/validation/test splits that keep near-duplicate groups on one side.

The same radiograph resized or re-encoded counts as one *group*; a group straddling train and
test would let a model score on an image it has already seen, so whole groups are assigned.
Splits are saved as JSON with every run (paths relative to the dataset root).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Indices into a dataset index for each part; disjoint, together covering every image."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int

    def part(self, name: str) -> np.ndarray:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def to_json(self, relpaths: list[str], fingerprint: str) -> str:
        """Serialise with paths relative to the dataset root, so the file survives a move."""
        out = {"seed": self.seed, "data_fingerprint": fingerprint}
        for name in SPLIT_NAMES:
            out[name] = [relpaths[i] for i in self.part(name)]
        return json.dumps(out, indent=1)


def stratified_group_split(
    labels: np.ndarray,
    groups: list[str],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    strata: np.ndarray | None = None,
) -> Split:
    """Assign whole groups to train/val/test so each part holds its share of each class.

    Groups are visited in a seeded random order, largest first, and each goes to the part
    furthest below its target for the group's class (a group with any TB image counts as TB).
    With mostly singleton groups this matches the requested fractions to within one image per
    class and part.

    ``strata``: (N,) ints, e.g. the source folder of each image; then each part holds its share
    of every (stratum, class) cell instead of every class (a group spanning strata counts in the
    cell of its first image of the group's class). None, or one stratum for all, gives exactly
    the split made without strata.
    """
    labels = np.asarray(labels)
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    strata = np.zeros(len(labels), dtype=np.int64) if strata is None else np.asarray(strata)
    if len(strata) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(strata)} strata")
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)

    rng = np.random.default_rng(seed)
    keys = list(members)
    order = rng.permutation(len(keys))
    ordered = sorted((keys[i] for i in order), key=lambda g: -len(members[g]))

    fractions = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    cells = Counter(zip(strata.tolist(), labels.tolist(), strict=True))
    filled = {cell: np.zeros(3) for cell in cells}
    assigned: list[list[int]] = [[], [], []]
    for g in ordered:
        idx = members[g]
        first = idx[int(np.argmax(labels[idx]))]  # the group's first image of its class
        cell = (strata[first].item(), int(labels[first]))
        deficit = fractions * cells[cell] - filled[cell]
        part = int(np.argmax(deficit))
        assigned[part].extend(idx)
        filled[cell][part] += len(idx)

    train, val, test = (np.array(sorted(a), dtype=np.int64) for a in assigned)
    return Split(train=train, val=val, test=test, seed=seed)
