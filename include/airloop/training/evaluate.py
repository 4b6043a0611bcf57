"""Metrics and plots of a binary classifier on a held-out set."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics


def best_threshold(y: np.ndarray, proba: np.ndarray) -> float:
    """The probability threshold that maximises F1 (chosen on validation data, applied to test data)."""
    precision, recall, thresholds = metrics.precision_recall_curve(y, proba)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if len(thresholds) else 0.5


def recall_threshold(y: np.ndarray, proba: np.ndarray, target: float) -> float:
    """The highest threshold whose recall is at least ``target``: the score of the ``ceil(target * positives)``-th
    highest-scored positive (0.5 without positives)."""
    scores = np.sort(np.asarray(proba, dtype=float)[np.asarray(y) == 1])[::-1]
    if not len(scores):
        return 0.5
    needed = max(1, math.ceil(target * len(scores) - 1e-9))
    return float(scores[needed - 1])


def alert_rate_threshold(proba: np.ndarray, target: float) -> float:
    """The lowest threshold (among the scores) that flags at most ``target`` of the records: just above the score of
    the first record that would exceed the rate (above every score when even the highest ties exceed it)."""
    scores = np.sort(np.asarray(proba, dtype=float))[::-1]
    allowed = math.floor(target * len(scores) + 1e-9)
    if allowed >= len(scores):
        return float(scores[-1]) if len(scores) else 0.5
    first_out = scores[allowed]
    above = scores[scores > first_out]
    return float(above.min()) if len(above) else float(np.nextafter(first_out, np.inf))


def operating_threshold(y: np.ndarray, proba: np.ndarray, kind: str = "f1", target: float | None = None) -> float:
    """The version's threshold at its operating point (``evaluation.operating_point``), chosen on validation rows:
    ``f1`` (F1-optimal), ``recall`` (catch ``target`` of the positives) or ``alert_rate`` (flag at most ``target``)."""
    if kind == "f1":
        return best_threshold(y, proba)
    if target is None:
        raise ValueError(f"operating point {kind!r} needs a target")
    if kind == "recall":
        return recall_threshold(y, proba, target)
    if kind == "alert_rate":
        return alert_rate_threshold(proba, target)
    raise ValueError(f"unknown operating point {kind!r}: f1, recall or alert_rate")


def score(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier, and precision/recall/F1 at ``threshold``."""
    predicted = (proba >= threshold).astype(int)
    return {
        "roc_auc": float(metrics.roc_auc_score(y, proba)),
        "pr_auc": float(metrics.average_precision_score(y, proba)),
        "log_loss": float(metrics.log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(metrics.brier_score_loss(y, proba)),
        "precision": float(metrics.precision_score(y, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(y, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(y, predicted, zero_division=0)),
        "threshold": float(threshold),
    }


# Metrics where a larger value is better; the others (log_loss, brier) are losses.
HIGHER_IS_BETTER = {"roc_auc", "pr_auc", "precision", "recall", "f1"}


def plots(y: np.ndarray, proba: np.ndarray, threshold: float, importance: dict[str, float], out: Path) -> list[Path]:
    """ROC, PR, confusion matrix, calibration and feature importance as PNG files in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig, name: str) -> None:
        path = out / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(5, 4))
    metrics.RocCurveDisplay.from_predictions(y, proba, ax=ax)
    save(fig, "roc_curve")
    fig, ax = plt.subplots(figsize=(5, 4))
    metrics.PrecisionRecallDisplay.from_predictions(y, proba, ax=ax)
    save(fig, "pr_curve")
    fig, ax = plt.subplots(figsize=(4, 4))
    metrics.ConfusionMatrixDisplay.from_predictions(y, (proba >= threshold).astype(int), ax=ax, colorbar=False)
    ax.set_title(f"threshold {threshold:.3f}")
    save(fig, "confusion_matrix")
    fig, ax = plt.subplots(figsize=(5, 4))
    CalibrationDisplay.from_predictions(y, proba, n_bins=10, strategy="quantile", ax=ax)
    save(fig, "calibration")
    top = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:20]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.barh([k for k, _ in reversed(top)], [v for _, v in reversed(top)])
    ax.set_xlabel("permutation importance (ROC AUC drop)")
    save(fig, "feature_importance")
    return written


# Each model feature's permutation importance (ROC AUC drop on the test rows) is also a flat metric of the training
# run, ``importance.<feature>``, so the Model monitor page reads a version's global importance with its other metrics
# (one run fetch, no artifact download).
IMPORTANCE_PREFIX = "importance"
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def importance_metrics(importance: Mapping[str, float]) -> dict[str, float]:
    """The flat MLflow metrics of a version's permutation importance (names made of characters MLflow accepts)."""
    return {
        f"{IMPORTANCE_PREFIX}.{_METRIC_UNSAFE.sub('_', name)[:200]}": float(value)
        for name, value in importance.items()
        if value is not None and math.isfinite(float(value))
    }


def importance_from_metrics(metrics_: Mapping[str, float], top: int) -> list[dict[str, Any]]:
    """The ``top`` most important features of a run's metrics (``importance_metrics``), largest first."""
    prefix = f"{IMPORTANCE_PREFIX}."
    found = [(k.removeprefix(prefix), v) for k, v in metrics_.items() if k.startswith(prefix)]
    found.sort(key=lambda item: (-item[1], item[0]))
    return [{"feature": name, "importance": value} for name, value in found[:top]]
