"""Always-valid comparison of a champion and a challenger on labelled live traffic, looked at again and again.

The A/B DAG evaluates a running experiment every hour. A fixed-horizon test recomputed at every look is not valid:
with 20 looks at a nominal 5%, it declares a winner between two identical models about one time in ten or more. This
module uses a confidence sequence instead, an interval that holds at every look simultaneously, so the experiment may
be stopped at the first look where it excludes the indifference zone.

The statistic is the difference ``theta`` of one metric, oriented so that positive means the challenger is better
(``challenger - champion`` for ROC AUC, ``champion - challenger`` for the losses), with an estimate ``d`` and its
estimated variance ``V``:

- A/B mode (disjoint requests): a difference of two independent means of per-row losses (``V = s_a²/n_a + s_b²/n_b``),
  or of two AUCs with DeLong's variance per arm (summed).
- Shadow mode (both variants scored the same requests): the mean of per-row loss differences, or the paired DeLong
  variance of the AUC difference (which subtracts the covariance of the two AUCs on the same rows).

Treating ``d`` as ``N(theta, V)`` and mixing the likelihood ratio against ``theta = 0`` over ``theta ~ N(0, tau²)``
gives the mixture SPRT of Johari et al. (2017, "Peeking at A/B tests: why it matters, and what to do about it";
Operations Research 2022, "Always valid inference: continuous monitoring of A/B tests"):

    Lambda = sqrt(V / (V + tau²)) * exp(tau² d² / (2 V (V + tau²)))

``Lambda`` is a nonnegative martingale under the null, so by Ville's inequality ``P(Lambda >= 1/alpha at any look)
<= alpha``. Inverting it over every null value gives the two-sided normal-mixture boundary of Howard, Ramdas,
McAuliffe and Sekhon (2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Annals of Statistics
49(2); in their notation ``sqrt((v + rho) * (log(1 + v/rho) + 2 log(1/alpha)))`` with intrinsic time ``v = 1/V``,
``rho = 1/tau²`` and ``S = d/V``):

    d ± sqrt(V (V + tau²) / tau² * (2 ln(1/alpha) + ln((V + tau²) / V)))

It is ``ln(1/alpha)``, not ``ln(2/alpha)``: the mixing distribution is symmetric, so one martingale covers both signs
and Ville's inequality bounds both tails together at ``alpha`` (each one-sided crossing has at most ``alpha``, and in
practice about ``alpha / 2``). ``1 / Lambda`` (capped at 1) is the always-valid p-value of ``theta = 0``.

With Gaussian rows of known variance the guarantee is exact. Here ``V`` is estimated from the rows at each look, so the
guarantee is asymptotic (Waudby-Smith et al. 2024, "Time-uniform central limit theory and asymptotic confidence
sequences"); the AUC enters through its Hájek projection (DeLong's placement values), a mean of per-row terms. The
``min_rows`` floor keeps looks with too few rows for a variance estimate from deciding anything; ``simulate`` measures
the false-promotion rate and power of the whole procedure under repeated looks.

The decision: promote when the lower bound is at or above the minimum effect (and above 0); reject when the upper bound
is below 0 (the challenger is significantly worse); otherwise keep running. No labelled rows yet is "continue", never an
error.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from numbers import Real
from typing import Any, Literal

import numpy as np
from scipy import optimize, special, stats

from airloop.errors import FinalError
from airloop.jsonable import plain

Metric = Literal["roc_auc", "log_loss", "brier"]
Action = Literal["promote", "reject", "continue"]

METRICS: tuple[Metric, ...] = ("roc_auc", "log_loss", "brier")
HIGHER_IS_BETTER: dict[str, bool] = {"roc_auc": True, "log_loss": False, "brier": False}
LABELS: dict[str, str] = {"roc_auc": "ROC AUC", "log_loss": "log loss", "brier": "Brier score"}
# The scale of an improvement worth detecting, used for the mixing variance when the minimum effect is 0: the size of
# what a retrain after drift typically recovers (on the loop scenario a retrained challenger gains 0.1-0.2 in log loss
# and ROC AUC over a drifted champion). Smaller values make the test sharpest for small effects and slow for large
# ones; validity does not depend on it.
TYPICAL_EFFECT: dict[str, float] = {"roc_auc": 0.05, "log_loss": 0.05, "brier": 0.01}
LOG_LOSS_EPSILON = 1e-7  # probabilities are clipped to [eps, 1 - eps], as in training's and drift's log loss
MIN_ROWS = 100  # labelled rows per arm before a look may decide: the variance estimate needs them
MAX_QUALITY = 0.99  # the best simulated model (ROC AUC)
SHARED_SIGNAL = 0.9  # share of the better simulated model's score variance that is signal both models see


class InvalidEvaluation(FinalError):
    """The rows or the arguments of an experiment evaluation are malformed; the message names which and how."""


@dataclass(frozen=True)
class ArmStats:
    """Realised performance of one variant on its labelled rows, each with a fixed-sample interval for display.

    The intervals are for reading one look, not for deciding: decisions use ``decide``'s always-valid interval.
    """

    labelled: int
    positive_rate: float | None
    positive_rate_ci: tuple[float, float] | None
    mean_probability: float | None
    roc_auc: float | None
    roc_auc_ci: tuple[float, float] | None
    log_loss: float | None
    log_loss_ci: tuple[float, float] | None
    brier: float | None
    brier_ci: tuple[float, float] | None
    level: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return plain(asdict(self))


@dataclass(frozen=True)
class Difference:
    """The estimated difference of one metric between the arms; positive means the challenger is better."""

    metric: str
    estimate: float
    variance: float
    n_champion: int
    n_challenger: int
    paired: bool

    @property
    def rows(self) -> int:
        """The labelled rows of the smaller arm (the rows scored by both, in shadow mode)."""
        return min(self.n_champion, self.n_challenger)


@dataclass(frozen=True)
class Decision:
    """What to do with the experiment after this look, why (in a sentence with the numbers), and the evidence."""

    action: Action
    reason: str
    interval: tuple[float, float]
    p_value: float
    rows_needed: int | None
    metric: str | None = None
    estimate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (infinite interval ends as None)."""
        return plain(asdict(self))


@dataclass(frozen=True)
class SimulationResult:
    """How simulated experiments ended when decided at every look and stopped at their first promote or reject."""

    metric: str
    paired: bool
    n_experiments: int
    looks: int
    rows_per_look: int
    true_difference: float
    min_effect: float
    promotions: int
    rejections: int
    still_running: int
    stopped_at: np.ndarray = field(repr=False)  # per experiment: the 1-based look that decided it, 0 if none did
    estimates: np.ndarray = field(repr=False)  # (n_experiments, looks), NaN where not estimable
    variances: np.ndarray = field(repr=False)

    @property
    def promotion_rate(self) -> float:
        """Share of experiments promoted at some look."""
        return self.promotions / self.n_experiments

    @property
    def rejection_rate(self) -> float:
        """Share of experiments rejected at some look."""
        return self.rejections / self.n_experiments

    @property
    def false_promotion_rate(self) -> float | None:
        """The promotion rate when the challenger is not truly better by the minimum effect (A/A included)."""
        return self.promotion_rate if not self._truly_better else None

    @property
    def power(self) -> float | None:
        """The promotion rate when the challenger is truly better by at least the minimum effect."""
        return self.promotion_rate if self._truly_better else None

    @property
    def _truly_better(self) -> bool:
        return self.true_difference > 0 and self.true_difference >= self.min_effect


# --- input checks ---


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise InvalidEvaluation(f"metric must be one of {list(METRICS)}, got {metric!r}")


def _number(name: str, value: Any) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or math.isnan(value):
        raise InvalidEvaluation(f"{name} must be a number, got {value!r}")
    return float(value)


def _check_alpha(alpha: Any, name: str = "alpha") -> float:
    alpha = _number(name, alpha)
    if not 0 < alpha < 1:
        raise InvalidEvaluation(f"{name} must be in (0, 1), got {alpha!r}")
    return alpha


def _check_tau2(tau2: Any) -> float:
    tau2 = _number("tau2", tau2)
    if not 0 < tau2 < math.inf:
        raise InvalidEvaluation(f"tau2 (the mixing variance) must be a positive finite number, got {tau2!r}")
    return tau2


def _check_min_effect(min_effect: Any) -> float:
    min_effect = _number("min_effect", min_effect)
    if not 0 <= min_effect < math.inf:
        raise InvalidEvaluation(f"min_effect must be a finite number >= 0, got {min_effect!r}")
    return min_effect


def _check_count(name: str, value: Any, least: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < least:
        raise InvalidEvaluation(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def _vector(name: str, values: Any) -> np.ndarray:
    try:
        array = np.asarray(values, dtype="float64")
    except (TypeError, ValueError) as error:
        raise InvalidEvaluation(f"{name} are not numbers: {error}") from error
    if array.ndim != 1:
        raise InvalidEvaluation(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _labelled(outcomes: tuple[str, Any], *probabilities: tuple[str, Any]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The labelled rows: outcomes (0/1; NaN means no feedback yet, dropped) and the probabilities on those rows."""
    y_name, y = outcomes[0], _vector(*outcomes)
    scores = [(name, _vector(name, p)) for name, p in probabilities]
    lengths = {y_name: len(y), **{name: len(p) for name, p in scores}}
    if len(set(lengths.values())) > 1:
        raise InvalidEvaluation(f"arrays of different lengths: {lengths}")
    labelled = ~np.isnan(y)
    y = y[labelled]
    bad = y[(y != 0) & (y != 1)]
    if bad.size:
        raise InvalidEvaluation(f"{y_name} must be 0/1 outcomes (NaN where no feedback yet), got {np.unique(bad)[:5]}")
    kept = []
    for name, p in scores:
        p = p[labelled]
        bad = p[~((p >= 0) & (p <= 1))]
        if bad.size:
            raise InvalidEvaluation(f"{name} must be probabilities in [0, 1] on labelled rows, got {bad[:5]}")
        kept.append(p)
    return y, kept


# --- per-row terms ---


def row_losses(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-row log loss (probabilities clipped to ``LOG_LOSS_EPSILON``) or squared error (Brier), any shape."""
    if metric == "brier":
        return (p - y) ** 2
    q = np.clip(p, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    return -np.where(y == 1, np.log(q), np.log1p(-q))


def _placements(scores: np.ndarray, positive: np.ndarray, ends: Sequence[int]) -> Iterator[np.ndarray]:
    """DeLong's placement values of the first ``end`` rows of each experiment (a row of ``scores``), for each end.

    A positive row's placement is the share of negatives (among those rows) scored below it, a negative row's the
    share of positives scored above it, ties counting half. Their mean over positives is the AUC, and their variances
    over positives and over negatives give DeLong's variance. One stable sort for all ends: the rows of a prefix keep
    their order, so counts below a score are cumulative sums over the sorted rows of that prefix, read at the start
    and the end of each run of tied scores.
    """
    experiments, width = scores.shape
    order = np.argsort(scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    is_positive = np.take_along_axis(positive, order, axis=1)
    offsets = (np.arange(experiments) * width)[:, None]
    flat_order = (order + offsets).ravel()
    first = np.ones((experiments, width), dtype=bool)
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    ties = not first.all()
    if ties:
        columns = np.broadcast_to(np.arange(width), (experiments, width))
        last = np.ones((experiments, width), dtype=bool)
        last[:, :-1] = first[:, 1:]
        start = (np.maximum.accumulate(np.where(first, columns, 0), axis=1) + offsets).ravel()
        stop = (np.minimum.accumulate(np.where(last, columns, width - 1)[:, ::-1], axis=1)[:, ::-1] + offsets).ravel()
    for end in ends:
        inside = order < end
        pos = inside & is_positive
        neg = inside ^ pos
        neg_upto, pos_upto = np.cumsum(neg, axis=1, dtype=np.int32), np.cumsum(pos, axis=1, dtype=np.int32)
        # Twice (count below + half the ties): read at the start and the end of each run of tied scores.
        if ties:
            neg_twice = ((neg_upto - neg).ravel()[start] + neg_upto.ravel()[stop]).reshape(experiments, width)
            pos_twice = ((pos_upto - pos).ravel()[start] + pos_upto.ravel()[stop]).reshape(experiments, width)
        else:
            neg_twice, pos_twice = 2 * neg_upto - neg, 2 * pos_upto - pos
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(is_positive, neg_twice / (2 * neg_upto[:, -1:]), 1 - pos_twice / (2 * pos_upto[:, -1:]))
        placed = np.empty(experiments * width)
        placed[flat_order] = value.ravel()
        yield placed.reshape(experiments, width)[:, :end]


def _masked_moments(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and sample variance (ddof 1) of ``values`` where ``mask``, along the last axis."""
    count = mask.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(mask, values, 0.0).sum(axis=-1) / count
        deviation = np.where(mask, values - mean[..., None], 0.0)
        variance = (deviation**2).sum(axis=-1) / (count - 1)
    return count, mean, variance


def _auc_moments(placements: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUC (or AUC difference, from placement differences), its DeLong variance, and the smaller class count."""
    n_pos, mean, var_pos = _masked_moments(placements, positive)
    n_neg, _, var_neg = _masked_moments(placements, ~positive)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = var_pos / n_pos + var_neg / n_neg
    return mean, variance, np.minimum(n_pos, n_neg)


def _auc(y: np.ndarray, p: np.ndarray) -> tuple[float, float, int]:
    """AUC, DeLong variance and smaller class count of one arm's labelled rows."""
    positive = (y == 1)[None, :]
    (placements,) = _placements(p[None, :], positive, [len(y)])
    mean, variance, smaller = _auc_moments(placements, positive)
    return float(mean[0]), float(variance[0]), int(smaller[0])


# --- one arm, and the difference between two ---


def wilson(successes: float, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``successes / n`` at ``level`` (None when ``n`` is 0)."""
    if n <= 0:
        return None
    z = float(stats.norm.ppf(0.5 + level / 2))
    centre = (successes + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(max(successes * (n - successes) / n, 0.0) + z * z / 4)
    return max(0.0, centre - half), min(1.0, centre + half)


def arm_stats(y: Any, p: Any, level: float = 0.95) -> ArmStats:
    """Realised metrics of one variant's labelled rows with fixed-sample intervals at ``level`` (None if undefined).

    Args:
        y: observed outcomes, 0/1, NaN where no feedback has arrived yet (those rows are left out).
        p: the variant's predicted probabilities on the same rows.
        level: confidence level of the display intervals: DeLong for ROC AUC, normal approximation of the per-row
            losses for log loss and Brier, Wilson for the outcome rate.

    Raises:
        InvalidEvaluation: the arrays differ in length, outcomes are not 0/1, probabilities are outside [0, 1].
    """
    level = _check_alpha(level, "level")
    y, (p,) = _labelled(("y", y), ("p", p))
    n = len(y)
    if n == 0:
        return ArmStats(0, None, None, None, None, None, None, None, None, None, level)
    z = float(stats.norm.ppf(0.5 + level / 2))

    def interval(mean: float, variance: float, low: float, high: float) -> tuple[float, float] | None:
        if not math.isfinite(variance):
            return None
        half = z * math.sqrt(max(variance, 0.0))
        return max(low, mean - half), min(high, mean + half)

    positives = float(y.sum())
    rate = positives / n
    losses = {m: row_losses(m, y, p) for m in ("log_loss", "brier")}
    means = {m: float(v.mean()) for m, v in losses.items()}
    spreads = {m: float(v.var(ddof=1)) / n if n > 1 else math.nan for m, v in losses.items()}
    roc_auc = roc_auc_ci = None
    if 0 < positives < n:
        roc_auc, auc_variance, smaller = _auc(y, p)
        roc_auc_ci = interval(roc_auc, auc_variance, 0.0, 1.0) if smaller >= 2 else None
    return ArmStats(
        labelled=n,
        positive_rate=rate,
        positive_rate_ci=wilson(positives, n, level),
        mean_probability=float(p.mean()),
        roc_auc=roc_auc,
        roc_auc_ci=roc_auc_ci,
        log_loss=means["log_loss"],
        log_loss_ci=interval(means["log_loss"], spreads["log_loss"], 0.0, math.inf),
        brier=means["brier"],
        brier_ci=interval(means["brier"], spreads["brier"], 0.0, 1.0),
        level=level,
    )


def difference(
    metric: str, y_champion: Any, p_champion: Any, y_challenger: Any, p_challenger: Any
) -> Difference | None:
    """The challenger's advantage in ``metric`` when the arms scored disjoint requests (A/B mode).

    Losses: difference of the arms' mean per-row losses (champion minus challenger), variance ``s_a²/n_a + s_b²/n_b``.
    ROC AUC: challenger minus champion, the sum of the arms' DeLong variances. None while either arm cannot estimate
    it: fewer than 2 labelled rows, or (for ROC AUC) fewer than 2 rows of either outcome class.

    Raises:
        InvalidEvaluation: unknown metric, arrays of different lengths within an arm, outcomes not 0/1 (or NaN for
            unlabelled rows), probabilities outside [0, 1].
    """
    _check_metric(metric)
    y_a, (p_a,) = _labelled(("y_champion", y_champion), ("p_champion", p_champion))
    y_b, (p_b,) = _labelled(("y_challenger", y_challenger), ("p_challenger", p_challenger))
    if len(y_a) < 2 or len(y_b) < 2:
        return None
    if metric == "roc_auc":
        auc_a, var_a, smaller_a = _auc(y_a, p_a)
        auc_b, var_b, smaller_b = _auc(y_b, p_b)
        if min(smaller_a, smaller_b) < 2:
            return None
        return Difference(metric, auc_b - auc_a, var_a + var_b, len(y_a), len(y_b), paired=False)
    loss_a, loss_b = row_losses(metric, y_a, p_a), row_losses(metric, y_b, p_b)
    estimate = float(loss_a.mean() - loss_b.mean())
    variance = float(loss_a.var(ddof=1) / len(y_a) + loss_b.var(ddof=1) / len(y_b))
    return Difference(metric, estimate, variance, len(y_a), len(y_b), paired=False)


def paired_difference(metric: str, y: Any, p_champion: Any, p_challenger: Any) -> Difference | None:
    """The challenger's advantage in ``metric`` when both variants scored the same requests (shadow mode).

    Losses: mean and variance of the per-row loss differences (champion minus challenger). ROC AUC: challenger minus
    champion with the paired DeLong variance, ``Var(A) + Var(B) - 2 Cov(A, B)`` on the same rows. None with fewer
    than 2 labelled rows (of either class, for ROC AUC).

    Raises:
        InvalidEvaluation: unknown metric, arrays of different lengths, outcomes not 0/1 (or NaN for unlabelled
            rows), probabilities outside [0, 1].
    """
    _check_metric(metric)
    y, (p_a, p_b) = _labelled(("y", y), ("p_champion", p_champion), ("p_challenger", p_challenger))
    n = len(y)
    if n < 2:
        return None
    if metric == "roc_auc":
        positive = (y == 1)[None, :]
        (placed_a,) = _placements(p_a[None, :], positive, [n])
        (placed_b,) = _placements(p_b[None, :], positive, [n])
        estimate, variance, smaller = _auc_moments(placed_b - placed_a, positive)
        if smaller[0] < 2:
            return None
        return Difference(metric, float(estimate[0]), float(variance[0]), n, n, paired=True)
    gain = row_losses(metric, y, p_a) - row_losses(metric, y, p_b)
    return Difference(metric, float(gain.mean()), float(gain.var(ddof=1) / n), n, n, paired=True)


# --- the boundary, the p-value and the decision ---


def _radius(variance: Any, alpha: float, tau2: float) -> Any:
    """Half-width of the two-sided normal-mixture confidence sequence (0 where the variance is 0), vectorised."""
    v = np.asarray(variance, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        squared = v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log1p(tau2 / v))
    return np.where(v > 0, np.sqrt(squared), np.where(v == 0, 0.0, np.nan))


def confidence_sequence(diff: Difference, alpha: float, tau2: float) -> tuple[float, float]:
    """The always-valid ``1 - alpha`` interval of the difference: it holds at every look simultaneously.

    ``estimate ± sqrt(V (V + tau²) / tau² * (2 ln(1/alpha) + ln((V + tau²) / V)))``, the two-sided normal-mixture
    boundary (Howard et al. 2021; the inversion of Johari et al.'s mixture SPRT). Two-sided at ``alpha`` with
    ``ln(1/alpha)``: the mixture over both signs is one martingale, so no ``alpha / 2`` split is needed. Asymptotic,
    because ``V`` is the estimated variance at this look.
    """
    alpha, tau2 = _check_alpha(alpha), _check_tau2(tau2)
    radius = float(_radius(diff.variance, alpha, tau2))
    return diff.estimate - radius, diff.estimate + radius


def _log_likelihood_ratio(estimate: Any, variance: Any, tau2: float) -> Any:
    """log of the normal-mixture likelihood ratio against ``theta = 0``, vectorised."""
    v = np.asarray(variance, dtype="float64")
    d = np.asarray(estimate, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        value = -0.5 * np.log1p(tau2 / v) + tau2 * d * d / (2 * v * (v + tau2))
    return np.where(v > 0, value, np.where(d == 0, -np.inf, np.inf))


def always_valid_p(diff: Difference, tau2: float) -> float:
    """The always-valid p-value of "no difference" at this look: ``1 / Lambda`` capped at 1 (and floored above 0).

    Under the null, ``P(p <= alpha at any look) <= alpha``; the running minimum over looks is also always valid. It is
    floored at the smallest positive float so that overwhelming evidence never reads as exactly 0.
    """
    tau2 = _check_tau2(tau2)
    log_ratio = float(_log_likelihood_ratio(diff.estimate, diff.variance, tau2))
    return float(min(1.0, max(math.exp(-log_ratio) if log_ratio < 700 else 0.0, np.finfo(float).tiny)))


def default_tau2(min_effect: float, metric: str | None = None) -> float:
    """The mixing variance: ``min_effect²``, or the metric's typical effect squared when the minimum effect is 0.

    The boundary is narrowest, relative to the standard error, at looks where ``V ≈ tau² / (2 ln(1/alpha) + ln(1 +
    2 ln(1/alpha)))`` (Howard et al.'s choice of ``rho``), and at alpha = 0.05 the radius there is about ``sqrt(tau²)``.
    So ``tau² = delta²`` tunes the test to be sharpest when it can just resolve an effect of size ``delta``. The choice
    affects only power, never validity.
    """
    min_effect = _check_min_effect(min_effect)
    if min_effect > 0:
        return min_effect**2
    if metric is not None:
        _check_metric(metric)
    return TYPICAL_EFFECT.get(metric or "roc_auc", 0.01) ** 2


def _actions(
    estimate: Any, variance: Any, rows: Any, *, alpha: float, min_effect: float, tau2: float, min_rows: int
) -> np.ndarray:
    """1 promote, -1 reject, 0 continue, for arrays of estimates, variances and rows per arm (the decision rule)."""
    estimate = np.asarray(estimate, dtype="float64")
    radius = _radius(variance, alpha, tau2)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(estimate) & (np.asarray(variance) > 0) & (np.asarray(rows) >= min_rows)
        lower, upper = estimate - radius, estimate + radius
        promote = usable & (lower >= min_effect) & (lower > 0)
        reject = usable & (upper < 0)
    return np.where(promote, 1, np.where(reject, -1, 0))


def _rows_needed(diff: Difference, *, alpha: float, min_effect: float, tau2: float) -> int | None:
    """More labelled rows per arm until the interval around the current estimate would clear [0, min_effect).

    Assumes the per-row variance stays as it is (and, in A/B mode, is the same in both arms). None when the estimate
    lies in [0, min_effect) (no number of rows would decide) or the variance is unusable.
    """
    if diff.estimate < 0:
        gap = -diff.estimate
    elif diff.estimate > 0 and diff.estimate >= min_effect:
        gap = diff.estimate - min_effect
    else:
        return None
    if not (math.isfinite(diff.variance) and diff.variance > 0 and gap > 0):
        return None
    if float(_radius(diff.variance, alpha, tau2)) < gap:
        return 0
    floor = diff.variance * 1e-12
    if float(_radius(floor, alpha, tau2)) >= gap:
        return None
    target = math.exp(
        optimize.brentq(
            lambda x: float(_radius(math.exp(x), alpha, tau2)) - gap, math.log(floor), math.log(diff.variance)
        )
    )
    shrink = target / diff.variance
    a, b = diff.n_champion, diff.n_challenger
    if diff.paired or a == b:
        extra = a / shrink - a
    else:
        # 1/(a+k) + 1/(b+k) = shrink * (1/a + 1/b): a quadratic in k.
        c = shrink * (1 / a + 1 / b)
        extra = max(np.roots([c, c * (a + b) - 2, c * a * b - (a + b)]).real)
    equal = diff.paired or a == b

    def clears(k: int) -> bool:
        """Whether the interval clears the gap with ``k`` more rows per arm (the root above is only approximate)."""
        factor = a / (a + k) if equal else (1 / (a + k) + 1 / (b + k)) / (1 / a + 1 / b)
        return float(_radius(diff.variance * factor, alpha, tau2)) < gap

    k = max(0, math.ceil(extra))
    while k > 0 and clears(k - 1):
        k -= 1
    while not clears(k):
        k += 1
    return k


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def decide(
    diff: Difference | None,
    *,
    min_effect: float,
    alpha: float,
    tau2: float | None = None,
    min_rows: int = MIN_ROWS,
) -> Decision:
    """Promote, reject or keep running the experiment after this look, valid however often it is looked at.

    Args:
        diff: the difference at this look (``difference`` or ``paired_difference``); None while it cannot be
            estimated (no or too few labelled rows): the experiment continues.
        min_effect: the smallest improvement worth a promotion, in the metric's units (0: any improvement).
        alpha: the error rate allowed over all looks together (false promotion of a challenger that is not better).
        tau2: the mixing variance; ``default_tau2(min_effect, metric)`` when None.
        min_rows: labelled rows each arm needs before a look may decide.

    Returns:
        ``promote`` when the always-valid interval's lower bound is at least ``min_effect`` (and above 0),
        ``reject`` when its upper bound is below 0, otherwise ``continue``; with a one-sentence reason.

    Raises:
        InvalidEvaluation: alpha not in (0, 1), min_effect negative, tau2 not positive, min_rows not a count.
    """
    alpha, min_effect = _check_alpha(alpha), _check_min_effect(min_effect)
    min_rows = _check_count("min_rows", min_rows, 1)
    if diff is None:
        return Decision(
            action="continue",
            reason=(
                "Continue: the difference cannot be estimated yet because an arm has no labelled rows, fewer than 2, "
                "or (for ROC AUC) fewer than 2 of each outcome; keep collecting labelled rows."
            ),
            interval=(-math.inf, math.inf),
            p_value=1.0,
            rows_needed=None,
        )
    _check_metric(diff.metric)
    tau2 = default_tau2(min_effect, diff.metric) if tau2 is None else _check_tau2(tau2)
    lo, hi = confidence_sequence(diff, alpha, tau2)
    p_value = always_valid_p(diff, tau2)
    level = f"{100 * (1 - alpha):g}%"
    advantage = f"the challenger's advantage in {LABELS[diff.metric]} is {diff.estimate:+.3g}"
    evidence = f"(always-valid {level} interval {_fmt(lo)} to {_fmt(hi)}, p = {_fmt(p_value)})"
    if diff.paired:
        counted = f"{diff.n_champion:,} labelled rows scored by both models"
    else:
        counted = f"{diff.n_champion:,} champion and {diff.n_challenger:,} challenger labelled rows"
    common = {"interval": (lo, hi), "p_value": p_value, "metric": diff.metric, "estimate": diff.estimate}
    needed = _rows_needed(diff, alpha=alpha, min_effect=min_effect, tau2=tau2)
    if diff.rows < min_rows:
        shortfall = min_rows - diff.rows
        reason = (
            f"Continue: only {counted}, fewer than the {min_rows:,} per arm a decision needs; so far {advantage} "
            f"{evidence}."
        )
        rows_needed = shortfall if needed is None else max(shortfall, needed)
        return Decision(action="continue", reason=reason, rows_needed=rows_needed, **common)
    if not (math.isfinite(diff.variance) and diff.variance > 0):
        reason = (
            f"Continue: {advantage} with no measurable variance on {counted} (the models score them alike), so no "
            "interval can be formed yet."
        )
        return Decision(action="continue", reason=reason, rows_needed=None, **common)
    rule = {"alpha": alpha, "min_effect": min_effect, "tau2": tau2, "min_rows": min_rows}
    action = int(_actions(diff.estimate, diff.variance, diff.rows, **rule))
    if action == 1:
        clears = (
            f"better by at least the minimum effect of {_fmt(min_effect)}" if min_effect else "significantly better"
        )
        reason = f"Promote: {advantage} {evidence} on {counted}, so it is {clears}."
        return Decision(action="promote", reason=reason, rows_needed=None, **common)
    if action == -1:
        reason = f"Reject: {advantage} {evidence} on {counted}, so it is significantly worse than the champion."
        return Decision(action="reject", reason=reason, rows_needed=None, **common)
    zone = f"[0, {_fmt(min_effect)})" if min_effect > 0 else "0"
    if needed is not None:
        outlook = f"if the estimate holds, about {needed:,} more labelled rows per arm would decide it"
    elif 0 <= diff.estimate < min_effect:
        outlook = f"the estimate is below the minimum effect of {_fmt(min_effect)}, so more rows may never promote it"
    else:
        outlook = "the rows needed cannot be estimated"
    reason = f"Continue: {advantage} {evidence} on {counted}, which does not yet exclude {zone}; {outlook}."
    return Decision(action="continue", reason=reason, rows_needed=needed, **common)


# --- simulation ---


def _separation(auc: float) -> float:
    """The gap, in standard deviations, between the score distributions of positives and negatives giving ``auc``."""
    return math.sqrt(2) * float(stats.norm.ppf(auc))


def population_metric(metric: str, quality: float, base_rate: float) -> float:
    """The expected ``metric`` of a simulated model of ``quality`` (its ROC AUC), by Gauss-Hermite quadrature."""
    _check_metric(metric)
    if metric == "roc_auc":
        return float(quality)
    d = _separation(quality)
    nodes, weights = np.polynomial.hermite_e.hermegauss(101)
    weights = weights / math.sqrt(2 * math.pi)
    intercept = float(special.logit(base_rate))
    positive = row_losses(metric, np.ones_like(nodes), special.expit(intercept + d * (nodes + d / 2)))
    negative = row_losses(metric, np.zeros_like(nodes), special.expit(intercept + d * (nodes - d / 2)))
    return float(base_rate * weights @ positive + (1 - base_rate) * weights @ negative)


def _simulated_probabilities(
    rng: np.random.Generator, signal: np.ndarray, oracle: float, quality: float, base_rate: float
) -> np.ndarray:
    """A calibrated model of ROC AUC ``quality`` that sees a share of the oracle ``signal`` plus its own noise."""
    d = _separation(quality)
    share = d / oracle if oracle > 0 else 0.0
    score = share * signal + math.sqrt(1 - share * share) * rng.standard_normal(signal.shape)  # N(±d/2, 1) given y
    return special.expit(special.logit(base_rate) + d * score)


def _simulated_arm(
    rng: np.random.Generator, shape: tuple[int, int], oracle: float, base_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes ~ Bernoulli(base_rate) and the oracle signal, N(±oracle/2, 1) given the outcome."""
    y = (rng.random(shape) < base_rate).astype("float64")
    return y, rng.standard_normal(shape) + oracle * (y - 0.5)


def _loss_path(losses: np.ndarray, looks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and sample variance of per-row values over each look's prefix, per experiment, from cumulative sums."""
    experiments, width = losses.shape
    per_look = losses.reshape(experiments, looks, width // looks)
    total = np.cumsum(per_look.sum(axis=2), axis=1)
    squares = np.cumsum((per_look**2).sum(axis=2), axis=1)
    n = (width // looks) * np.arange(1, looks + 1)
    mean = total / n
    variance = np.maximum(squares - total * mean, 0.0) / (n - 1)
    return mean, variance, n


def simulate(
    n_experiments: int = 400,
    looks: int = 20,
    rows_per_look: int = 200,
    *,
    base_rate: float = 0.2,
    champion_quality: float = 0.7,
    challenger_quality: float = 0.7,
    metric: str = "log_loss",
    paired: bool = False,
    alpha: float = 0.05,
    min_effect: float = 0.0,
    tau2: float | None = None,
    min_rows: int = MIN_ROWS,
    seed: int = 0,
) -> SimulationResult:
    """Run simulated experiments, decide at every look, stop each at its first promote or reject (as the DAG does).

    Each look adds ``rows_per_look`` labelled rows per arm (in shadow mode, rows scored by both models). Outcomes are
    Bernoulli(``base_rate``); an oracle signal is N(±D/2, 1) given the outcome. A model of quality ``q`` (its
    population ROC AUC, in [0.5, MAX_QUALITY]) sees a share of that signal plus noise of its own, and predicts the
    calibrated probability; D is set so that the better model's score is ``SHARED_SIGNAL`` oracle signal, so in shadow
    mode two models of equal quality are correlated (0.9 within a class) but not identical, as two retrained models
    are. Equal qualities make an A/A test. Vectorised over experiments; the losses over looks too.

    Raises:
        InvalidEvaluation: a count, rate, quality or decision argument out of range.
    """
    n_experiments = _check_count("n_experiments", n_experiments, 1)
    looks = _check_count("looks", looks, 1)
    rows_per_look = _check_count("rows_per_look", rows_per_look, 2)
    _check_metric(metric)
    base_rate = _check_alpha(base_rate, "base_rate")
    for name, quality in (("champion_quality", champion_quality), ("challenger_quality", challenger_quality)):
        if not 0.5 <= _number(name, quality) <= MAX_QUALITY:
            raise InvalidEvaluation(f"{name} (a ROC AUC) must be in [0.5, {MAX_QUALITY}], got {quality!r}")
    alpha, min_effect = _check_alpha(alpha), _check_min_effect(min_effect)
    tau2 = default_tau2(min_effect, metric) if tau2 is None else _check_tau2(tau2)
    min_rows = _check_count("min_rows", min_rows, 1)

    rng = np.random.default_rng(seed)
    shape = (n_experiments, looks * rows_per_look)
    ends = [rows_per_look * (k + 1) for k in range(looks)]
    oracle = _separation(max(champion_quality, challenger_quality)) / math.sqrt(SHARED_SIGNAL)
    y_a, signal_a = _simulated_arm(rng, shape, oracle, base_rate)
    y_b, signal_b = (y_a, signal_a) if paired else _simulated_arm(rng, shape, oracle, base_rate)
    p_a = _simulated_probabilities(rng, signal_a, oracle, champion_quality, base_rate)
    p_b = _simulated_probabilities(rng, signal_b, oracle, challenger_quality, base_rate)

    if metric == "roc_auc":
        estimates = np.empty((n_experiments, looks))
        variances = np.empty((n_experiments, looks))
        positive_a, positive_b = y_a == 1, y_b == 1
        arms = zip(_placements(p_a, positive_a, ends), _placements(p_b, positive_b, ends), strict=True)
        for k, (end, (placed_a, placed_b)) in enumerate(zip(ends, arms, strict=True)):
            if paired:
                estimate, variance, _ = _auc_moments(placed_b - placed_a, positive_a[:, :end])
            else:
                auc_a, var_a, _ = _auc_moments(placed_a, positive_a[:, :end])
                auc_b, var_b, _ = _auc_moments(placed_b, positive_b[:, :end])
                estimate, variance = auc_b - auc_a, var_a + var_b
            estimates[:, k], variances[:, k] = estimate, variance
    else:
        loss_a, loss_b = row_losses(metric, y_a, p_a), row_losses(metric, y_b, p_b)
        if paired:
            estimates, variances, n = _loss_path(loss_a - loss_b, looks)
            variances = variances / n
        else:
            mean_a, var_a, n = _loss_path(loss_a, looks)
            mean_b, var_b, _ = _loss_path(loss_b, looks)
            estimates, variances = mean_a - mean_b, var_a / n + var_b / n

    actions = _actions(
        estimates,
        variances,
        np.asarray(ends)[None, :],
        alpha=alpha,
        min_effect=min_effect,
        tau2=tau2,
        min_rows=min_rows,
    )
    decided = actions != 0
    first = np.argmax(decided, axis=1)
    final = np.where(decided.any(axis=1), actions[np.arange(n_experiments), first], 0)
    truth = population_metric(metric, challenger_quality, base_rate) - population_metric(
        metric, champion_quality, base_rate
    )
    return SimulationResult(
        metric=metric,
        paired=paired,
        n_experiments=n_experiments,
        looks=looks,
        rows_per_look=rows_per_look,
        true_difference=truth if HIGHER_IS_BETTER[metric] else -truth,
        min_effect=min_effect,
        promotions=int((final == 1).sum()),
        rejections=int((final == -1).sum()),
        still_running=int((final == 0).sum()),
        stopped_at=np.where(final != 0, first + 1, 0),
        estimates=estimates,
        variances=variances,
    )
