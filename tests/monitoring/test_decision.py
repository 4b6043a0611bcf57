"""The alert and retrain rules as pure functions: what fires, on which numbers, and restraint where nothing moved."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics

from airloop.monitoring.decision import (
    RULES,
    auc_drop_interval,
    auc_standard_error,
    decide,
    importance_shares,
    importance_weighted_score,
)
from airloop.monitoring.drift import DriftThresholds

LIMITS = DriftThresholds()


def feature(psi: float = 0.01, null_ref: float = 0.0, null_cur: float = 0.0, **other: float) -> dict:
    return {
        "psi": psi,
        "psi_threshold": 0.2,
        "drifted": psi >= 0.2,
        "null_rate_reference": null_ref,
        "null_rate_current": null_cur,
        **other,
    }


def facts(**overrides) -> dict:
    base = {
        "features": {f"f{i}": feature() for i in range(10)},
        "drifted_share": 0.0,
        "importance": {f"f{i}": 0.1 for i in range(10)},
        "prediction": {"psi": 0.01},
        "calibration": None,
        "estimate": None,
        "realised": None,
    }
    return {**base, **overrides}


def fired(hits) -> set[tuple[str, str]]:
    return {(h.rule, h.decision) for h in hits}


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(
    psis=st.lists(st.floats(0, 0.199), min_size=1, max_size=30),
    importance=st.lists(st.floats(-0.01, 0.2), min_size=30, max_size=30),
    rate=st.floats(0.02, 0.6),
    rows=st.integers(1, 50_000),
    auc=st.floats(0.55, 0.95),
)
def test_nothing_moved_nothing_fires(psis, importance, rate, rows, auc):
    names = [f"f{i}" for i in range(len(psis))]
    quiet = facts(
        features={n: feature(p, 0.1, 0.1) for n, p in zip(names, psis, strict=False)},
        importance=importance_shares(dict(zip(names, importance, strict=False)), names),
        calibration={"rows": rows, "mean_probability": rate, "observed_rate": rate, "variance_sum": rows * rate * 0.9},
        estimate={"roc_auc": auc, "interval": [auc - 0.01, auc + 0.01], "reference_roc_auc": auc},
        realised={
            "roc_auc": auc,
            "positives": max(int(rows * rate), 1),
            "negatives": max(rows - int(rows * rate), 1),
            "reference_roc_auc": auc,
            "reference_counts": (300, 2700),
        },
    )

    assert decide(quiet, LIMITS) == []


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(importance=st.dictionaries(st.sampled_from([f"f{i}" for i in range(12)]), st.floats(-1, 1), min_size=1))
def test_importance_shares_are_a_distribution_over_the_features(importance):
    names = [f"f{i}" for i in range(12)]
    shares = importance_shares(importance, names)

    assert set(shares) == set(names)
    assert all(v >= 0 for v in shares.values()) and sum(shares.values()) == pytest.approx(1.0)
    assert importance_weighted_score(names, shares) == pytest.approx(1.0)
    assert importance_weighted_score([], shares) == 0.0


def test_unknown_importances_weigh_nothing():
    assert importance_shares(None, ["a"]) is None and importance_weighted_score(["a"], None) is None


def test_one_important_feature_moved_retrains_many_ignored_ones_only_alert():
    importance = importance_shares(
        {"key": 0.5, **{f"f{i}": 0.001 for i in range(9)}}, ["key", *[f"f{i}" for i in range(9)]]
    )
    few = facts(
        features={"key": feature(0.8), **{f"f{i}": feature() for i in range(9)}},
        drifted_share=0.1,
        importance=importance,
    )
    many = facts(
        features={"key": feature(), **{f"f{i}": feature(0.5) for i in range(9)}},
        drifted_share=0.9,
        importance=importance,
    )

    assert fired(decide(few, LIMITS)) == {("feature_drift", "alert"), ("importance_weighted_drift", "retrain")}
    assert fired(decide(many, LIMITS)) == {("drifted_share", "alert")}


def test_a_missing_rate_or_unseen_categories_that_move_alert_naming_the_feature():
    found = facts(
        features={
            "payer_code": feature(0.1, 0.64, 0.14),
            "specialty": feature(0.1, other_reference=0.02, other_current=0.09),
            "steady": feature(0.1, 0.3, 0.35, other_reference=0.02, other_current=0.04),
        }
    )

    (hit,) = decide(found, LIMITS)
    assert (hit.rule, hit.decision, hit.features) == ("data_quality", "alert", ["payer_code", "specialty"])
    assert "payer_code missing 64.0% -> 14.0%" in hit.message


def test_calibration_alerts_outside_its_interval_and_only_on_a_gap_that_matters():
    def calib(observed: float, rows: int) -> dict:
        return {"rows": rows, "mean_probability": 0.13, "observed_rate": observed, "variance_sum": rows * 0.13 * 0.87}

    # The hospital's window of the issue: 13.0% predicted, 11.3% happened, 20,000 labelled rows.
    assert fired(decide(facts(calibration=calib(0.113, 20_000)), LIMITS)) == {("calibration", "alert")}
    assert decide(facts(calibration=calib(0.113, 300)), LIMITS) == []  # inside the interval of 300 rows
    assert decide(facts(calibration=calib(0.125, 2_000_000)), LIMITS) == []  # beyond doubt, but under the gap
    assert decide(facts(calibration=calib(0.05, 100)), LIMITS) == []  # under min_labelled_rows


def test_realised_performance_alerts_when_worse_beyond_doubt_and_retrains_when_worse_by_the_tolerance():
    def realised(auc: float, rows: int, reference_rows: int | None = 4_000) -> dict:
        counts = None if reference_rows is None else (reference_rows // 9, reference_rows - reference_rows // 9)
        positives = rows // 9
        return {
            "roc_auc": auc,
            "positives": positives,
            "negatives": rows - positives,
            "reference_roc_auc": 0.682,
            "reference_counts": counts,
        }

    # The hospital's window: 0.662 on 20,000 labelled rows against 0.682 on a test set as large: worse beyond doubt,
    # not by the tolerance beyond doubt. Against 4,000 test rows the same gap is within the two AUCs' noise.
    assert fired(decide(facts(realised=realised(0.662, 20_000, 20_000)), LIMITS)) == {("realised_performance", "alert")}
    assert decide(facts(realised=realised(0.662, 20_000, 4_000)), LIMITS) == []
    assert decide(facts(realised=realised(0.662, 600)), LIMITS) == []  # a small window: within noise
    assert fired(decide(facts(realised=realised(0.60, 20_000)), LIMITS)) == {
        ("realised_performance", "alert"),
        ("realised_performance", "retrain"),
    }
    # A small test set is uncertain too: the same window against 500 test rows is not beyond doubt.
    assert decide(facts(realised=realised(0.662, 20_000, 500)), LIMITS) == []


def test_hanley_mcneil_standard_error_matches_the_spread_of_simulated_aucs():
    rng = np.random.default_rng(0)
    positives, negatives = 150, 1_350
    aucs = []
    for _ in range(400):
        scores = np.r_[rng.normal(0.8, 1, positives), rng.normal(0, 1, negatives)]
        aucs.append(metrics.roc_auc_score(np.r_[np.ones(positives), np.zeros(negatives)], scores))
    simulated = float(np.std(aucs))

    assert auc_standard_error(float(np.mean(aucs)), positives, negatives) == pytest.approx(simulated, rel=0.15)
    low, high = auc_drop_interval(0.7, None, 0.7, (positives, negatives))
    assert low < 0 < high and high - low == pytest.approx(2 * 1.96 * auc_standard_error(0.7, 150, 1350), rel=1e-3)


def test_the_multivariate_rule_retrains_on_its_lower_bound():
    seen = {"roc_auc": 0.66, "interval": [0.62, 0.70], "features": ["a", "b"]}
    barely = {"roc_auc": 0.62, "interval": [0.55, 0.69], "features": ["a"]}

    (hit,) = decide(facts(multivariate=seen), LIMITS)
    assert (hit.rule, hit.decision, hit.features) == ("multivariate_drift", "retrain", ["a", "b"])
    assert decide(facts(multivariate=barely), LIMITS) == []


def test_alert_rules_come_before_retrain_rules_and_every_rule_is_known():
    everything = facts(
        features={"key": feature(0.9, 0.0, 0.5)},
        drifted_share=1.0,
        importance={"key": 1.0},
        prediction={"psi": 0.9},
        multivariate={"roc_auc": 0.9, "interval": [0.85, 0.95], "features": ["key"]},
    )
    hits = decide(everything, LIMITS)

    assert [h.decision for h in hits] == sorted((h.decision for h in hits), key=lambda d: d != "alert")
    assert {h.rule for h in hits} <= set(RULES)
