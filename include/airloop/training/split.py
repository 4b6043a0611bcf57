"""Group-aware, stratified, seeded splits: no patient appears on both sides, the positive rate is kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold


@dataclass(frozen=True)
class Split:
    """Row positions of the train, validation and test parts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def _one_fold(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_splits = max(2, round(1 / fraction))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rest, held = next(folds.split(np.zeros(len(y)), y, groups))
    return rest, held


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


def group_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_folds`` (fit, score) row positions by ``groups``, stratified on ``y``: each row is scored in exactly one
    fold and no group is on both sides of any fold."""
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(np.sort(fit), np.sort(held)) for fit, held in folds.split(np.zeros(len(y)), y, groups)]
