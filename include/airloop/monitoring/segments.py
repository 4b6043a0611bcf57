"""Per-segment figures: a drop confined to one group of patients (customers, ...) is seen and named.

The spec names its segment features (``monitoring.segments``, e.g. readmission's age, race, gender, admission type).
Each segment is one bin of that feature's reference profile (a category, or a numeric bin), so segments are fixed at
training and bounded in number. Training stores, per segment, the test rows' count, positives, realised ROC AUC and
mean probability (``segments`` in the reference profile); a window gets, per segment, its share of rows against the
training share, the label-free estimated ROC AUC, and on the labelled rows the realised ROC AUC and the observed vs
predicted positive rate.

Two alert rules read them, with a Bonferroni-corrected level so that many segments do not mean many false alarms:
``segment_performance`` (a segment's realised ROC AUC below its test-set figure by more than ``auc_tolerance``,
beyond doubt) and ``segment_calibration`` (a segment's observed rate outside the interval of its predicted rate and
at least ``min_calibration_gap`` from it). Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics

from airloop.monitoring.baseline import MISSING
from airloop.monitoring.decision import RuleHit, auc_drop_interval, rate_interval
from airloop.monitoring.estimate import estimate

MIN_SEGMENT_ROWS = 50  # fewer labelled rows (or test rows) in a segment: its figures are shown, no rule reads them


def segment_labels(profile: Mapping[str, Any], values: pd.Series) -> np.ndarray:
    """Each row's segment of one feature: its profile bin's label (categories beyond the profile are "other")."""
    from airloop.monitoring.drift import bin_labels, numeric_bin_index

    if profile["kind"] == "numeric":
        labels = bin_labels(profile)
        array = values.to_numpy(dtype="float64", na_value=np.nan)
        index = np.full(len(array), len(labels) - 1, dtype=np.intp)  # missing unless a value says otherwise
        present = ~np.isnan(array)
        index[present] = numeric_bin_index(profile, array[present])
        return np.asarray(labels, dtype=object)[index]
    text = values.astype("object")
    missing = (text.isna() | text.eq(MISSING)).to_numpy()
    labels = np.where(text.isin(profile["categories"]).to_numpy(), text.to_numpy(), "other").astype(object)
    labels[missing] = MISSING
    return labels


def _figures(y: np.ndarray | None, p: np.ndarray) -> dict[str, Any]:
    found: dict[str, Any] = {"rows": len(p), "mean_probability": float(p.mean()) if len(p) else None}
    if y is not None:
        positives = int(y.sum())
        found.update(
            positives=positives,
            observed_rate=float(y.mean()) if len(y) else None,
            roc_auc=float(metrics.roc_auc_score(y, p)) if 0 < positives < len(y) else None,
        )
    return found


def reference_segments(
    features: pd.DataFrame, profile: Mapping[str, Any], names: Sequence[str], y: np.ndarray, proba: np.ndarray
) -> dict[str, dict[str, Any]]:
    """What training stores per segment from the test rows: ``{feature: {segment: {rows, positives, roc_auc,
    mean_probability, observed_rate}}}``."""
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in features.columns or name not in profile["features"]:
            continue
        labels = segment_labels(profile["features"][name], features[name])
        found[name] = {str(s): _figures(y[labels == s], proba[labels == s]) for s in dict.fromkeys(labels)}
    return found


def segment_bins(profile: Mapping[str, Any], values: pd.Series) -> np.ndarray:
    """Each row's segment of one feature (``segment_labels``) as the index of its label in the feature's
    ``bin_labels``: the profile bin, the missing bin last; for a categorical feature its category, then "other"."""
    from airloop.monitoring.drift import numeric_bin_index

    if profile["kind"] == "numeric":
        array = values.to_numpy(dtype="float64", na_value=np.nan)
        index = np.full(len(array), len(profile["shares"]) - 1, dtype=np.int16)  # missing unless a value says otherwise
        present = ~np.isnan(array)
        index[present] = numeric_bin_index(profile, array[present])
        return index
    categories = profile["categories"]
    text = values.astype("object")
    codes = pd.Index(categories, dtype=object).get_indexer(text.to_numpy())
    codes = np.where(codes < 0, len(categories), codes).astype(np.int16)
    codes[(text.isna() | text.eq(MISSING)).to_numpy()] = len(categories) + 1
    return codes


def window_segments(
    profile: Mapping[str, Any],
    bins: Mapping[str, np.ndarray],
    probabilities: np.ndarray | None,
    outcomes: np.ndarray | None,
) -> dict[str, dict[str, Any]]:
    """Per segment of each feature in ``bins`` (each row's ``segment_bins``): rows and share (vs training),
    estimated ROC AUC, and on the labelled rows the realised ROC AUC and observed vs predicted rate, beside the test
    set's figures. Segments are listed in the order the window's rows first show them."""
    from airloop.monitoring.drift import bin_labels

    reference = profile.get("segments") or {}
    found: dict[str, dict[str, Any]] = {}
    for name, codes in bins.items():
        feature = profile["features"][name]
        labels = bin_labels(feature)
        training_share = dict(zip(labels, feature["shares"], strict=True))
        per: dict[str, Any] = {}
        for code in dict.fromkeys(codes.tolist()):
            segment = labels[code]
            rows = codes == code
            entry: dict[str, Any] = {
                "rows": int(rows.sum()),
                "share": float(rows.mean()),
                "training_share": float(training_share.get(segment, 0.0)),
                "test": (reference.get(name) or {}).get(str(segment)),
            }
            if probabilities is not None:
                p = probabilities[rows]
                entry["estimated_roc_auc"] = estimate(p[~np.isnan(p)]).roc_auc
                if outcomes is not None:
                    known = rows & ~np.isnan(outcomes) & ~np.isnan(probabilities)
                    labelled = _figures(outcomes[known], probabilities[known])
                    entry["labelled"] = {
                        **labelled,
                        "variance_sum": float(np.sum(probabilities[known] * (1 - probabilities[known]))),
                    }
            per[str(segment)] = entry
        found[name] = per
    return found


def segment_rules(segments: Mapping[str, Mapping[str, Any]], limits: Any) -> list[RuleHit]:
    """The per-segment alert rules (Bonferroni over the segments with enough labelled rows); none before the window
    has ``min_labelled_rows`` labelled rows, as for the window-wide rules on outcomes."""
    labelled_total = max(
        (sum((e.get("labelled") or {}).get("rows", 0) for e in per.values()) for per in segments.values()), default=0
    )
    if labelled_total < limits.min_labelled_rows:
        return []
    tested = [
        (name, segment, entry)
        for name, per in segments.items()
        for segment, entry in per.items()
        if (entry.get("labelled") or {}).get("rows", 0) >= MIN_SEGMENT_ROWS
    ]
    if not tested:
        return []
    level = 1 - (1 - 0.95) / len(tested)
    calibration_level = 1 - (1 - limits.calibration_level) / len(tested)
    worse, miscalibrated = [], []
    for name, segment, entry in tested:
        labelled, test = entry["labelled"], entry.get("test") or {}
        if labelled.get("roc_auc") is not None and test.get("roc_auc") is not None and test["rows"] >= MIN_SEGMENT_ROWS:
            interval = auc_drop_interval(
                test["roc_auc"],
                (test["positives"], test["rows"] - test["positives"]) if 0 < test["positives"] < test["rows"] else None,
                labelled["roc_auc"],
                (labelled["positives"], labelled["rows"] - labelled["positives"]),
                level,
            )
            drop = test["roc_auc"] - labelled["roc_auc"]
            if interval is not None and drop > limits.auc_tolerance and interval[0] > 0:
                worse.append(
                    f"{name}={segment}: ROC AUC {labelled['roc_auc']:.3f} vs {test['roc_auc']:.3f} on the test set"
                )
        low, high = rate_interval(
            labelled["mean_probability"], labelled["variance_sum"], labelled["rows"], calibration_level
        )
        gap = labelled["observed_rate"] - labelled["mean_probability"]
        if not low <= labelled["observed_rate"] <= high and abs(gap) >= limits.min_calibration_gap:
            miscalibrated.append(
                f"{name}={segment}: observed {labelled['observed_rate']:.1%} vs predicted "
                f"{labelled['mean_probability']:.1%} on {labelled['rows']} rows"
            )
    hits = []
    z = NormalDist().inv_cdf(0.5 + level / 2)
    if worse:
        hits.append(
            RuleHit(
                "segment_performance",
                "alert",
                f"realised ROC AUC worse beyond doubt (z {z:.2f} over {len(tested)} segments) in "
                + "; ".join(worse[:6]),
                value=float(len(worse)),
                threshold=limits.auc_tolerance,
            )
        )
    if miscalibrated:
        hits.append(
            RuleHit(
                "segment_calibration",
                "alert",
                "calibration off in " + "; ".join(miscalibrated[:6]),
                value=float(len(miscalibrated)),
                threshold=limits.min_calibration_gap,
            )
        )
    return hits
