"""Multivariate drift: can a classifier tell the window from the reference sample?

Per-feature statistics compare marginals; they miss a change in how features move together (two counts that used to
rise together no longer do). A domain classifier sees it: a gradient-boosted classifier is trained to tell up to
``SAMPLE_ROWS`` rows of the window from the bounded reference sample that training stored with the version
(``baseline/reference_sample.parquet``, model features of the training rows), and judged by its out-of-fold ROC AUC:
0.5 means nothing tells them apart. The interval is Hanley and McNeil's on those rows. The features it relies on are
those whose permutation lowers its held-out AUC most.

It looks where the model looks: only at the features that hold at least ``importance_floor`` of the model's
importance (every feature when importances are unknown), so many ignored columns moving retrain nothing, as the
per-feature rules intend. Pure computation on frames; the caller reads and writes the artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

SAMPLE_ROWS = 2_000  # rows of each side: the reference sample stored at training, and of the window
FOLDS = 3
MAX_ITER = 30
TOP = 5
SAMPLE_ARTIFACT = "baseline/reference_sample.parquet"


@dataclass(frozen=True)
class MultivariateDrift:
    """The domain classifier's verdict material: its out-of-fold ROC AUC, the interval, and what it relies on."""

    roc_auc: float
    interval: list[float]
    rows_reference: int
    rows_window: int
    columns: list[str]  # the features it was given
    features: list[str]  # the features it relies on, most first (permutation drop of held-out AUC > 0)


def reference_sample(features: pd.DataFrame, rows: int = SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
    """A bounded sample of the training rows' model features, stored with the version."""
    if len(features) <= rows:
        return features.reset_index(drop=True)
    return features.sample(rows, random_state=seed).reset_index(drop=True)


def watched_columns(columns: Sequence[str], shares: Mapping[str, float] | None, floor: float) -> list[str]:
    """The features the classifier is given: those holding at least ``floor`` of the importance (all when unknown;
    the single most important one when none reaches the floor)."""
    if shares is None:
        return list(columns)
    kept = [c for c in columns if shares.get(c, 0.0) >= floor]
    return kept or [max(columns, key=lambda c: shares.get(c, 0.0))]


def _encode(reference: pd.DataFrame, window: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, list[bool]]:
    both = pd.concat([reference[columns], window[columns]], ignore_index=True)
    categorical = []
    for column in columns:
        series = both[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            both[column] = series.astype("float64")
            categorical.append(False)
        else:
            codes, _ = pd.factorize(series.astype("string").fillna("missing"), sort=True)
            # Category codes beyond HistGradientBoosting's 255 bins fold together: rare levels are what they would be.
            both[column] = np.minimum(codes, 254).astype("float64")
            categorical.append(True)
    return both, categorical


def domain_classifier(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    columns: Sequence[str],
    rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> MultivariateDrift | None:
    """Train a classifier to tell ``window`` (up to ``rows`` of it) from ``reference`` on ``columns``.

    Returns None when either side has fewer than 50 rows or no column is shared (nothing to judge).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    from airloop.monitoring.decision import auc_standard_error

    columns = [c for c in columns if c in reference.columns and c in window.columns]
    if not columns or len(reference) < 50 or len(window) < 50:
        return None
    current = window.sample(rows, random_state=seed) if len(window) > rows else window
    ref = reference.sample(rows, random_state=seed) if len(reference) > rows else reference
    x, categorical = _encode(ref, current, columns)
    y = np.r_[np.zeros(len(ref)), np.ones(len(current))]
    out_of_fold = np.zeros(len(y))
    held_out: tuple[object, np.ndarray] | None = None
    for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(x, y):
        model = HistGradientBoostingClassifier(
            max_iter=MAX_ITER,
            learning_rate=0.2,
            max_leaf_nodes=15,
            categorical_features=categorical,
            random_state=seed,
            early_stopping=False,
        )
        model.fit(x.iloc[train], y[train])
        out_of_fold[test] = model.predict_proba(x.iloc[test])[:, 1]
        held_out = held_out or (model, test)
    auc = float(roc_auc_score(y, out_of_fold))
    se = auc_standard_error(auc, len(current), len(ref)) or 0.0
    interval = [max(auc - 1.96 * se, 0.0), min(auc + 1.96 * se, 1.0)]
    return MultivariateDrift(
        roc_auc=auc,
        interval=interval,
        rows_reference=len(ref),
        rows_window=len(current),
        columns=columns,
        features=_reliance(held_out, x, y, seed) if auc > 0.55 else [],
    )


def _reliance(held_out, x: pd.DataFrame, y: np.ndarray, seed: int) -> list[str]:
    """The features whose permutation lowers the first fold's held-out AUC, most first (at most ``TOP``)."""
    from sklearn.metrics import roc_auc_score

    model, test = held_out
    frame, truth = x.iloc[test].reset_index(drop=True), y[test]
    base = roc_auc_score(truth, model.predict_proba(frame)[:, 1])
    rng = np.random.default_rng(seed)
    drops = {}
    for column in frame.columns:
        shuffled = frame.copy()
        shuffled[column] = rng.permutation(shuffled[column].to_numpy())
        drops[column] = base - roc_auc_score(truth, model.predict_proba(shuffled)[:, 1])
    ranked = sorted((c for c, d in drops.items() if d > 0.005), key=lambda c: -drops[c])
    return ranked[:TOP]
