"""The reference profile stored with each model version: bins that can show drift, a CDF for KS, a strict loader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from airloop.errors import FinalError
from airloop.monitoring.baseline import (
    CDF_POINTS,
    PROFILE_VERSION,
    ProfileUnavailable,
    baseline,
    categorical_profile,
    load_profile,
    numeric_profile,
    numeric_stats,
    reference_profile,
)
from airloop.usecases.readmission import synthetic
from airloop.usecases.readmission import transform as tf


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    """Model features of 4,000 synthetic training rows."""
    return tf.features_from_frame(tf.prepare(synthetic.generate(4_000, seed=11)), tf.default_spec())


def test_zero_inflated_count_keeps_zero_in_a_bin_of_its_own_with_open_outer_bins():
    values = pd.Series(np.r_[np.zeros(900), np.arange(1, 101)], dtype="float64")

    profile = numeric_profile(values)

    # Today's quantile edges collapse here (nine of ten deciles are 0); the profile must not.
    assert len(np.unique(numeric_stats(values)["histogram"]["edges"])) <= 3
    assert profile["cuts"][0] == 0.5
    assert profile["shares"][1] == pytest.approx(0.9)
    assert profile["shares"][0] == 0.0 and profile["shares"][-2] == 0.0  # below min / above max: open, empty
    assert profile["max"] == 100.0
    assert sum(profile["shares"]) == pytest.approx(1.0)


def test_small_integer_domain_gets_one_bin_per_value_and_missing_a_bin_of_its_own():
    values = pd.Series([*range(10)] * 50 + [np.nan] * 100, dtype="float64")

    profile = numeric_profile(values)

    assert profile["binning"] == "per_value"
    assert profile["cuts"] == [i + 0.5 for i in range(9)]
    assert profile["shares"][1:11] == pytest.approx([50 / 600] * 10)
    assert profile["shares"][-1] == pytest.approx(100 / 600) == profile["null_rate"]


def test_rare_tail_values_are_merged_into_their_neighbour_bin():
    values = pd.Series([0] * 900 + [1] * 97 + [7, 8, 9], dtype="float64")

    profile = numeric_profile(values)

    assert profile["cuts"] == [0.5]  # 7, 8, 9 (0.1% each) share the top bin with 1
    assert profile["shares"][1:3] == pytest.approx([0.9, 0.1])


def test_continuous_feature_gets_about_ten_equal_share_bins_and_a_bounded_cdf():
    values = pd.Series(np.random.default_rng(0).normal(size=20_000))

    profile = numeric_profile(values)

    assert profile["binning"] == "quantile"
    inner = np.asarray(profile["shares"][1:-2])
    assert len(inner) == 10 and np.allclose(inner, 0.1, atol=0.01)
    assert len(profile["cdf"]["values"]) == CDF_POINTS
    assert profile["cdf"]["probs"][-1] == 1.0


def test_categorical_profile_pools_rare_categories_and_counts_missing_markers_as_missing():
    values = pd.Series(["a"] * 600 + ["b"] * 390 + ["rare"] * 2 + ["missing"] * 5 + [None] * 3, dtype=object)

    profile = categorical_profile(values)

    assert profile["categories"] == ["a", "b"]
    assert profile["shares"] == pytest.approx([0.6, 0.39, 0.002, 0.008])  # a, b, other, missing


def test_reference_profile_is_json_and_keeps_the_old_baseline_fields(features):
    proba = np.random.default_rng(1).random(500)
    profile = reference_profile(
        features,
        list(tf.NUMERIC_FEATURES),
        list(tf.CATEGORICAL_FEATURES),
        predictions=proba,
        test_metrics={"roc_auc": 0.7},
    )

    stored = json.loads(json.dumps(profile, allow_nan=False))

    assert stored["profile_version"] == PROFILE_VERSION
    assert stored["rows"] == len(features)
    assert set(stored["features"]) == {*tf.NUMERIC_FEATURES, *tf.CATEGORICAL_FEATURES}
    age = stored["features"]["age"]
    assert {"kind", "count", "null_rate", "mean", "std", "quantiles", "histogram"} <= set(age)
    assert "frequencies" in stored["features"]["race"]
    assert stored["prediction"]["count"] == 500
    assert stored["test_metrics"] == {"roc_auc": 0.7}
    assert load_profile(stored)["features"].keys() == stored["features"].keys()


def test_baseline_keeps_its_signature_and_now_writes_a_loadable_profile(features):
    stats = baseline(features, list(tf.NUMERIC_FEATURES), list(tf.CATEGORICAL_FEATURES))

    assert load_profile(stats)["prediction"] is None


def test_profile_of_an_unknown_column_names_it(features):
    with pytest.raises(KeyError, match="not_a_feature"):
        reference_profile(features, ["not_a_feature"], [])


def _legacy_baseline(features: pd.DataFrame) -> dict:
    """The baseline_stats.json that training wrote before drift monitoring (no profile_version, no bins)."""
    from airloop.monitoring.baseline import categorical_stats

    return {
        "rows": len(features),
        "features": {"age": numeric_stats(features["age"]), "race": categorical_stats(features["race"])},
    }


@pytest.mark.parametrize(
    ("broken", "evidence"),
    [
        (lambda profile, features: None, "no reference profile"),
        (lambda profile, features: _legacy_baseline(features), "no profile_version"),
        (lambda profile, features: {**profile, "profile_version": PROFILE_VERSION + 1}, "profile_version 2"),
        (lambda profile, features: {**profile, "features": {}}, "no features"),
        (
            lambda profile, features: {
                **profile,
                "features": {**profile["features"], "age": {**profile["features"]["age"], "shares": [1.0]}},
            },
            "'age' has 1 shares",
        ),
        (
            lambda profile, features: {
                **profile,
                "features": {**profile["features"], "race": {"kind": "categorical", "shares": [1.0, 0.0]}},
            },
            "'race' lacks",
        ),
    ],
    ids=["none", "old_version", "newer_version", "no_features", "bad_shares", "missing_fields"],
)
def test_unusable_profile_says_retrain_to_enable_drift_monitoring(features, broken, evidence):
    profile = reference_profile(features, ["age"], ["race"])

    with pytest.raises(ProfileUnavailable, match="retrain to enable drift monitoring") as raised:
        load_profile(broken(profile, features))

    assert evidence in str(raised.value)
    assert isinstance(raised.value, FinalError)
