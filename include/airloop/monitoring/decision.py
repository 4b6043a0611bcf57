"""Two decisions on a drift window, each by named rules: **alert** (a person should look) and **retrain** (evidence
that the model is being harmed, or that the data moved where the model looks).

A count of drifted columns is deaf to one important feature moving and noisy when many ignored ones do. These
rules weigh what moved by what the model uses (permutation importance on the test rows, stored in the reference
profile at training) and ask for confidence before acting on outcomes.

Alert rules (any one alerts):

- ``feature_drift``: a feature with PSI at or above its threshold whose share of the model's importance is at least
  ``importance_floor``.
- ``drifted_share``: the (``weights``-weighted) share of drifted features at least ``drifted_share``: many columns
  moved, whether or not the model uses them. For a version whose profile has no importances (trained before they
  were stored) this rule retrains, as the only weighing there is.
- ``data_quality``: a feature whose missing rate moved by at least ``max_missing_change``, or whose share of rare or
  unseen categories grew by at least ``max_unseen_share``.
- ``prediction_drift``: the PSI of the predicted probabilities at or above ``prediction_psi``.
- ``calibration``: on the labelled rows, the observed positive rate outside the interval the probabilities imply
  (``calibration_level``) and at least ``min_calibration_gap`` away from their mean.
- ``estimated_performance``: the label-free ROC AUC estimate more than ``max_estimated_auc_drop`` below the
  reference's.
- ``realised_performance``: the realised ROC AUC of the labelled rows more than ``auc_tolerance`` below the test set's,
  and below it beyond doubt (the lower end of the drop's 95% interval above 0).

Retrain rules (any one retrains, and also alerts):

- ``importance_weighted_drift``: the share of the model's importance held by drifted features at least
  ``importance_drift``.
- ``realised_performance``: the realised ROC AUC worse than the test set's by more than ``auc_tolerance`` with
  confidence: the lower end of the difference's interval (both AUCs' standard errors, Hanley and McNeil) above it.
- ``estimated_performance``: the estimate below the reference estimate by more than ``max_estimated_auc_drop`` and
  by more than its own interval.
- ``multivariate_drift``: a classifier tells the window from the reference sample with a cross-validated ROC AUC
  whose lower bound is at least ``multivariate_auc`` (:mod:`airloop.monitoring.multivariate`).

Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

Decision = Literal["alert", "retrain"]
RULES = (
    "feature_drift",
    "drifted_share",
    "data_quality",
    "prediction_drift",
    "calibration",
    "estimated_performance",
    "realised_performance",
    "importance_weighted_drift",
    "multivariate_drift",
    "segment_performance",
    "segment_calibration",
)
LEVEL = 0.95


@dataclass(frozen=True)
class RuleHit:
    """One rule that fired: what it decides, a sentence with the numbers, the measured value and its threshold."""

    rule: str
    decision: Decision
    message: str
    value: float | None = None
    threshold: float | None = None
    features: list[str] = field(default_factory=list)


def importance_shares(importance: Mapping[str, float] | None, features: list[str]) -> dict[str, float] | None:
    """Each feature's share of the model's importance (negative importances count as 0); None when unknown.

    A model whose every importance is 0 (it uses nothing) gives every feature an equal share.
    """
    if not importance:
        return None
    positive = {name: max(float(importance.get(name) or 0.0), 0.0) for name in features}
    positive = {name: (v if math.isfinite(v) else 0.0) for name, v in positive.items()}
    total = sum(positive.values())
    if total <= 0:
        return {name: 1.0 / len(features) for name in features} if features else {}
    return {name: v / total for name, v in positive.items()}


def auc_standard_error(auc: float, positives: int, negatives: int) -> float | None:
    """Hanley and McNeil's (1982) standard error of a ROC AUC measured on ``positives`` and ``negatives`` rows."""
    if positives < 1 or negatives < 1 or not 0 <= auc <= 1:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def auc_drop_interval(
    reference: float,
    reference_counts: tuple[int, int] | None,
    current: float,
    current_counts: tuple[int, int],
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """The interval of ``reference - current`` ROC AUC (independent samples; the reference's error when its counts
    are known, else only the window's); None when the window has no positives or no negatives."""
    window = auc_standard_error(current, *current_counts)
    if window is None:
        return None
    ref = auc_standard_error(reference, *reference_counts) if reference_counts else None
    se = math.sqrt(window**2 + (ref or 0.0) ** 2)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    drop = reference - current
    return drop - z * se, drop + z * se


def rate_interval(mean_probability: float, variance_sum: float, rows: int, level: float) -> tuple[float, float]:
    """Where the observed positive rate of ``rows`` rows should fall if their probabilities are calibrated
    (outcomes Bernoulli(p): variance ``sum p(1-p) / n**2``)."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    half = z * math.sqrt(max(variance_sum, 0.0)) / rows
    return mean_probability - half, mean_probability + half


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def decide(facts: Mapping[str, Any], limits: Any) -> list[RuleHit]:
    """The rules that fire on one window's facts, alert rules first.

    Args:
        facts: what the comparison measured (``drift.compare`` builds it):
            ``features``: {name: {"psi", "psi_threshold", "drifted", "significant", "null_rate_reference",
            "null_rate_current", "other_reference", "other_current"}} (``other_*`` only for categorical features);
            ``drifted_share``: the weighted share of drifted features; ``importance``: {name: share} or None;
            ``prediction``: {"psi"} or None;
            ``calibration``: {"rows", "mean_probability", "observed_rate", "variance_sum"} or None;
            ``estimate``: {"roc_auc", "interval", "reference_roc_auc"} or None;
            ``realised``: {"roc_auc", "positives", "negatives", "reference_roc_auc", "reference_counts"} or None;
            ``multivariate``: {"roc_auc", "interval", "features"} or None.
        limits: the thresholds (``drift.DriftThresholds``).
    """
    hits: list[RuleHit] = []
    features: Mapping[str, Mapping[str, Any]] = facts.get("features") or {}
    shares = facts.get("importance")
    drifted = sorted(name for name, f in features.items() if f["drifted"])

    # Importances unknown (a profile from before they were stored): every drifted feature matters. A feature alerts
    # only when its shift is also beyond chance (its corrected test): on a small window, PSI alone is inflated by
    # sampling noise, most for a categorical feature of many levels (about (levels - 1) / rows with nothing changed).
    noticed = [n for n in drifted if features[n].get("significant", True)]
    mattering = noticed if shares is None else [n for n in noticed if shares.get(n, 0.0) >= limits.importance_floor]
    if mattering:
        shown = ", ".join(
            f"{n} (PSI {features[n]['psi']:.2f}"
            + ("" if shares is None else f", importance {shares.get(n, 0.0):.0%}")
            + ")"
            for n in mattering[:8]
        )
        floor = "importances unknown" if shares is None else f"importance share >= {limits.importance_floor:.0%}"
        hits.append(
            RuleHit(
                "feature_drift",
                "alert",
                f"{len(mattering)} drifted feature(s) the model uses ({floor}): {shown}",
                value=float(len(mattering)),
                threshold=limits.importance_floor,
                features=mattering,
            )
        )

    share = facts.get("drifted_share")
    if drifted and share is not None and share >= limits.drifted_share:
        # Without importances (a version trained before they were stored) the share is all there is to weigh by.
        hits.append(
            RuleHit(
                "drifted_share",
                "alert" if shares is not None else "retrain",
                f"{len(drifted)} of {len(features)} features drifted (weighted share {share:.2f} >= "
                f"{limits.drifted_share})" + ("" if shares is not None else "; importances unknown: it decides"),
                value=float(share),
                threshold=limits.drifted_share,
                features=drifted,
            )
        )

    quality = []
    for name, f in sorted(features.items()):
        moved = abs(f["null_rate_current"] - f["null_rate_reference"])
        if moved >= limits.max_missing_change:
            quality.append((name, f"{name} missing {f['null_rate_reference']:.1%} -> {f['null_rate_current']:.1%}"))
            continue
        if "other_current" in f and f["other_current"] - f["other_reference"] >= limits.max_unseen_share:
            quality.append(
                (name, f"{name} rare or unseen categories {f['other_reference']:.1%} -> {f['other_current']:.1%}")
            )
    if quality:
        hits.append(
            RuleHit(
                "data_quality",
                "alert",
                "data quality moved: " + "; ".join(text for _, text in quality[:8]),
                value=float(len(quality)),
                threshold=limits.max_missing_change,
                features=[name for name, _ in quality],
            )
        )

    prediction = facts.get("prediction")
    if prediction is not None and prediction["psi"] >= limits.prediction_psi:
        hits.append(
            RuleHit(
                "prediction_drift",
                "alert",
                f"prediction PSI {prediction['psi']:.3f} >= {limits.prediction_psi}",
                value=float(prediction["psi"]),
                threshold=limits.prediction_psi,
            )
        )

    calibration = facts.get("calibration")
    if calibration and calibration["rows"] >= limits.min_labelled_rows:
        low, high = rate_interval(
            calibration["mean_probability"], calibration["variance_sum"], calibration["rows"], limits.calibration_level
        )
        gap = calibration["observed_rate"] - calibration["mean_probability"]
        if not low <= calibration["observed_rate"] <= high and abs(gap) >= limits.min_calibration_gap:
            hits.append(
                RuleHit(
                    "calibration",
                    "alert",
                    f"observed positive rate {calibration['observed_rate']:.1%} on {calibration['rows']} labelled rows "
                    f"outside the {limits.calibration_level:.1%} interval [{low:.1%}, {high:.1%}] of the predicted "
                    f"{calibration['mean_probability']:.1%}",
                    value=float(gap),
                    threshold=limits.min_calibration_gap,
                )
            )

    estimated = facts.get("estimate")
    if estimated and estimated.get("roc_auc") is not None and estimated.get("reference_roc_auc") is not None:
        drop = estimated["reference_roc_auc"] - estimated["roc_auc"]
        if drop > limits.max_estimated_auc_drop:
            text = (
                f"estimated ROC AUC {estimated['roc_auc']:.3f} (no labels) is {drop:.3f} below the reference estimate "
                f"{estimated['reference_roc_auc']:.3f} (limit {limits.max_estimated_auc_drop})"
            )
            hits.append(RuleHit("estimated_performance", "alert", text, float(drop), limits.max_estimated_auc_drop))
            interval = estimated.get("interval")
            if interval is not None and interval[1] < estimated["reference_roc_auc"]:
                hits.append(
                    RuleHit(
                        "estimated_performance",
                        "retrain",
                        f"{text}, beyond its interval (upper end {interval[1]:.3f})",
                        float(drop),
                        limits.max_estimated_auc_drop,
                    )
                )

    realised = facts.get("realised")
    if realised and realised.get("roc_auc") is not None and realised.get("reference_roc_auc") is not None:
        labelled = realised["positives"] + realised["negatives"]
        drop = realised["reference_roc_auc"] - realised["roc_auc"]
        interval = auc_drop_interval(
            realised["reference_roc_auc"],
            realised.get("reference_counts"),
            realised["roc_auc"],
            (realised["positives"], realised["negatives"]),
        )
        # Both the window's and the test set's AUC are estimates: a point comparison alarms on noise (an A/A window
        # of 6,000 rows sits 0.02 below a test set of 1,500 as often as not). Alert: worse beyond the tolerance and
        # beyond doubt; retrain: worse by more than the tolerance beyond doubt.
        if labelled >= limits.min_labelled_rows and interval is not None and drop > limits.auc_tolerance:
            text = (
                f"realised ROC AUC {realised['roc_auc']:.3f} on {labelled} labelled rows vs "
                f"{realised['reference_roc_auc']:.3f} on the test set: drop {drop:.3f} (95% interval "
                f"[{interval[0]:.3f}, {interval[1]:.3f}]), tolerance {limits.auc_tolerance}"
            )
            if interval[0] > 0:
                hits.append(RuleHit("realised_performance", "alert", text, float(drop), limits.auc_tolerance))
            if interval[0] > limits.auc_tolerance:
                hits.append(
                    RuleHit(
                        "realised_performance",
                        "retrain",
                        f"{text}: beyond the tolerance with confidence",
                        float(drop),
                        limits.auc_tolerance,
                    )
                )

    if drifted:
        weighted = sum((shares or {}).get(n, 0.0) for n in drifted) if shares is not None else None
        if weighted is not None and weighted >= limits.importance_drift:
            hits.append(
                RuleHit(
                    "importance_weighted_drift",
                    "retrain",
                    f"drifted features hold {weighted:.0%} of the model's importance "
                    f"(>= {limits.importance_drift:.0%}): " + ", ".join(drifted[:8]),
                    value=float(weighted),
                    threshold=limits.importance_drift,
                    features=drifted,
                )
            )

    multivariate = facts.get("multivariate")
    if multivariate and multivariate.get("interval") is not None:
        low = multivariate["interval"][0]
        if low >= limits.multivariate_auc:
            hits.append(
                RuleHit(
                    "multivariate_drift",
                    "retrain",
                    f"a classifier tells the window from the reference with ROC AUC {multivariate['roc_auc']:.3f} "
                    f"(lower bound {low:.3f} >= {limits.multivariate_auc}); it relies on "
                    + ", ".join((multivariate.get("features") or [])[:5]),
                    value=float(multivariate["roc_auc"]),
                    threshold=limits.multivariate_auc,
                    features=list(multivariate.get("features") or []),
                )
            )
    hits.sort(key=lambda h: (h.decision != "alert", RULES.index(h.rule)))
    return hits


def importance_weighted_score(drifted: list[str], shares: Mapping[str, float] | None) -> float | None:
    """The share of the model's importance held by the drifted features (None when importances are unknown)."""
    if shares is None:
        return None
    return float(sum(shares.get(n, 0.0) for n in drifted))
