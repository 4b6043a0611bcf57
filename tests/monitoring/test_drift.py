"""Drift statistics and the dataset verdict: a window of model features against a model version's reference profile."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics

from airloop.monitoring.baseline import CDF_POINTS, ProfileUnavailable, numeric_profile, reference_profile
from airloop.monitoring.drift import (
    SCHEMA_VERSION,
    DriftThresholds,
    EmptyWindow,
    WindowInvalid,
    chi_square,
    compare,
    js_distance,
    ks_distance,
    psi,
)
from airloop.monitoring.estimate import estimate
from airloop.usecases.readmission import transform as tf
from tests.monitoring.frames import synthetic_features
from tests.specs import READMISSION

NUMERIC = list(tf.NUMERIC_FEATURES)
CATEGORICAL = list(tf.CATEGORICAL_FEATURES)
# What the generator's covariate drift moves: its drifted columns and the features derived from them.
MOVED = {
    "age",
    "number_inpatient",
    "insulin",
    "change",
    "diabetesMed",
    "service_utilization",
    "n_medications_used",
    "n_medication_changes",
}
PRIMARY = {"age", "number_inpatient", "insulin", "service_utilization"}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """Model features of 10,000 synthetic training rows."""
    return synthetic_features(10_000, seed=1)


@pytest.fixture(scope="module")
def reference_proba() -> np.ndarray:
    """Stand-in test-set probabilities of the model."""
    return np.random.default_rng(5).beta(2, 6, size=3_000)


@pytest.fixture(scope="module")
def profile(reference, reference_proba) -> dict:
    """The reference profile as training stores it (parsed back from JSON)."""
    built = reference_profile(
        reference, NUMERIC, CATEGORICAL, reference_proba, test_metrics={"roc_auc": 0.68, "log_loss": 0.33}
    )
    return json.loads(json.dumps(built))


# --- statistics: properties and known answers ---

# Shares of at least ~0.0008 each: above PSI's epsilon, so clipping never enters the property.
shares = st.lists(st.floats(0.01, 1.0), min_size=2, max_size=12).map(lambda v: np.asarray(v) / np.sum(v))


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(p=shares, data=st.data())
def test_psi_is_zero_for_identical_shares_and_never_negative(p, data):
    q = data.draw(st.lists(st.floats(0.0, 1.0), min_size=len(p), max_size=len(p)).filter(lambda v: sum(v) > 0))
    q = np.asarray(q) / np.sum(q)

    assert psi(p, p) == 0.0
    assert psi(p, q) >= 0.0


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(p=shares, data=st.data(), t=st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted))
def test_psi_grows_as_the_current_shares_move_further_towards_another_distribution(p, data, t):
    other = data.draw(st.lists(st.floats(0.01, 1.0), min_size=len(p), max_size=len(p)))
    other = np.asarray(other) / np.sum(other)
    near, far = ((1 - w) * p + w * other for w in t)

    assert psi(p, near) <= psi(p, far) + 1e-12


@pytest.fixture(scope="module")
def normal_sample() -> tuple[np.ndarray, dict]:
    """A standard normal sample and its numeric profile."""
    sample = np.random.default_rng(3).normal(size=20_000)
    return sample, numeric_profile(sample)


@pytest.mark.property
@settings(max_examples=30, deadline=None)
@given(shift=st.floats(0.0, 2.5), step=st.floats(0.2, 1.0))
def test_psi_on_profile_bins_grows_with_a_growing_mean_shift(normal_sample, shift, step):
    sample, profile = normal_sample
    window = pd.DataFrame({"x": sample[:5_000]})
    drifts = [
        compare({"profile_version": 1, "features": {"x": profile}}, window + d).features["x"].psi
        for d in (shift, shift + step)
    ]

    assert drifts[0] < drifts[1]


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(50, 3_000),
    m=st.integers(20, 3_000),
    discrete=st.booleans(),
    shift=st.floats(-1, 1),
)
def test_ks_distance_from_the_profile_matches_scipy_on_the_raw_samples(seed, n, m, discrete, shift):
    rng = np.random.default_rng(seed)
    if discrete:
        reference, current = rng.poisson(2, n).astype(float), rng.poisson(2 + shift, m).astype(float)
    else:
        reference, current = rng.normal(size=n), rng.normal(shift, 1.3, size=m)
    profile = numeric_profile(reference)

    distance = ks_distance(profile["cdf"]["values"], profile["cdf"]["probs"], current)

    assert distance == pytest.approx(stats.ks_2samp(reference, current).statistic, abs=1 / CDF_POINTS + 1e-9)


def test_known_answers():
    # (0.25 - 0.5) ln(0.5) + (0.75 - 0.5) ln(1.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([1.0, 0.0], [1.0, 0.0]) == 0.0
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance([0.3, 0.7], [0.3, 0.7]) == 0.0
    assert ks_distance([0.0, 1.0], [0.5, 1.0], np.array([1.0, 1.0, 1.0, 1.0])) == 0.5
    table = np.array([[30.0, 50.0, 20.0], [20.0, 60.0, 20.0]])
    expected = stats.chi2_contingency(table, correction=False)
    assert chi_square(table[0], table[1]) == pytest.approx((expected.statistic, expected.pvalue))


def test_chi_square_pools_sparse_bins_instead_of_reporting_an_artefact_p_value():
    # A category seen twice in one half only: an unpooled test gives a tiny p-value for it.
    reference = np.array([500.0, 480.0, 0.0])
    current = np.array([490.0, 488.0, 2.0])

    statistic, p_value = chi_square(reference, current)

    assert p_value > 0.05
    assert statistic < 5


# --- the verdict ---


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_undrifted_windows_are_no_drift(profile, reference_proba, seed):
    window = synthetic_features(3_000, seed=seed)
    proba = np.random.default_rng(seed).beta(2, 6, size=len(window))

    result = compare(profile, window, probabilities=proba)

    assert result.verdict == "no_drift", result.reason
    assert result.drifted_features == []
    assert result.prediction is not None and not result.prediction.drifted
    assert max(f.psi for f in result.features.values()) < 0.05


def test_covariate_drift_is_flagged_on_the_features_it_moves_and_not_on_the_others(profile):
    window = synthetic_features(4_000, seed=7, covariate_drift=1.5)

    result = compare(profile, window, DriftThresholds(drifted_share=0.05))

    assert PRIMARY <= set(result.drifted_features) <= MOVED
    assert all(result.features[name].p_value_adjusted < 0.001 for name in MOVED)
    assert all(result.features[name].significant for name in MOVED)
    assert max(f.psi for name, f in result.features.items() if name not in MOVED) < 0.05
    assert result.verdict == "drift"
    assert "age" in result.reason


def test_two_random_halves_of_one_period_are_no_drift_even_with_a_sparse_category_in_one_half():
    frame = synthetic_features(6_000, seed=21)
    frame.loc[frame.index[:3], "medical_specialty"] = "Dermatology"  # only in the first rows
    halves = np.random.default_rng(0).permutation(len(frame)) < len(frame) // 2
    first, second = frame.loc[~halves], frame.loc[halves]
    assert (first["medical_specialty"] == "Dermatology").sum() != (second["medical_specialty"] == "Dermatology").sum()

    result = compare(reference_profile(first, NUMERIC, CATEGORICAL), second)

    assert result.verdict == "no_drift", result.reason
    assert result.drifted_features == []
    assert min(f.p_value_adjusted for f in result.features.values()) > 0.01


def test_a_change_in_how_often_a_field_is_missing_is_drift(profile):
    window = synthetic_features(3_000, seed=8)
    gone = np.random.default_rng(0).random(len(window)) < 0.3
    window.loc[gone, "num_lab_procedures"] = np.nan
    window.loc[gone, "race"] = "missing"

    result = compare(profile, window)

    assert {"num_lab_procedures", "race"} <= set(result.drifted_features)
    assert result.features["num_lab_procedures"].null_rate_current == pytest.approx(gone.mean())
    assert result.features["num_lab_procedures"].bins[-1] == "missing"


def test_values_above_the_training_maximum_show_as_drift(profile):
    window = synthetic_features(3_000, seed=8)
    window["num_medications"] = window["num_medications"] + 100

    result = compare(profile, window)

    feature = result.features["num_medications"]
    assert feature.drifted
    assert feature.bins[-2].startswith("> ") and feature.current_shares[-2] == 1.0


def test_a_mostly_zero_count_that_stops_being_zero_is_drift(profile):
    window = synthetic_features(3_000, seed=8)
    assert profile["features"]["number_emergency"]["shares"][1] > 0.9  # the bin of 0 alone
    window["number_emergency"] = np.where(np.arange(len(window)) % 4 == 0, 2.0, window["number_emergency"])

    result = compare(profile, window)

    assert "number_emergency" in result.drifted_features


def test_categorical_dtype_windows_are_read_like_strings(profile):
    window = synthetic_features(1_000, seed=2)
    as_category = window.astype({name: "category" for name in CATEGORICAL})

    assert compare(profile, as_category).to_dict() == compare(profile, window).to_dict()


def test_prediction_drift_alone_alerts_without_retraining_and_realised_performance_is_reported(profile):
    window = synthetic_features(2_000, seed=9)
    rng = np.random.default_rng(9)
    proba = rng.beta(6, 2, size=len(window))
    outcomes = (rng.random(len(window)) < proba).astype(float)
    outcomes[::3] = np.nan  # feedback not arrived yet

    result = compare(profile, window, probabilities=proba, outcomes=outcomes)

    assert result.drifted_features == []
    assert result.prediction.drifted
    assert result.verdict == "alert" and not result.retrain, result.reason
    assert "prediction_drift" in {h.rule for h in result.rules} and "prediction PSI" in result.reason
    labelled = ~np.isnan(outcomes)
    assert result.performance.labelled_rows == labelled.sum()
    assert result.performance.roc_auc == pytest.approx(metrics.roc_auc_score(outcomes[labelled], proba[labelled]))
    assert result.performance.reference_roc_auc == 0.68
    assert result.performance.reference_log_loss == 0.33


def test_a_drop_of_the_estimated_auc_beyond_its_interval_alone_retrains_naming_it(profile, reference_proba):
    window = synthetic_features(2_000, seed=10)
    # The same mean risk, squeezed together: rows the model can barely tell apart, no outcome needed to see it.
    proba = np.random.default_rng(10).beta(24, 72, size=len(window))
    quiet_predictions = DriftThresholds(prediction_psi=50.0)  # isolate the new signal from prediction drift

    result = compare(profile, window, quiet_predictions, probabilities=proba)
    relaxed = compare(profile, window, DriftThresholds(prediction_psi=50.0, max_estimated_auc_drop=0.5), proba)

    estimated = result.performance_estimate
    assert result.drifted_features == [] and not result.prediction.drifted
    assert result.verdict == "drift" and result.retrain and "(limit 0.05), beyond its interval" in result.reason
    assert {(h.rule, h.decision) for h in result.rules} == {
        ("estimated_performance", "alert"),
        ("estimated_performance", "retrain"),
    }
    assert estimated.dropped and estimated.drop > 0.05
    assert estimated.estimated_roc_auc == pytest.approx(estimate(proba).roc_auc)
    assert estimated.reference_estimated_roc_auc == pytest.approx(estimate(reference_proba).roc_auc, abs=0.003)
    assert estimated.reference_realised_roc_auc == 0.68
    assert relaxed.verdict == "no_drift" and not relaxed.performance_estimate.dropped


def test_the_estimate_is_reported_beside_the_realised_figures_of_the_labelled_rows(profile):
    window = synthetic_features(2_000, seed=11)
    rng = np.random.default_rng(11)
    proba = rng.beta(2, 6, size=len(window))
    outcomes = (rng.random(len(window)) < proba).astype(float)
    half = len(window) // 2
    outcomes[:half] = np.nan  # the newer half: feedback not arrived yet

    result = compare(profile, window, probabilities=proba, outcomes=outcomes)
    unlabelled = compare(profile, window, probabilities=proba)

    estimated, labelled = result.performance_estimate, result.performance_estimate.labelled
    assert estimated.rows == len(window) and labelled.rows == result.performance.labelled_rows == len(window) - half
    assert labelled.estimated_roc_auc == pytest.approx(estimate(proba[half:]).roc_auc)
    low, high = labelled.interval
    assert low <= result.performance.roc_auc <= high  # calibrated by construction: the realised AUC is inside
    assert labelled.observed_rate == pytest.approx(np.nanmean(outcomes))
    assert estimated.expected_positive_rate == pytest.approx(proba.mean())
    assert unlabelled.performance is None and unlabelled.performance_estimate.labelled is None
    assert unlabelled.performance_estimate.estimated_roc_auc == estimated.estimated_roc_auc
    assert compare(profile, window).performance_estimate is None  # no probabilities, nothing to estimate


def test_per_feature_override_and_weights_change_what_counts(profile):
    window = synthetic_features(3_000, seed=7, covariate_drift=1.5)
    others = [name for name in [*NUMERIC, *CATEGORICAL] if name != "age"]

    relaxed = compare(profile, window, DriftThresholds(psi_overrides={"age": 5.0}))
    only_age = compare(profile, window, DriftThresholds(weights=dict.fromkeys(others, 0.0)))
    default = compare(profile, window)

    assert "age" not in relaxed.drifted_features and relaxed.features["age"].psi_threshold == 5.0
    # A few of 49 features: below the share; without importances every drifted feature alerts, none retrains.
    assert default.verdict == "alert" and default.drifted_share < 0.3 and not default.retrain
    assert only_age.drifted_share == 1.0 and only_age.verdict == "drift"
    assert [h.rule for h in only_age.rules if h.decision == "retrain"] == ["drifted_share"]


def test_below_the_minimum_row_count_there_is_no_verdict(profile):
    result = compare(profile, synthetic_features(300, seed=2, covariate_drift=2.0))

    assert result.verdict == "insufficient_data"
    assert "fewer than the 500" in result.reason
    assert result.features["age"].drifted  # the statistics are still there to look at


def test_result_is_strict_json_with_a_schema_version(profile):
    window = synthetic_features(1_000, seed=2)
    window.loc[:, "age"] = np.nan  # KS undefined: None, not NaN

    data = json.loads(json.dumps(compare(profile, window).to_dict(), allow_nan=False))

    assert data["schema_version"] == SCHEMA_VERSION
    assert data["features"]["age"]["statistic"] is None
    assert data["thresholds"]["psi"] == 0.2
    assert data["thresholds"]["max_estimated_auc_drop"] == 0.05
    assert set(data["features"]) == {*NUMERIC, *CATEGORICAL}


@pytest.mark.property
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_verdict_is_invariant_to_row_order(profile, seed):
    window = synthetic_features(800, seed=12, covariate_drift=1.0)
    proba = np.random.default_rng(12).beta(2, 5, size=len(window))
    order = np.random.default_rng(seed).permutation(len(window))

    ordered = compare(profile, window, probabilities=proba).to_dict()
    shuffled = compare(profile, window.iloc[order], probabilities=proba[order]).to_dict()

    assert shuffled == ordered


def test_real_rows_first_half_against_second_half_give_a_verdict_and_a_report(real_sample, tmp_path):
    from datetime import UTC, datetime

    from airloop.data.sources import read_csv_bytes
    from airloop.monitoring.report import ReportContext, publish_report, render_html, render_json
    from airloop.storage import Storage

    features = tf.features_from_frame(tf.prepare(read_csv_bytes(real_sample, READMISSION)), tf.default_spec())
    half = len(features) // 2

    result = compare(reference_profile(features.iloc[:half], NUMERIC, CATEGORICAL), features.iloc[half:])

    # The sample is in encounter order: its later half really moved (discharge_disposition_id, PSI above 3).
    assert result.verdict in {"no_drift", "alert", "drift"}
    assert result.rows == len(features) - half
    context = ReportContext(
        "real-sample", "1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), "dataset:real-halves"
    )
    report = render_json(result, context)
    location = publish_report(Storage.from_url(tmp_path), report, render_html(report))
    page = Storage.from_url(location.html_url.rsplit("/", 1)[0]).read_text("report.html")
    assert f"VERDICT: {result.verdict.replace('_', ' ').upper()}" in page.upper()
    assert (
        json.loads(Storage.from_url(location.json_url.rsplit("/", 1)[0]).read_text("report.json"))["rows"]
        == result.rows
    )


# --- bad input ---


def test_empty_window_is_refused(profile, reference):
    with pytest.raises(EmptyWindow, match="no rows"):
        compare(profile, reference.iloc[:0])


def test_window_missing_columns_names_them(profile, reference):
    with pytest.raises(WindowInvalid, match=r"lacks profiled feature columns \['age', 'race'\]"):
        compare(profile, reference.drop(columns=["age", "race"]))


@pytest.mark.parametrize(
    ("column", "values", "evidence"),
    [
        ("age", "[70-80)", "numeric feature 'age' has dtype"),
        ("admission_type_id", 1, "categorical feature 'admission_type_id' holds integer values"),
    ],
)
def test_window_column_of_the_wrong_type_is_refused(profile, reference, column, values, evidence):
    window = reference.head(600).assign(**{column: values})

    with pytest.raises(WindowInvalid, match=evidence):
        compare(profile, window)


def test_bad_probabilities_and_outcomes_are_refused(profile, reference):
    window = reference.head(600)

    with pytest.raises(WindowInvalid, match="shape"):
        compare(profile, window, probabilities=np.full(10, 0.5))
    with pytest.raises(WindowInvalid, match=r"outside \[0, 1\]"):
        compare(profile, window, probabilities=np.full(600, 1.5))
    with pytest.raises(WindowInvalid, match="outcomes must be 0, 1 or missing"):
        compare(profile, window, probabilities=np.full(600, 0.5), outcomes=np.full(600, 2.0))
    with pytest.raises(WindowInvalid, match="without the probabilities"):
        compare(profile, window, outcomes=np.zeros(600))
    with pytest.raises(WindowInvalid, match="not a DataFrame"):
        compare(profile, window.to_dict("records"))


def test_missing_or_old_profile_says_retrain(reference):
    old = {"rows": 10, "features": {"age": {"kind": "numeric", "null_rate": 0.0}}}

    with pytest.raises(ProfileUnavailable, match="retrain to enable drift monitoring"):
        compare(None, reference)
    with pytest.raises(ProfileUnavailable, match="no profile_version"):
        compare(old, reference)


def test_thresholds_refuse_nonsense():
    with pytest.raises(ValueError, match="positive"):
        DriftThresholds(psi=0)
    with pytest.raises(ValueError, match="drifted_share"):
        DriftThresholds(drifted_share=1.5)
    with pytest.raises(ValueError, match="max_estimated_auc_drop"):
        DriftThresholds(max_estimated_auc_drop=0)
