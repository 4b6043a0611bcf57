"""Always-valid A/B decisions: no false promotions under hourly looks, real differences found, no data means wait."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats
from sklearn import metrics

from airloop.errors import FinalError
from airloop.experiments.sequential import (
    HIGHER_IS_BETTER,
    LOG_LOSS_EPSILON,
    METRICS,
    MIN_ROWS,
    Difference,
    InvalidEvaluation,
    always_valid_p,
    arm_stats,
    confidence_sequence,
    decide,
    default_tau2,
    difference,
    paired_difference,
    population_metric,
    simulate,
)

ALPHA = 0.05
LOSSES = ("log_loss", "brier")


def _model(rng: np.random.Generator, y: np.ndarray, auc: float, base_rate: float = 0.3) -> np.ndarray:
    """Calibrated probabilities of a model with population ROC AUC ``auc`` on outcomes ``y``."""
    d = math.sqrt(2) * stats.norm.ppf(auc)
    score = rng.standard_normal(len(y)) + d * (y - 0.5)
    return special.expit(special.logit(base_rate) + d * score)


def _arm(seed: int, n: int, auc: float = 0.7, base_rate: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < base_rate).astype(float)
    return y, _model(rng, y, auc, base_rate)


def _shadow(seed: int, n: int, champion: float = 0.7, challenger: float = 0.7) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    return y, _model(rng, y, champion), _model(rng, y, challenger)


def _diff(metric: str, paired: bool, seed: int, n: int, champion: float, challenger: float) -> Difference | None:
    if paired:
        return paired_difference(metric, *_shadow(seed, n, champion, challenger))
    return difference(metric, *_arm(seed, n, champion), *_arm(seed + 1, n + 17, challenger))


def _reference_delong(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """DeLong (1988) from its definition: the full positive x negative comparison matrix."""
    pos, neg = p[y == 1], p[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(psi.mean()), float(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))


def _bootstrap_auc(y: np.ndarray, scores: np.ndarray, seed: int, resamples: int = 2_000) -> np.ndarray:
    """ROC AUC of each bootstrap resample (Mann-Whitney from average ranks, vectorised over resamples)."""
    index = np.random.default_rng(seed).integers(0, len(y), size=(resamples, len(y)))
    yy, pp = y[index], scores[index]
    ranks = stats.rankdata(pp, axis=1)
    m = yy.sum(axis=1)
    return ((ranks * yy).sum(axis=1) - m * (m + 1) / 2) / (m * (len(y) - m))


# --- known answers ---


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 400), decimals=st.sampled_from([None, 1, 2]))
def test_roc_auc_equals_sklearn_and_delong_variance_equals_its_definition(seed, n, decimals):
    y, p = _arm(seed, n)
    if decimals is not None:
        p = np.round(p, decimals)  # many ties
    assume(y.sum() >= 2 and (1 - y).sum() >= 2)

    stats_ = arm_stats(y, p)
    auc, variance = _reference_delong(y, p)
    z = stats.norm.ppf(0.975)

    assert stats_.roc_auc == pytest.approx(metrics.roc_auc_score(y, p), abs=1e-12)
    assert stats_.roc_auc == pytest.approx(auc, abs=1e-12)
    expected = (max(0.0, auc - z * math.sqrt(variance)), min(1.0, auc + z * math.sqrt(variance)))
    assert stats_.roc_auc_ci == pytest.approx(expected, abs=1e-12)


def test_auc_differences_use_delong_variances_that_match_the_bootstrap():
    y_a, p_a = _arm(11, 800, auc=0.7)
    y_b, p_b = _arm(12, 800, auc=0.75)
    y, shadow_a, shadow_b = _shadow(13, 800, 0.7, 0.75)

    unpaired = difference("roc_auc", y_a, p_a, y_b, p_b)
    paired = paired_difference("roc_auc", y, shadow_a, shadow_b)
    boot_unpaired = _bootstrap_auc(y_b, p_b, seed=1) - _bootstrap_auc(y_a, p_a, seed=2)
    boot_paired = _bootstrap_auc(y, shadow_b, seed=3) - _bootstrap_auc(y, shadow_a, seed=3)  # same resampled rows

    assert unpaired.estimate == pytest.approx(metrics.roc_auc_score(y_b, p_b) - metrics.roc_auc_score(y_a, p_a))
    assert unpaired.variance == pytest.approx(_reference_delong(y_a, p_a)[1] + _reference_delong(y_b, p_b)[1])
    assert unpaired.variance == pytest.approx(boot_unpaired.var(), rel=0.12)
    assert paired.estimate == pytest.approx(
        metrics.roc_auc_score(y, shadow_b) - metrics.roc_auc_score(y, shadow_a), abs=1e-12
    )
    assert paired.variance == pytest.approx(boot_paired.var(), rel=0.12)
    # Shadow mode pays off: the two AUCs on the same rows are correlated, so their difference varies less.
    assert paired.variance < _reference_delong(y, shadow_a)[1] + _reference_delong(y, shadow_b)[1]


@pytest.mark.parametrize("metric", LOSSES)
def test_loss_differences_and_variances_match_direct_numpy(metric):
    y_a, p_a = _arm(21, 700)
    y_b, p_b = _arm(22, 500, auc=0.74)
    p_a[:3] = [0.0, 1.0, 1e-9]  # clipped for the log loss

    def losses(y, p):
        if metric == "brier":
            return (p - y) ** 2
        q = np.clip(p, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
        return -(y * np.log(q) + (1 - y) * np.log(1 - q))

    unpaired = difference(metric, y_a, p_a, y_b, p_b)
    y, shadow_a, shadow_b = _shadow(23, 600, 0.7, 0.74)
    paired = paired_difference(metric, y, shadow_a, shadow_b)
    gain = losses(y, shadow_a) - losses(y, shadow_b)
    sk = {"brier": metrics.brier_score_loss, "log_loss": lambda y, p: metrics.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7))}

    assert unpaired.estimate == pytest.approx(sk[metric](y_a, p_a) - sk[metric](y_b, p_b), rel=1e-9)
    assert unpaired.variance == pytest.approx(
        np.var(losses(y_a, p_a), ddof=1) / 700 + np.var(losses(y_b, p_b), ddof=1) / 500, rel=1e-9
    )
    assert (unpaired.n_champion, unpaired.n_challenger, unpaired.paired) == (700, 500, False)
    assert paired.estimate == pytest.approx(gain.mean(), rel=1e-9)
    assert paired.variance == pytest.approx(np.var(gain, ddof=1) / 600, rel=1e-9)
    assert (paired.n_champion, paired.paired) == (600, True)
    assert not HIGHER_IS_BETTER[metric] and HIGHER_IS_BETTER["roc_auc"]


def test_arm_stats_report_each_metric_with_its_display_interval():
    y, p = _arm(31, 2_000)
    y_with_unlabelled = np.append(y, [np.nan, np.nan])

    found = arm_stats(y_with_unlabelled, np.append(p, [0.2, 0.9]), level=0.9)
    z, n, rate = stats.norm.ppf(0.95), 2_000, y.mean()
    wilson = stats.binomtest(int(y.sum()), n).proportion_ci(0.9, method="wilson")
    brier = (p - y) ** 2

    assert found.labelled == n
    assert found.positive_rate == pytest.approx(rate)
    assert found.positive_rate_ci == pytest.approx((wilson.low, wilson.high), rel=1e-9)
    assert found.mean_probability == pytest.approx(p.mean())
    assert found.brier == pytest.approx(metrics.brier_score_loss(y, p))
    assert found.brier_ci == pytest.approx(
        (brier.mean() - z * brier.std(ddof=1) / math.sqrt(n), brier.mean() + z * brier.std(ddof=1) / math.sqrt(n))
    )
    assert found.log_loss == pytest.approx(metrics.log_loss(y, p))
    assert found.log_loss_ci[0] < found.log_loss < found.log_loss_ci[1]
    assert found.roc_auc_ci[0] < found.roc_auc < found.roc_auc_ci[1]
    json.dumps(found.to_dict())


def test_the_boundary_is_where_the_normal_mixture_likelihood_ratio_reaches_one_over_alpha():
    """The radius is checked against the mixture integral itself, not against the same closed form."""
    variance, tau2 = 0.01**2, 0.02**2
    diff = Difference("roc_auc", 0.0, variance, 1_000, 1_000, paired=False)
    _, radius = confidence_sequence(diff, ALPHA, tau2)
    sd = math.sqrt(variance)

    def ratio(theta: float) -> float:
        return stats.norm.pdf(radius, theta, sd) / stats.norm.pdf(radius, 0, sd) * stats.norm.pdf(theta, 0, tau2**0.5)

    mixture, _ = integrate.quad(ratio, -1, 1, points=[0, radius], limit=200)

    assert mixture == pytest.approx(1 / ALPHA, rel=1e-6)  # ln(1/alpha), two-sided: no alpha/2 split
    at_boundary = Difference("roc_auc", radius, variance, 1_000, 1_000, paired=False)
    assert always_valid_p(at_boundary, tau2) == pytest.approx(ALPHA, rel=1e-9)


# --- properties of the boundary and the decision ---

variances = st.floats(1e-8, 1e-1)
alphas = st.floats(0.001, 0.5)
tau2s = st.floats(1e-6, 1e-1)


@pytest.mark.property
@settings(max_examples=80, deadline=None)
@given(estimate=st.floats(-1, 1), variance=variances, shrink=st.floats(0.01, 0.99), alpha=alphas, tau2=tau2s)
def test_the_confidence_sequence_contains_the_estimate_narrows_with_variance_and_beats_no_fixed_interval(
    estimate, variance, shrink, alpha, tau2
):
    wide = Difference("log_loss", estimate, variance, 500, 500, paired=False)
    narrow = Difference("log_loss", estimate, variance * shrink, 500, 500, paired=False)

    lo, hi = confidence_sequence(wide, alpha, tau2)
    narrow_lo, narrow_hi = confidence_sequence(narrow, alpha, tau2)
    fixed = stats.norm.ppf(1 - alpha / 2) * math.sqrt(variance)

    assert lo < estimate < hi
    assert hi - lo == pytest.approx(2 * (hi - estimate))
    assert narrow_hi - narrow_lo < hi - lo
    assert hi - estimate > fixed  # the price of looking at every hour


@pytest.mark.property
@settings(max_examples=80, deadline=None)
@given(estimate=st.floats(-1, 1), variance=variances, alpha=alphas, tau2=tau2s)
def test_the_always_valid_p_value_is_in_0_1_and_agrees_with_the_interval(estimate, variance, alpha, tau2):
    diff = Difference("brier", estimate, variance, 500, 500, paired=True)

    p = always_valid_p(diff, tau2)
    lo, hi = confidence_sequence(diff, alpha, tau2)

    assert 0 < p <= 1
    if p < alpha * (1 - 1e-9):
        assert not lo <= 0 <= hi
    if p > alpha * (1 + 1e-9):
        assert lo < 0 < hi


@pytest.mark.property
@settings(max_examples=30, deadline=None)
@given(
    metric=st.sampled_from(METRICS),
    paired=st.booleans(),
    seed=st.integers(0, 2**31),
    n=st.integers(60, 1_500),
    qualities=st.tuples(st.floats(0.55, 0.85), st.floats(0.55, 0.85)),
)
def test_decide_is_invariant_to_row_order(metric, paired, seed, n, qualities):
    rng = np.random.default_rng(seed)
    if paired:
        y, p_a, p_b = _shadow(seed, n, *qualities)
        order = rng.permutation(n)
        before, after = (
            paired_difference(metric, y, p_a, p_b),
            paired_difference(metric, *(a[order] for a in (y, p_a, p_b))),
        )
    else:
        (y_a, p_a), (y_b, p_b) = _arm(seed, n, qualities[0]), _arm(seed + 1, n, qualities[1])
        a, b = rng.permutation(n), rng.permutation(n)
        before = difference(metric, y_a, p_a, y_b, p_b)
        after = difference(metric, y_a[a], p_a[a], y_b[b], p_b[b])
    assume(before is not None)

    first, second = (decide(d, min_effect=0.0, alpha=ALPHA, min_rows=50) for d in (before, after))

    assert after.estimate == pytest.approx(before.estimate, rel=1e-9, abs=1e-12)
    assert after.variance == pytest.approx(before.variance, rel=1e-9)
    assert first.action == second.action
    assert first.interval == pytest.approx(second.interval, rel=1e-9, abs=1e-12)
    assert first.p_value == pytest.approx(second.p_value, rel=1e-6, abs=1e-300)


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(
    metric=st.sampled_from(METRICS),
    paired=st.booleans(),
    seed=st.integers(0, 2**31),
    n=st.integers(100, 3_000),
    qualities=st.tuples(st.floats(0.55, 0.9), st.floats(0.55, 0.9)),
)
def test_swapping_champion_and_challenger_negates_the_estimate_and_mirrors_the_decision(
    metric, paired, seed, n, qualities
):
    if paired:
        y, p_a, p_b = _shadow(seed, n, *qualities)
        forward, backward = paired_difference(metric, y, p_a, p_b), paired_difference(metric, y, p_b, p_a)
    else:
        (y_a, p_a), (y_b, p_b) = _arm(seed, n, qualities[0]), _arm(seed + 1, n, qualities[1])
        forward, backward = difference(metric, y_a, p_a, y_b, p_b), difference(metric, y_b, p_b, y_a, p_a)
    assume(forward is not None)
    mirror = {"promote": "reject", "reject": "promote", "continue": "continue"}

    there, back = (decide(d, min_effect=0.0, alpha=ALPHA) for d in (forward, backward))

    assert backward.estimate == -forward.estimate
    assert backward.variance == forward.variance
    assert back.action == mirror[there.action]
    assert back.interval == pytest.approx((-there.interval[1], -there.interval[0]))


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(metric=st.sampled_from(LOSSES), seed=st.integers(0, 2**31), n=st.integers(2, 2_000))
def test_paired_and_unpaired_agree_on_the_point_estimate_of_a_loss_on_the_same_rows(metric, seed, n):
    y, p_a, p_b = _shadow(seed, n, 0.65, 0.75)

    unpaired = difference(metric, y, p_a, y, p_b)
    paired = paired_difference(metric, y, p_a, p_b)

    assert paired.estimate == pytest.approx(unpaired.estimate, rel=1e-9, abs=1e-12)


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(
    estimate=st.floats(0.002, 0.05).flatmap(lambda x: st.sampled_from([x, -x])),
    sd=st.floats(0.2, 1.0),
    rows=st.tuples(st.integers(100, 5_000), st.integers(100, 5_000)),
    paired=st.booleans(),
)
def test_rows_needed_is_what_it_takes_for_the_same_estimate_to_decide(estimate, sd, rows, paired):
    a, b = (rows[0], rows[0]) if paired else rows

    def at(extra: int) -> Difference:
        variance = sd**2 / (a + extra) if paired else sd**2 * (1 / (a + extra) + 1 / (b + extra))
        return Difference("log_loss", estimate, variance, a + extra, b + extra, paired)

    now = decide(at(0), min_effect=0.0, alpha=ALPHA)
    assume(now.action == "continue")

    assert now.rows_needed is not None and now.rows_needed > 0
    assert decide(at(now.rows_needed), min_effect=0.0, alpha=ALPHA).action != "continue"
    assert decide(at(now.rows_needed - 1), min_effect=0.0, alpha=ALPHA).action == "continue"


def test_promote_needs_the_whole_interval_above_the_minimum_effect():
    diff = Difference("roc_auc", 0.03, 0.002**2, 20_000, 20_000, paired=False)

    assert decide(diff, min_effect=0.01, alpha=ALPHA).action == "promote"
    held = decide(diff, min_effect=0.025, alpha=ALPHA)
    assert held.action == "continue"
    assert "minimum effect" not in held.reason or held.rows_needed is not None
    below = decide(Difference("roc_auc", 0.005, 0.0001**2, 20_000, 20_000, False), min_effect=0.01, alpha=ALPHA)
    assert below.action == "continue" and below.rows_needed is None
    assert "below the minimum effect of 0.01" in below.reason


def test_a_decision_reads_as_one_sentence_with_its_numbers():
    promoted = decide(Difference("log_loss", 0.02, 0.003**2, 4_000, 3_900, False), min_effect=0.0, alpha=ALPHA)
    rejected = decide(Difference("roc_auc", -0.04, 0.01**2, 2_500, 2_500, True), min_effect=0.0, alpha=ALPHA)

    assert promoted.action == "promote" and promoted.rows_needed is None
    assert promoted.reason.startswith("Promote: the challenger's advantage in log loss is +0.02 (always-valid 95%")
    assert "4,000 champion and 3,900 challenger labelled rows" in promoted.reason
    assert promoted.interval[0] > 0 and promoted.p_value <= ALPHA
    assert rejected.action == "reject" and rejected.interval[1] < 0
    assert "ROC AUC is -0.04" in rejected.reason and "significantly worse" in rejected.reason
    assert json.loads(json.dumps(rejected.to_dict()))["action"] == "reject"


# --- repeated looks: A/A false promotions and power ---


def _slack(n: int) -> float:
    return ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / n)


@pytest.mark.parametrize(
    ("metric", "paired", "rows_per_look"),
    [
        ("log_loss", False, 200),
        ("log_loss", True, 200),
        ("brier", False, 200),
        ("brier", True, 200),
        ("roc_auc", False, 120),
        ("roc_auc", True, 120),
    ],
)
def test_an_aa_test_looked_at_20_times_promotes_no_more_than_alpha_but_a_naive_z_test_does(
    metric, paired, rows_per_look
):
    common = {"metric": metric, "paired": paired, "alpha": ALPHA, "min_effect": 0.0, "seed": 7}
    result = simulate(400, 20, rows_per_look, **common)
    # Also with the mixing variance at its sharpest for the middle look (Howard et al.'s rho), the least
    # conservative setting: validity must not rest on a conservative tau².
    sharp_tau2 = 8 * float(np.median(result.variances[:, 9]))
    sharp = simulate(400, 20, rows_per_look, tau2=sharp_tau2, **common)
    z = result.estimates / np.sqrt(result.variances)
    naive_any_look = float(np.mean((z >= stats.norm.ppf(1 - ALPHA / 2)).any(axis=1)))
    naive_last_look = float(np.mean(z[:, -1] >= stats.norm.ppf(1 - ALPHA / 2)))

    assert result.true_difference == pytest.approx(0.0, abs=1e-12)
    assert result.false_promotion_rate is not None and result.power is None
    assert result.false_promotion_rate <= _slack(400)
    assert sharp.false_promotion_rate <= _slack(400)
    # The same statistic, recomputed as if each look were the only one: fine once, wrong when repeated.
    assert naive_last_look <= _slack(400)
    assert naive_any_look > ALPHA
    assert naive_any_look > 4 * max(result.false_promotion_rate, sharp.false_promotion_rate)


@pytest.mark.parametrize(
    ("metric", "paired", "worse", "better", "rows_per_look"),
    [
        ("log_loss", False, 0.66, 0.77, 600),
        ("roc_auc", False, 0.66, 0.76, 250),
        ("log_loss", True, 0.70, 0.74, 200),
        ("brier", True, 0.70, 0.74, 200),
        ("roc_auc", True, 0.70, 0.74, 200),
    ],
)
def test_a_clearly_better_challenger_is_promoted_and_a_clearly_worse_one_rejected(
    metric, paired, worse, better, rows_per_look
):
    common = {"metric": metric, "paired": paired, "alpha": ALPHA, "min_effect": 0.0}

    up = simulate(200, 20, rows_per_look, champion_quality=worse, challenger_quality=better, seed=3, **common)
    down = simulate(200, 20, rows_per_look, champion_quality=better, challenger_quality=worse, seed=4, **common)

    assert up.true_difference > 0 and up.power is not None
    assert up.power >= 0.8
    assert up.rejections == 0
    assert down.true_difference < 0 and down.false_promotion_rate == 0
    assert down.rejection_rate >= 0.8
    # The simulated estimates centre on the population difference the simulation was built for.
    last = up.estimates[:, -1]
    assert np.mean(last) == pytest.approx(up.true_difference, abs=4 * np.std(last) / math.sqrt(len(last)))


def test_population_metrics_of_the_simulated_models_improve_with_quality():
    for metric in METRICS:
        values = [population_metric(metric, q, 0.2) for q in (0.6, 0.7, 0.8)]
        assert values == sorted(values, reverse=not HIGHER_IS_BETTER[metric])
    y, p = _arm(41, 200_000, auc=0.72, base_rate=0.2)
    assert population_metric("log_loss", 0.72, 0.2) == pytest.approx(metrics.log_loss(y, p), rel=0.01)
    assert population_metric("brier", 0.72, 0.2) == pytest.approx(metrics.brier_score_loss(y, p), rel=0.01)


# --- no rows yet, and bad input ---


def test_an_experiment_without_labelled_rows_keeps_running():
    nothing = difference("log_loss", [], [], [], [])
    unlabelled = paired_difference("roc_auc", [np.nan] * 5, [0.1] * 5, [0.2] * 5)
    one_class = difference("roc_auc", [1, 1, 1], [0.2, 0.3, 0.4], [0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8])

    assert nothing is None and unlabelled is None and one_class is None
    for diff in (nothing, unlabelled, one_class):
        decision = decide(diff, min_effect=0.0, alpha=ALPHA)
        assert decision.action == "continue"
        assert "labelled rows" in decision.reason
        assert decision.interval == (-math.inf, math.inf) and decision.p_value == 1.0
    empty = arm_stats([], [])
    assert empty.labelled == 0
    assert all(v is None for k, v in vars(empty).items() if k not in ("labelled", "level"))
    assert arm_stats([1, 1], [0.4, 0.6]).roc_auc is None  # one class: AUC undefined, not an error


def test_too_few_rows_keep_running_and_say_how_many_more():
    y, p_a, p_b = _shadow(51, 40, 0.6, 0.9)

    decision = decide(paired_difference("log_loss", y, p_a, p_b), min_effect=0.0, alpha=ALPHA)

    assert decision.action == "continue"
    assert f"fewer than the {MIN_ROWS} per arm" in decision.reason
    assert decision.rows_needed >= MIN_ROWS - 40


def test_identical_models_in_shadow_mode_are_never_promoted():
    y, p, _ = _shadow(52, 1_000)

    decision = decide(paired_difference("brier", y, p, p), min_effect=0.0, alpha=ALPHA)

    assert decision.action == "continue"
    assert "no measurable variance" in decision.reason


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, math.nan, "0.05", None])
def test_an_invalid_alpha_is_refused_by_name(alpha):
    diff = Difference("brier", 0.01, 1e-5, 500, 500, paired=False)

    with pytest.raises(InvalidEvaluation, match="alpha"):
        decide(diff, min_effect=0.0, alpha=alpha)
    with pytest.raises(InvalidEvaluation, match="alpha"):
        confidence_sequence(diff, alpha, 1e-4)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"min_effect": -0.01}, "min_effect"),
        ({"min_effect": math.inf}, "min_effect"),
        ({"tau2": 0.0}, "tau2"),
        ({"tau2": -1.0}, "tau2"),
        ({"min_rows": 0}, "min_rows"),
    ],
)
def test_other_invalid_arguments_are_refused_by_name(arguments, named):
    diff = Difference("brier", 0.01, 1e-5, 500, 500, paired=False)

    with pytest.raises(InvalidEvaluation, match=named):
        decide(diff, **{"min_effect": 0.0, "alpha": ALPHA, **arguments})


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: difference("brier", [0, 1, 0], [0.1, 0.2], [0, 1], [0.3, 0.4]), "different lengths.*p_champion"),
        (lambda: paired_difference("brier", [0, 1], [0.1, 0.2], [0.3]), "different lengths.*p_challenger"),
        (lambda: difference("log_loss", [0, 1], [0.1, 1.2], [0, 1], [0.3, 0.4]), "p_champion.*\\[0, 1\\].*1.2"),
        (lambda: difference("log_loss", [0, 1], [0.1, 0.2], [0, 1], [-0.3, 0.4]), "p_challenger.*\\[0, 1\\]"),
        (lambda: paired_difference("brier", [0, 1], [0.1, np.nan], [0.3, 0.4]), "p_champion.*\\[0, 1\\]"),
        (lambda: difference("brier", [0, 2], [0.1, 0.2], [0, 1], [0.3, 0.4]), "y_champion.*0/1.*2"),
        (lambda: paired_difference("roc_auc", [0, 0.5], [0.1, 0.2], [0.3, 0.4]), "y .*0/1.*0.5"),
        (lambda: arm_stats(["yes", "no"], [0.1, 0.2]), "y are not numbers"),
        (lambda: arm_stats([[0, 1]], [[0.1, 0.2]]), "y must be one-dimensional"),
        (lambda: difference("accuracy", [0, 1], [0.1, 0.2], [0, 1], [0.3, 0.4]), "metric.*accuracy"),
        (lambda: default_tau2(-1), "min_effect"),
        (lambda: simulate(10, 2, 10, challenger_quality=0.3), "challenger_quality"),
    ],
)
def test_malformed_rows_are_refused_naming_what_is_wrong(call, named):
    with pytest.raises(InvalidEvaluation, match=named) as raised:
        call()

    assert isinstance(raised.value, FinalError)  # retrying cannot fix bad rows: the task fails at once
