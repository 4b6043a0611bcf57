"""The reference profile of a model version: what drift monitoring compares live traffic against.

Computed once at training time from the features the model's own encounter transform makes of the training rows
(plus the model's predicted probabilities on the test rows) and logged as ``baseline/baseline_stats.json``. Besides
the summary statistics older versions stored, every feature gets fixed bins and their reference shares, a null rate,
and a compact CDF from which a Kolmogorov-Smirnov distance is computed without the raw training rows.

Numeric bins: per-value bins for small domains (at most ``MAX_VALUE_BINS`` distinct values, neighbours under
``MIN_BIN_SHARE`` merged), otherwise about ``NUMERIC_BINS`` quantile bins that give a heavy value (a count that is
mostly 0) a bin of its own. Two open outer bins hold values below the training minimum and above the maximum, and
the last bin is "missing": a change in any of them is drift. Layout of ``shares`` for ``k`` cuts:
``[< min, [min, c1), ..., [ck, max], > max, missing]``. Categorical: the kept categories, then "other" (rare and
unseen categories) and "missing" (null or the transform's "missing" marker).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from airloop.errors import FinalError

PROFILE_VERSION = 1
QUANTILES = tuple(round(q, 2) for q in np.linspace(0, 1, 11))
MAX_CATEGORIES = 50
MIN_CATEGORY_SHARE = 0.005
OTHER = "__other__"
MISSING = "missing"
NUMERIC_BINS = 10
MAX_VALUE_BINS = 30
MIN_BIN_SHARE = 0.005
CDF_POINTS = 1000
RETRAIN = "retrain to enable drift monitoring"


class ProfileUnavailable(FinalError):
    """A model version has no usable reference profile (none stored, written before drift monitoring, or malformed)."""


def numeric_stats(values: pd.Series, bins: int = 10) -> dict[str, Any]:
    """Quantiles, a histogram on quantile edges, mean, std and null rate of one numeric feature."""
    present = values.dropna().astype("float64")
    quantiles = present.quantile(list(QUANTILES)).tolist() if len(present) else []
    edges = np.unique(np.asarray(quantiles)) if quantiles else np.array([0.0, 1.0])
    if len(edges) < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    counts, edges = np.histogram(present, bins=edges)
    return {
        "kind": "numeric",
        "count": len(values),
        "null_rate": float(values.isna().mean()) if len(values) else 0.0,
        "mean": float(present.mean()) if len(present) else None,
        "std": float(present.std(ddof=0)) if len(present) else None,
        "quantiles": dict(zip([str(q) for q in QUANTILES], quantiles, strict=False)),
        "histogram": {"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
        "bins": bins,
    }


def categorical_stats(values: pd.Series) -> dict[str, Any]:
    """Relative frequencies of the most common categories (the rest pooled as ``__other__``) and the null rate."""
    freq = values.astype(object).where(values.notna(), "missing").value_counts(normalize=True)
    top = freq.head(MAX_CATEGORIES)
    frequencies = {str(k): float(v) for k, v in top.items()}
    if len(freq) > MAX_CATEGORIES:
        frequencies[OTHER] = float(freq.iloc[MAX_CATEGORIES:].sum())
    return {
        "kind": "categorical",
        "count": len(values),
        "null_rate": float(values.isna().mean()) if len(values) else 0.0,
        "frequencies": frequencies,
    }


def _value_cuts(values: np.ndarray, shares: np.ndarray) -> list[float]:
    """Cut points between distinct values, one bin per value, merging neighbours until each holds MIN_BIN_SHARE."""
    cuts: list[float] = []
    filled = 0.0
    for i, share in enumerate(shares[:-1]):
        filled += share
        if filled >= MIN_BIN_SHARE and shares[i + 1 :].sum() >= MIN_BIN_SHARE:
            cuts.append(float((values[i] + values[i + 1]) / 2))
            filled = 0.0
    return cuts


def _quantile_cuts(values: np.ndarray, shares: np.ndarray) -> list[float]:
    """Cut points for about NUMERIC_BINS equal-share bins; a value holding more than one bin's share stays alone."""
    before = np.concatenate([[0.0], np.cumsum(shares)[:-1]])
    label = np.floor(before * NUMERIC_BINS + 1e-9)
    change = np.flatnonzero(np.diff(label) != 0) + 1
    return ((values[change - 1] + values[change]) / 2).astype(float).tolist()


def _cdf(present: np.ndarray, values: np.ndarray, counts: np.ndarray) -> dict[str, list[float]]:
    """The empirical CDF at each distinct value, or at CDF_POINTS quantiles (exact to 1/CDF_POINTS) when larger."""
    if len(values) <= CDF_POINTS:
        return {"values": values.tolist(), "probs": (np.cumsum(counts) / counts.sum()).tolist()}
    probs = np.arange(1, CDF_POINTS + 1) / CDF_POINTS
    points = np.quantile(present, probs, method="inverted_cdf")
    # Tied quantiles keep the highest probability: the CDF at that value.
    last = np.flatnonzero(np.r_[np.diff(points) != 0, True])
    return {"values": points[last].tolist(), "probs": probs[last].tolist()}


def numeric_profile(values: pd.Series | np.ndarray) -> dict[str, Any]:
    """Summary statistics plus fixed bins, reference shares and a CDF of one numeric feature."""
    series = pd.Series(values, dtype="float64")
    stats = numeric_stats(series)
    raw = series.to_numpy()
    missing = np.isnan(raw)
    present = raw[~missing]
    if len(present) == 0:
        return {**stats, "binning": "none", "min": None, "max": None, "cuts": [], "shares": [0.0, 0.0, 0.0, 1.0]}
    distinct, counts = np.unique(present, return_counts=True)
    value_shares = counts / counts.sum()
    small = len(distinct) <= MAX_VALUE_BINS
    cuts = _value_cuts(distinct, value_shares) if small else _quantile_cuts(distinct, value_shares)
    inner = np.bincount(np.searchsorted(np.asarray(cuts), present, side="right"), minlength=len(cuts) + 1)
    shares = np.concatenate([[0.0], inner / len(raw), [0.0, missing.sum() / len(raw)]])
    return {
        **stats,
        "binning": "per_value" if small else "quantile",
        "min": float(distinct[0]),
        "max": float(distinct[-1]),
        "cuts": cuts,
        "shares": shares.tolist(),
        "cdf": _cdf(present, distinct, counts),
    }


def categorical_profile(values: pd.Series | np.ndarray) -> dict[str, Any]:
    """Summary statistics plus the kept categories and shares of categories, "other" and "missing"."""
    series = pd.Series(values, dtype=object)
    stats = categorical_stats(series)
    missing = series.isna() | series.eq(MISSING)
    freq = series[~missing].astype(str).value_counts(sort=True) / max(len(series), 1)
    kept = freq[freq >= MIN_CATEGORY_SHARE].head(MAX_CATEGORIES)
    other = float(freq.sum() - kept.sum())
    shares = [*kept.astype(float).tolist(), max(other, 0.0), float(missing.mean()) if len(series) else 0.0]
    return {**stats, "categories": [str(c) for c in kept.index], "shares": shares}


def reference_profile(
    features: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    predictions: Sequence[float] | np.ndarray | None = None,
    test_metrics: Mapping[str, float] | None = None,
    importance: Mapping[str, float] | None = None,
    test_counts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The JSON-able reference profile of a model version's training features (and test-set predictions/metrics).

    Args:
        features: model features of the training rows (the model's own encounter transform of them).
        numeric: numeric feature names.
        categorical: categorical feature names.
        predictions: the model's predicted probabilities on the test rows, for prediction drift.
        test_metrics: the model's test-set figures (``roc_auc``, ``log_loss``, ...) realised windows are set against.
        importance: each feature's permutation importance on the test rows (ROC AUC drop), for weighing drift.
        test_counts: ``{"positives", "negatives"}`` of the test rows, for the uncertainty of ``test_metrics``.
    """
    absent = [c for c in [*numeric, *categorical] if c not in features.columns]
    if absent:
        raise KeyError(f"reference profile: feature columns {absent} not in the frame {list(features.columns)[:12]}")
    return {
        "profile_version": PROFILE_VERSION,
        "rows": len(features),
        "features": {
            **{c: numeric_profile(features[c]) for c in numeric},
            **{c: categorical_profile(features[c]) for c in categorical},
        },
        "prediction": None if predictions is None else numeric_profile(np.asarray(predictions, dtype="float64")),
        "test_metrics": {k: float(v) for k, v in (test_metrics or {}).items()},
        "importance": None if importance is None else {k: float(v) for k, v in importance.items()},
        "test_counts": None if test_counts is None else {k: int(v) for k, v in test_counts.items()},
    }


def baseline(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """Per-feature baseline statistics of a training frame, JSON-able: the reference profile without predictions."""
    return reference_profile(frame, numeric, categorical)


def _check_feature(name: str, feature: Any) -> str | None:
    """What is wrong with one feature's profile, or None."""
    if not isinstance(feature, Mapping):
        return f"feature {name!r} is {type(feature).__name__}, not an object"
    kind = feature.get("kind")
    if kind == "numeric":
        required = ("cuts", "shares", "null_rate", "min", "max")
        width = len(feature.get("cuts") or []) + 4
    elif kind == "categorical":
        required = ("categories", "shares", "null_rate")
        width = len(feature.get("categories") or []) + 2
    else:
        return f"feature {name!r} has unknown kind {kind!r}"
    lacking = [k for k in required if k not in feature]
    if lacking:
        return f"feature {name!r} lacks {lacking}"
    shares = np.asarray(feature["shares"], dtype="float64")
    if shares.shape != (width,) or not np.all(np.isfinite(shares)) or np.any(shares < 0):
        return f"feature {name!r} has {len(shares)} shares {feature['shares'][:6]}..., expected {width} non-negative"
    if not math.isclose(float(shares.sum()), 1.0, abs_tol=1e-6) and feature.get("count", 1):
        return f"feature {name!r} shares sum to {shares.sum():.6f}, not 1"
    cuts = np.asarray(feature.get("cuts") or [], dtype="float64")
    if kind == "numeric" and np.any(np.diff(cuts) <= 0):
        return f"feature {name!r} cuts are not increasing: {cuts.tolist()[:6]}"
    return None


def load_profile(data: Any, where: str = "baseline/baseline_stats.json") -> dict[str, Any]:
    """The validated reference profile in ``data`` (the parsed artifact); ProfileUnavailable says why not."""
    if data is None:
        raise ProfileUnavailable(f"no reference profile at {where}: {RETRAIN}")
    if not isinstance(data, Mapping):
        raise ProfileUnavailable(f"reference profile at {where} is {type(data).__name__}, not an object: {RETRAIN}")
    version = data.get("profile_version")
    if version is None:
        raise ProfileUnavailable(
            f"reference profile at {where} has no profile_version (written before drift monitoring, "
            f"keys {sorted(data)[:8]}): {RETRAIN}"
        )
    if version != PROFILE_VERSION:
        raise ProfileUnavailable(
            f"reference profile at {where} has profile_version {version!r}, this code reads {PROFILE_VERSION}: "
            f"{RETRAIN}"
        )
    features = data.get("features")
    if not isinstance(features, Mapping) or not features:
        raise ProfileUnavailable(f"reference profile at {where} has no features: {RETRAIN}")
    problems = [p for name, f in features.items() if (p := _check_feature(name, f))]
    if data.get("prediction") is not None:
        problem = _check_feature("prediction", data["prediction"])
        problems += [problem] if problem else []
    if problems:
        raise ProfileUnavailable(f"reference profile at {where} is malformed: {'; '.join(problems[:5])}: {RETRAIN}")
    return dict(data)
