"""Group-aware, stratified, seeded splits: no patient appears on both sides, the positive rate is kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    """Row positions of the train, validation and test parts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def _one_fold(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of about ``fraction`` of the groups (one fold of ``round(1 / fraction)``) and the rest, stratified.

    Systematic sampling over the groups ordered by their positive count, then their size, then a seeded random key:
    every ``n``-th group from a seeded offset is held out, so the held part gets its share of groups of every
    positive count and size (the class ratio and the row fraction follow), in O(rows log rows) (scikit-learn's
    StratifiedGroupKFold is a Python loop over groups: 52 s for 50k rows)."""
    n_splits = max(2, round(1 / fraction))
    rng = np.random.default_rng(seed)
    names, inverse = np.unique(groups, return_inverse=True)
    positives = np.bincount(inverse, weights=np.asarray(y, dtype=float), minlength=len(names))  # 0/1 target
    sizes = np.bincount(inverse, minlength=len(names))
    order = np.lexsort((rng.random(len(names)), sizes, positives))
    held_groups = np.zeros(len(names), dtype=bool)
    held_groups[order[rng.integers(n_splits) :: n_splits]] = True
    held = held_groups[inverse]
    return np.flatnonzero(~held), np.flatnonzero(held)


def group_split(
    frame: pd.DataFrame, target: str, group: str, test_size: float, validation_size: float, seed: int
) -> Split:
    """Split rows into train/validation/test by ``group`` (the spec's entity), stratified on ``target``."""
    if not 0 < test_size < 1 or not 0 < validation_size < 1 or test_size + validation_size >= 1:
        raise ValueError(f"invalid split sizes: test={test_size}, validation={validation_size}")
    y = frame[target].to_numpy()
    groups = frame[group].to_numpy()
    rest, test = _one_fold(y, groups, test_size, seed)
    inner = validation_size / (1 - test_size)
    train_pos, val_pos = _one_fold(y[rest], groups[rest], inner, seed + 1)
    return Split(train=np.sort(rest[train_pos]), validation=np.sort(rest[val_pos]), test=np.sort(test))
