"""The label-free performance estimate (CBPE): what calibrated probabilities imply about ROC AUC and calibration, and
on the synthetic stream, that it follows covariate drift and cannot see concept drift."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata
from sklearn import metrics

from airloop.monitoring.baseline import numeric_profile
from airloop.monitoring.drift import compare, reference_estimated_auc
from airloop.monitoring.estimate import calibration, estimate
from airloop.training import features
from airloop.usecases.readmission import synthetic
from airloop.usecases.readmission import transform as tf
from tests.specs import READMISSION

# --- pure properties ---

# Six decimals: ties and exact 0s and 1s come up, denormal products (which no model emits) do not.
probabilities = st.lists(st.floats(0.0, 1.0).map(lambda v: round(v, 6)), min_size=2, max_size=60)
# Score distributions from sharp to flat, and windows large enough for the large-sample statements.
beta = st.floats(0.5, 8.0)


def pairwise_auc(p: np.ndarray) -> float:
    """The expected-pairs definition, by brute force: sum p_i (1 - p_j) [s_i > s_j, ties 1/2] over sum p * sum 1-p."""
    above = (p[:, None] > p[None, :]) + 0.5 * (p[:, None] == p[None, :])
    return float(np.sum(p[:, None] * (1 - p[None, :]) * above) / (p.sum() * (1 - p).sum()))


def trapezoid_auc(p: np.ndarray) -> float:
    """NannyML's construction: expected TP and FP at every distinct threshold, the expected ROC curve, trapezoids."""
    thresholds = np.unique(p)[::-1]
    tp = np.array([0.0, *(p[p >= t].sum() for t in thresholds)])
    fp = np.array([0.0, *((1 - p[p >= t]).sum() for t in thresholds)])
    tpr, fpr = tp / p.sum(), fp / (1 - p).sum()
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def realised_aucs(p: np.ndarray, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and log loss of ``draws`` outcome vectors drawn as Bernoulli(p) (Mann-Whitney on midranks)."""
    y = np.random.default_rng(seed).random((draws, len(p))) < p
    k = y.sum(axis=1)
    auc = (y @ rankdata(p) - k * (k + 1) / 2) / (k * (len(p) - k))
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    loss = -(y * np.log(clipped) + ~y * np.log1p(-clipped)).mean(axis=1)
    assert auc[0] == pytest.approx(metrics.roc_auc_score(y[0], p))
    return auc, loss


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(p=probabilities.filter(lambda v: 0 < sum(v) < len(v)))
def test_estimate_is_the_area_under_the_expected_roc_curve_and_the_expected_pair_ratio(p):
    p = np.asarray(p)

    found = estimate(p).roc_auc

    assert found == pytest.approx(trapezoid_auc(p), abs=1e-9)
    assert found == pytest.approx(pairwise_auc(p), abs=1e-9)


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(p=probabilities, seed=st.integers(0, 2**32 - 1))
def test_estimate_is_the_same_for_the_same_rows_in_any_order(p, seed):
    p = np.asarray(p)
    shuffled = p[np.random.default_rng(seed).permutation(len(p))]

    assert estimate(shuffled) == estimate(p)


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(p=probabilities)
def test_estimates_lie_in_the_unit_interval_and_the_interval_holds_the_estimate(p):
    found = estimate(p)

    for value in (found.roc_auc, found.positive_rate, found.brier):
        assert value is None or 0.0 <= value <= 1.0
    assert found.log_loss >= 0.0 and found.brier <= 0.25
    if found.interval is not None:
        low, high = found.interval
        assert 0.0 <= low <= found.roc_auc <= high <= 1.0


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(value=st.floats(0.001, 0.999), n=st.integers(1, 5_000))
def test_all_equal_probabilities_estimate_a_coin_toss(value, n):
    found = estimate(np.full(n, value))

    assert found.roc_auc == pytest.approx(0.5)
    assert found.positive_rate == pytest.approx(value)
    assert found.brier == pytest.approx(value * (1 - value))


@pytest.mark.property
@settings(max_examples=20, deadline=None)
@given(a=beta, b=beta, n=st.integers(1_000, 4_000), seed=st.integers(0, 2**32 - 1))
def test_when_outcomes_follow_the_probabilities_the_realised_auc_centres_on_the_estimate_within_its_interval(
    a, b, n, seed
):
    p = np.random.default_rng(seed).beta(a, b, n)
    found = estimate(p)
    # 200 windows of outcomes drawn as Bernoulli(p) from a fixed seed. Tolerances are 5 standard errors (plus the
    # O(1/n) difference between a ratio of expectations and the expected ratio): they cannot flake.
    auc, loss = realised_aucs(p, draws=200, seed=0)
    standard_error = auc.std(ddof=1) / np.sqrt(len(auc))
    low, high = found.interval

    assert abs(auc.mean() - found.roc_auc) <= 5 * standard_error + 1 / n
    assert 0.75 <= (high - low) / 2 / 1.959964 / auc.std(ddof=1) <= 1.33  # the delta-method spread is the real one
    assert np.mean((auc >= low) & (auc <= high)) >= 0.85  # a 95% interval (4.5 standard errors of a share)
    assert abs(loss.mean() - found.log_loss) <= 5 * loss.std(ddof=1) / np.sqrt(len(loss))


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(p=probabilities, data=st.data())
def test_whole_number_weights_count_as_repeated_rows_and_only_their_ratios_matter(p, data):
    p = np.asarray(p)
    counts = np.asarray(data.draw(st.lists(st.integers(1, 4), min_size=len(p), max_size=len(p))))
    repeated = estimate(np.repeat(p, counts))

    weighted = estimate(p, weights=counts)
    scaled = estimate(p, weights=counts * 0.37)

    for found in (weighted, scaled):
        assert found.interval is None
        for field in ("roc_auc", "positive_rate", "brier", "log_loss"):
            expected = getattr(repeated, field)
            assert getattr(found, field) == (None if expected is None else pytest.approx(expected, abs=1e-9))


def test_known_answers_and_edge_cases():
    # Pairs (positive above negative, expected): 0.2*0.8*(1/2) + 0.8*0.8 + 0.8*0.2*(1/2) = 0.8 of P*N = 1.
    found = estimate([0.2, 0.8])
    assert found.roc_auc == pytest.approx(0.8)
    assert found.positive_rate == pytest.approx(0.5) and found.brier == pytest.approx(0.16)
    assert found.log_loss == pytest.approx(-(0.2 * np.log(0.2) + 0.8 * np.log(0.8)))

    certain = estimate([0.0, 0.0, 0.0])  # no row can be a positive: no pair to rank
    assert certain.roc_auc is None and certain.interval is None and certain.positive_rate == 0.0
    assert estimate([]).rows == 0 and estimate([]).roc_auc is None
    with pytest.raises(ValueError, match=r"in \[0, 1\], got \[1.5\]"):
        estimate([0.2, 1.5])
    with pytest.raises(ValueError, match="finite"):
        estimate([0.2, np.nan])
    with pytest.raises(ValueError, match="non-negative"):
        estimate([0.2, 0.3], weights=[1.0, -1.0])


def test_reference_estimate_from_the_profile_cdf_matches_the_raw_test_probabilities():
    rng = np.random.default_rng(4)
    continuous = rng.beta(2, 6, size=5_000)  # more distinct values than the CDF keeps: quantile points
    few = np.round(rng.beta(2, 6, size=5_000), 3)  # at most 1,000 distinct values: the CDF is exact

    for raw, tolerance in ((continuous, 0.003), (few, 1e-9)):
        profile = json.loads(json.dumps(numeric_profile(raw)))
        assert reference_estimated_auc(profile) == pytest.approx(estimate(raw).roc_auc, abs=tolerance)
    assert reference_estimated_auc(None) is None


def test_calibration_sets_the_mean_probability_against_the_observed_rate_where_outcomes_arrived():
    p = np.r_[np.full(100, 0.1), np.full(100, 0.5)]
    y = np.r_[np.repeat([1.0, 0.0], [10, 90]), np.repeat([1.0, 0.0], [70, 30])]
    y_with_gaps = np.r_[y, np.full(5, np.nan)]

    found = calibration(np.r_[p, np.full(5, 0.9)], y_with_gaps, bins=2)

    assert found.rows == 200
    assert found.mean_probability == pytest.approx(0.3) and found.observed_rate == pytest.approx(0.4)
    assert found.gap == pytest.approx(0.1)
    assert [b.rows for b in found.bins] == [100, 100]
    assert [b.mean_probability for b in found.bins] == pytest.approx([0.1, 0.5])
    assert [b.observed_rate for b in found.bins] == pytest.approx([0.1, 0.7])
    assert found.expected_calibration_error == pytest.approx(0.1)
    assert calibration([0.3], [np.nan]).rows == 0
    with pytest.raises(ValueError, match="0, 1 or missing"):
        calibration([0.3, 0.4], [1.0, 2.0])


# --- the synthetic stream: covariate drift is tracked, concept drift is invisible ---

TOLERANCE = 0.03
BATCH = 6_000


def _batch(seed: int, covariate: float = 0.0, concept: float = 0.0) -> pd.DataFrame:
    return tf.prepare(synthetic.generate(BATCH, seed=seed, covariate_drift=covariate, concept_drift=concept))


@pytest.fixture(scope="module")
def champion():
    """A gradient-boosting candidate fitted through airloop.training.features on 12,000 undrifted synthetic rows."""
    train = tf.prepare(synthetic.generate(12_000, seed=1))
    model = features.make_pipeline(READMISSION, "hist_gradient_boosting", {}, seed=42)
    return model.fit(features.model_inputs(READMISSION, train), features.target(READMISSION, train))


def _scored(model, batch: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return model.predict_proba(features.model_inputs(READMISSION, batch))[:, 1], features.target(
        READMISSION, batch
    ).to_numpy()


def test_estimated_auc_tracks_the_realised_auc_under_growing_covariate_drift(champion):
    seen = []
    for k, drift in enumerate((0.0, 0.5, 1.0, 1.5, 2.0)):
        proba, outcome = _scored(champion, _batch(300 + k, covariate=drift))
        seen.append((drift, estimate(proba).roc_auc, metrics.roc_auc_score(outcome, proba)))

    gaps = {drift: round(est - real, 3) for drift, est, real in seen}
    assert all(abs(gap) <= TOLERANCE for gap in gaps.values()), gaps
    # The drift changes which patients come (older, more prior stays): both figures move, and together.
    (_, first_est, first_real), (_, last_est, last_real) = seen[0], seen[-1]
    assert last_real - first_real > 0.015 and last_est - first_est > 0.015, seen


def test_estimated_auc_cannot_see_concept_drift_while_the_realised_auc_falls(champion):
    seen = []
    for drift in (0.0, 0.5, 1.0, 1.5, 2.0):
        # The same seed gives the same encounters at every level of concept drift: only the outcomes change.
        proba, outcome = _scored(champion, _batch(400, concept=drift))
        seen.append((drift, estimate(proba), metrics.roc_auc_score(outcome, proba)))

    estimated = {drift: e.roc_auc for drift, e, _ in seen}
    realised = {drift: real for drift, _, real in seen}
    gaps = {drift: round(estimated[drift] - realised[drift], 3) for drift in realised}
    assert len(set(estimated.values())) == 1, estimated  # the probabilities, so the estimate, never move
    assert abs(gaps[0.0]) <= TOLERANCE, gaps
    assert realised[2.0] < realised[0.0] - 0.08, realised
    # The gap outgrows the tolerance and keeps growing: the realised AUC falls below the interval it should be in.
    assert TOLERANCE < gaps[1.0] < gaps[2.0], gaps
    assert all(real < e.interval[0] for drift, e, real in seen if drift >= 1.0), seen


def test_concept_drift_escapes_the_features_and_the_estimate_and_only_the_outcomes_reveal_it(champion):
    reference_batch = _batch(500)
    encoder = features.feature_step(champion)
    reference_proba, reference_outcome = _scored(champion, reference_batch)
    profile = features.reference_profile_of(
        champion,
        features.model_inputs(READMISSION, _batch(501)),
        reference_proba,
        {"roc_auc": metrics.roc_auc_score(reference_outcome, reference_proba)},
    )
    window = _batch(502, concept=2.0)
    proba, outcome = _scored(champion, window)

    result = compare(profile, encoder.transform(features.model_inputs(READMISSION, window)), None, proba, outcome)

    estimated = result.performance_estimate
    assert result.drifted_features == [] and not (result.prediction and result.prediction.drifted)
    assert {h.rule for h in result.rules} == {"realised_performance"}, result.reason  # the outcomes' rule alone
    assert result.verdict == "drift"
    assert abs(estimated.drop) < TOLERANCE and not estimated.dropped
    assert estimated.labelled.rows == len(window)
    assert result.performance.roc_auc < estimated.reference_realised_roc_auc - 0.08  # only the outcomes show it
