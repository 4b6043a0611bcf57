"""Label-free performance estimate: the ROC AUC and calibration a model's own probabilities imply, without outcomes.

Confidence-based performance estimation (CBPE, as NannyML does it). If the probabilities are calibrated, a row scored
``p`` is a positive with probability ``p``, so every count of a confusion matrix has an expectation computed from the
probabilities alone: at a threshold ``t``, expected TP = sum of ``p`` over the rows scored above ``t`` and expected
FP = sum of ``1 - p`` over them. Those give an expected ROC curve, and its area is the estimated ROC AUC.

**Which AUC, and why.** The area under the expected ROC curve by the trapezoid rule, with one threshold per distinct
score (so tied scores count half, as in the Mann-Whitney statistic and ``sklearn.metrics.roc_auc_score``). That area
is exactly E[concordant pairs] / (E[positives] * E[negatives]): a ratio of expectations, not the expectation of the
realised ratio; the two differ by O(1/n) (a row is counted as half a pair with itself), far below the noise of any
window a verdict is given on. It was chosen because it is NannyML's definition and because it is a function of the
*distribution* of scores: rows can carry weights, so the reference figure is computed straight from the compact CDF
of the test-set probabilities that the reference profile stores, with no raw rows.

**The interval** is where the realised ROC AUC of these very rows should fall once all their outcomes arrive, if the
probabilities are calibrated: outcomes drawn as Bernoulli(p), the scores held fixed. The realised AUC is
``(sum of the positives' midranks - k(k+1)/2) / (k(n-k))`` with ``k`` positives; both sums are sums of independent
Bernoulli terms, so the delta method gives its variance in one O(n) pass (after the sort): no bootstrap, no random
numbers, the same answer for the same rows in any order, milliseconds for 100k rows. It does not include the sampling
of the rows themselves (another window of the same traffic scores differently); a verdict compares the estimate with
the reference's on an effect size (``max_estimated_auc_drop``), never on this interval.

**Assumptions.** (1) The probabilities are calibrated on the rows estimated: P(outcome = 1 | p) = p. A model of
P(y | x) stays calibrated under covariate shift (x moves, P(y | x) does not) as far as it fits P(y | x), which is why
the estimate tracks the realised AUC under covariate drift. (2) Outcomes are independent given the probabilities.
**It cannot see concept drift**: when P(y | x) changes, the model's probabilities do not, so neither does the
estimate, while the realised AUC falls. Only realised performance (outcomes, 30 days late) shows concept drift.

Pure numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LOG_LOSS_EPSILON = 1e-7  # probabilities are clipped to [eps, 1 - eps] for log loss, as the realised figure is
LEVEL = 0.95
CALIBRATION_BINS = 10

ArrayLike = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Estimate:
    """What calibrated probabilities imply about the rows they score (None where undefined, e.g. no rows)."""

    rows: int
    roc_auc: float | None  # the area under the expected ROC curve
    interval: tuple[float, float] | None  # where the realised ROC AUC of these rows should fall (``LEVEL``)
    positive_rate: float | None  # the mean probability: the expected share of positives
    brier: float | None  # mean p(1 - p): the expected Brier score
    log_loss: float | None  # mean binary entropy: the expected log loss


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of a reliability table: rows whose probability lies in ``[lower, upper]``."""

    lower: float
    upper: float
    rows: int
    mean_probability: float
    observed_rate: float


@dataclass(frozen=True)
class Calibration:
    """Reliability of probabilities on labelled rows: mean probability against the observed rate, overall and binned."""

    rows: int
    mean_probability: float | None
    observed_rate: float | None
    gap: float | None  # observed rate - mean probability (positive: the model under-predicts)
    expected_calibration_error: float | None  # the row-weighted mean |gap| over the bins
    bins: list[CalibrationBin]


def _checked(values: ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(values, dtype="float64").ravel()
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite, got {array[~np.isfinite(array)][:5].tolist()}")
    return array


def _probabilities(values: ArrayLike) -> np.ndarray:
    p = _checked(values, "probabilities")
    outside = (p < 0) | (p > 1)
    if outside.any():
        raise ValueError(f"probabilities must lie in [0, 1], got {p[outside][:5].tolist()}")
    return p


def _expected_auc(p: np.ndarray, w: np.ndarray, starts: np.ndarray) -> float | None:
    """The area under the expected ROC curve of ascending scores ``p`` with weights ``w``; ``starts``: tie groups."""
    positives = np.add.reduceat(w * p, starts)
    negatives = np.add.reduceat(w * (1.0 - p), starts)
    total_pos, total_neg = positives.sum(), negatives.sum()
    if total_pos <= 0 or total_neg <= 0:
        return None  # every row is certainly negative (or positive): no pair to rank
    below = np.cumsum(negatives) - negatives  # expected negatives scored strictly lower than each group
    concordant = np.sum(positives * (below + 0.5 * negatives))
    return float(np.clip(concordant / (total_pos * total_neg), 0.0, 1.0))


def _auc_interval(p: np.ndarray, starts: np.ndarray, centre: float, level: float) -> tuple[float, float] | None:
    """The delta-method interval of the realised AUC of ascending scores ``p`` with outcomes drawn as Bernoulli(p)."""
    n = len(p)
    counts = np.diff(np.append(starts, n))
    midranks = np.repeat(starts + (counts + 1) / 2.0, counts)  # 1-based, ties share their mean rank
    k = p.sum()
    if min(k, n - k) < 1:
        return None  # under one expected positive (or negative): most draws have no AUC, no normal approximation
    pairs = k * (n - k)
    auc_at_mean = (np.dot(midranks, p) - k * (k + 1) / 2.0) / pairs
    d_sum = 1.0 / pairs  # d AUC / d (sum of the positives' ranks)
    d_k = (-(k + 0.5) - auc_at_mean * (n - 2.0 * k)) / pairs  # d AUC / d (number of positives)
    variance = float(np.sum(p * (1.0 - p) * (d_sum * midranks + d_k) ** 2))
    half = NormalDist().inv_cdf(0.5 + level / 2.0) * np.sqrt(max(variance, 0.0))
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def estimate(probabilities: ArrayLike, weights: ArrayLike | None = None, level: float = LEVEL) -> Estimate:
    """The ROC AUC, positive rate, Brier score and log loss that calibrated ``probabilities`` imply (CBPE).

    Args:
        probabilities: the model's probability of the positive class, one per row, each in [0, 1].
        weights: a non-negative weight per row (e.g. the probability mass of each point of a CDF); rows count
            alike when None. Weights are relative: scaling them all changes nothing. With weights there is no
            interval (it needs the rows themselves).
        level: the coverage of the interval.

    Returns:
        The ``Estimate``; its fields are None where undefined (no rows; no AUC when every probability is 0, or 1;
        no interval with weights or with fewer than one expected positive or negative).

    Raises:
        ValueError: probabilities outside [0, 1] or not finite; weights negative or of another length.
    """
    p = _probabilities(probabilities)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if weights is None:
        w = np.ones_like(p)
        order = np.argsort(p, kind="stable")
    else:
        w = _checked(weights, "weights")
        if w.shape != p.shape or np.any(w < 0):
            raise ValueError(
                f"weights must be {len(p)} non-negative numbers, got shape {w.shape}, min {w.min(initial=0.0)}"
            )
        order = np.lexsort((w, p))  # by value, then weight: the same sums for the same rows in any order
    p, w = p[order], w[order]
    total = w.sum()
    if len(p) == 0 or total <= 0:
        return Estimate(rows=len(p), roc_auc=None, interval=None, positive_rate=None, brier=None, log_loss=None)
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    auc = _expected_auc(p, w, starts)
    clipped = np.clip(p, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    entropy = -(p * np.log(clipped) + (1.0 - p) * np.log1p(-clipped))
    return Estimate(
        rows=len(p),
        roc_auc=auc,
        interval=None if auc is None or weights is not None else _auc_interval(p, starts, auc, level),
        positive_rate=float(np.dot(w, p) / total),
        brier=float(np.dot(w, p * (1.0 - p)) / total),
        log_loss=float(np.dot(w, entropy) / total),
    )


def calibration(probabilities: ArrayLike, outcomes: ArrayLike, bins: int = CALIBRATION_BINS) -> Calibration:
    """Reliability of ``probabilities`` where ``outcomes`` (0, 1, or NaN for not yet known) have arrived.

    Bins hold about equal numbers of rows (quantiles of the probabilities; tied probabilities stay in one bin).

    Raises:
        ValueError: probabilities outside [0, 1], outcomes other than 0, 1 or NaN, or lengths that differ.
    """
    p = _probabilities(probabilities)
    y = np.asarray(outcomes, dtype="float64").ravel()
    if y.shape != p.shape:
        raise ValueError(f"{len(p)} probabilities but {len(y)} outcomes")
    labelled = ~np.isnan(y)
    p, y = p[labelled], y[labelled]
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"outcomes must be 0, 1 or missing, got values {np.unique(y)[:5].tolist()}")
    if len(p) == 0:
        return Calibration(0, None, None, None, None, [])
    order = np.lexsort((y, p))
    p, y = p[order], y[order]
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf"))
    index = np.searchsorted(edges, p, side="left")  # a bin holds (edge below, edge above]
    table = [
        CalibrationBin(
            lower=float(p[index == b].min()),
            upper=float(p[index == b].max()),
            rows=int((index == b).sum()),
            mean_probability=float(p[index == b].mean()),
            observed_rate=float(y[index == b].mean()),
        )
        for b in np.unique(index)
    ]
    mean_p, rate = float(p.mean()), float(y.mean())
    ece = sum(b.rows * abs(b.observed_rate - b.mean_probability) for b in table) / len(p)
    return Calibration(
        rows=len(p),
        mean_probability=mean_p,
        observed_rate=rate,
        gap=rate - mean_p,
        expected_calibration_error=float(ece),
        bins=table,
    )
