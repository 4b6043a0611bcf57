"""Baseline statistics of the training features: what drift monitoring compares live traffic against."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

QUANTILES = tuple(round(q, 2) for q in np.linspace(0, 1, 11))
MAX_CATEGORIES = 50
OTHER = "__other__"


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


def baseline(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """Per-feature baseline statistics of a training frame, JSON-able."""
    return {
        "rows": len(frame),
        "features": {
            **{c: numeric_stats(frame[c]) for c in numeric},
            **{c: categorical_stats(frame[c]) for c in categorical},
        },
    }
