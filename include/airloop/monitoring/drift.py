"""Drift statistics and the dataset verdict: a window of model features against a model version's reference profile.

Per feature: PSI on the profile's fixed bins (missing is a bin of its own), Jensen-Shannon distance, and a test
whose p-values are corrected across features (Benjamini-Hochberg): Kolmogorov-Smirnov for numeric features (from
the profile's CDF, no training rows needed), chi-square for categorical ones (bins with small expected counts
pooled, so a sparse category seen in one window only is not an artefact p-value of 0). A feature is drifted on
effect size (PSI at or above its threshold), never on a p-value alone. Everything is vectorised per feature, and
the features' statistics take time linear in the window's rows: no column is sorted (``PointLookup`` counts a
numeric column's values at its bins' edges and CDF points in one pass; categories are hashed). Only the ROC AUCs
of the probabilities (estimated, realised) rank them: a few sorts of that one column, O(rows log rows).

One more signal needs no labels: the ROC AUC the window's own probabilities imply (``airloop.monitoring.estimate``,
CBPE) against the same estimate on the reference's test-set probabilities. A drop of more than
``max_estimated_auc_drop`` is drift. It sees covariate shift that moves the model into rows it ranks less well; it
cannot see concept drift (the probabilities do not change when the outcomes' relation to the features does), which
only the realised performance shows once outcomes arrive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn import metrics

from airloop.errors import FinalError
from airloop.jsonable import plain
from airloop.monitoring.baseline import MISSING, load_profile
from airloop.monitoring.decision import RULES, RuleHit, decide, importance_shares, importance_weighted_score
from airloop.monitoring.estimate import calibration, estimate
from airloop.monitoring.multivariate import SAMPLE_ROWS, MultivariateDrift, domain_classifier, watched_columns
from airloop.monitoring.segments import segment_bins, segment_rules, window_segments

SCHEMA_VERSION = 3  # 2: performance_estimate and max_estimated_auc_drop; 3: alert and retrain rules
PSI_EPSILON = 1e-4
MIN_EXPECTED = 5.0
# drift: a retrain rule fired (it alerts too); alert: only alert rules fired; no_drift: none did.
Verdict = Literal["no_drift", "alert", "drift", "insufficient_data"]


class WindowInvalid(FinalError):
    """A window cannot be compared with the profile: columns missing or of the wrong type, bad probabilities."""


class EmptyWindow(WindowInvalid):
    """A window has no rows."""


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature, the predictions and the dataset count as drifted, and how many rows a verdict needs."""

    psi: float = 0.2
    drifted_share: float = 0.3
    prediction_psi: float = 0.2
    min_rows: int = 500
    psi_overrides: Mapping[str, float] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    alpha: float = 0.05  # for the ``significant`` flag (adjusted p-values); a verdict never rests on it
    max_estimated_auc_drop: float = 0.05  # label-free: the estimated ROC AUC below the reference estimate by more
    importance_floor: float = 0.05  # a drifted feature alerts when it holds at least this share of the importance
    importance_drift: float = 0.2  # retrain when drifted features hold at least this share of the importance
    max_missing_change: float = 0.1  # alert when a feature's missing rate moves this much
    max_unseen_share: float = 0.05  # alert when a feature's rare/unseen categories grow by this share
    calibration_level: float = 0.999  # the interval the observed positive rate must stay in
    min_calibration_gap: float = 0.01  # ... and the least gap worth an alert
    auc_tolerance: float = 0.01  # realised ROC AUC below the test set's by more: alert; with confidence: retrain
    min_labelled_rows: int = 200  # fewer labelled rows: no rule on outcomes
    multivariate_auc: float = 0.6  # retrain when the domain classifier's AUC lower bound reaches this

    def __post_init__(self) -> None:
        numbers = {"psi": self.psi, "prediction_psi": self.prediction_psi, **self.psi_overrides}
        bad = {k: v for k, v in numbers.items() if not (isinstance(v, int | float) and v > 0)}
        if bad:
            raise ValueError(f"PSI thresholds must be positive numbers, got {bad}")
        if not 0 < self.drifted_share <= 1 or not 0 < self.alpha < 1 or self.min_rows < 1:
            raise ValueError(
                f"need 0 < drifted_share <= 1, 0 < alpha < 1, min_rows >= 1; got {self.drifted_share}, "
                f"{self.alpha}, {self.min_rows}"
            )
        drop = self.max_estimated_auc_drop
        if not (isinstance(drop, int | float) and 0 < drop <= 1):
            raise ValueError(f"need 0 < max_estimated_auc_drop <= 1, got {drop!r}")
        shares = {
            "importance_floor": self.importance_floor,
            "importance_drift": self.importance_drift,
            "max_missing_change": self.max_missing_change,
            "max_unseen_share": self.max_unseen_share,
            "min_calibration_gap": self.min_calibration_gap,
            "auc_tolerance": self.auc_tolerance,
        }
        outside = {k: v for k, v in shares.items() if not (isinstance(v, int | float) and 0 <= v <= 1)}
        if outside or not 0.5 < self.calibration_level < 1 or not 0.5 <= self.multivariate_auc < 1:
            raise ValueError(
                f"need shares in [0, 1] ({outside}), 0.5 < calibration_level < 1, 0.5 <= multivariate_auc < 1; "
                f"got {self.calibration_level}, {self.multivariate_auc}"
            )
        if self.min_labelled_rows < 1:
            raise ValueError(f"need min_labelled_rows >= 1, got {self.min_labelled_rows}")
        negative = {k: v for k, v in self.weights.items() if not v >= 0}
        if negative:
            raise ValueError(f"feature weights must be >= 0, got {negative}")

    def psi_for(self, feature: str) -> float:
        """The PSI threshold of one feature (its override, else the default)."""
        return float(self.psi_overrides.get(feature, self.psi))

    def weight_for(self, feature: str) -> float:
        """The weight of one feature in the drifted share (1 unless set)."""
        return float(self.weights.get(feature, 1.0))


@dataclass(frozen=True)
class FeatureDrift:
    """The drift statistics of one feature (or of the predicted probability) in a window."""

    feature: str
    kind: str
    psi: float
    js_distance: float
    test: str
    statistic: float | None
    p_value: float | None
    p_value_adjusted: float | None
    null_rate_reference: float
    null_rate_current: float
    psi_threshold: float
    drifted: bool
    significant: bool
    bins: list[str]
    reference_shares: list[float]
    current_shares: list[float]


@dataclass(frozen=True)
class PerformanceDrift:
    """Realised ROC AUC and log loss of the window's labelled rows against the model's test-set figures."""

    labelled_rows: int
    roc_auc: float | None
    log_loss: float | None
    reference_roc_auc: float | None
    reference_log_loss: float | None


@dataclass(frozen=True)
class LabelledEstimate:
    """The label-free estimate on the rows whose outcomes have arrived, to set beside the realised figures there."""

    rows: int
    estimated_roc_auc: float | None
    interval: list[float] | None  # where the realised ROC AUC should fall (95%) if the probabilities are calibrated
    expected_log_loss: float | None
    mean_probability: float | None
    observed_rate: float | None


@dataclass(frozen=True)
class PerformanceEstimate:
    """The ROC AUC and calibration the window's own probabilities imply (CBPE), before any outcome arrives."""

    rows: int
    estimated_roc_auc: float | None
    interval: list[float] | None  # where the window's realised ROC AUC should fall (95%) if they are calibrated
    expected_positive_rate: float | None
    expected_brier: float | None
    expected_log_loss: float | None
    reference_estimated_roc_auc: float | None  # the same estimate on the test-set probabilities of the profile
    reference_realised_roc_auc: float | None  # the test-set ROC AUC the model was trained with
    drop: float | None  # reference estimate - window estimate (positive: the window is ranked worse)
    max_drop: float
    dropped: bool
    labelled: LabelledEstimate | None


@dataclass(frozen=True)
class DriftResult:
    """The drift comparison of one window: per-feature statistics, prediction drift, performance (realised and
    estimated without labels) and the verdict."""

    schema_version: int
    verdict: Verdict
    reason: str
    rows: int
    drifted_features: list[str]
    drifted_share: float
    importance_weighted_share: float | None  # the share of the model's importance in drifted features
    alert: bool
    retrain: bool
    rules: list[RuleHit]  # the rules that fired, alert rules first
    multivariate: MultivariateDrift | None  # the domain classifier (with a reference sample and enough rows)
    segments: dict[str, dict[str, Any]]  # per segment feature and segment: rows, shares, estimated/realised figures
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None
    performance: PerformanceDrift | None
    performance_estimate: PerformanceEstimate | None
    thresholds: DriftThresholds

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (NaN as None)."""
        return plain(asdict(self))


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two share vectors over the same bins (empty bins count as ``epsilon``)."""
    p = np.maximum(np.asarray(reference, dtype="float64"), epsilon)
    q = np.maximum(np.asarray(current, dtype="float64"), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two share vectors."""
    p, q = np.asarray(reference, dtype="float64"), np.asarray(current, dtype="float64")
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0 if p.sum() == q.sum() else 1.0
    return float(jensenshannon(p, q, base=2))


LOOKUP_CHUNK = 1 << 15  # rows per pass of the point lookup: its temporaries stay in the CPU's cache
SEARCH_ROWS = 2_000  # fewer values than this: plain binary search (building the lookup's grid would cost more)
CELLS_PER_POINT = 8  # grid cells per point of the lookup (at most MAX_CELLS)
MAX_CELLS = 1 << 15
MAX_STEPS = 2  # points a grid cell may hold; the values in a fuller cell are looked up by binary search
_MAGNITUDE = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def _ordered_keys(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Integers in the order of the (non-NaN) float64 ``values``: the bits, with the magnitude flipped when negative.
    Strictly increasing with the value except that -0.0 gets a key below 0.0's."""
    bits = values.view(np.int64)
    np.right_shift(bits, 63, out=out)
    np.bitwise_and(out, _MAGNITUDE, out=out)
    np.bitwise_xor(out, bits, out=out)
    return out


class PointLookup:
    """Where each of many values falls among a few sorted points, in time linear in the values (no sort of them).

    A value's place is ``2 * #{points < value}``, plus one when it equals a point. It is found in a grid of cells
    over the points' range: the cell of a value is a monotone (non-decreasing) function of it, so the points in
    earlier cells are all below the value and those in later cells all above; the cell's own few points (at most
    ``MAX_STEPS``) are compared one by one. The grid is uniform in the value, or uniform in the float's bits
    (roughly logarithmic, for heavy tails), whichever leaves fewer points in crowded cells; the values in a crowded
    cell are looked up by binary search, as are all of fewer than ``SEARCH_ROWS`` values (still linear in the
    values, log in the points). Exact: no rounding enters a comparison; the cells only decide where they start.
    """

    def __init__(self, points: np.ndarray) -> None:
        # Sorted and distinct (-0.0 as 0.0, so that a point's key is never below an equal value's).
        self.points = np.unique(np.asarray(points, dtype="float64")) + 0.0
        self.mode: str | None = None  # the grid's, once built: "uniform" or "bits"

    def _build(self) -> None:
        """The grid: each cell's first point (``start``), how many steps its points need, the crowded cells."""
        m = len(self.points)
        self._sentinel = np.append(self.points, np.nan)  # a NaN past the last point: no comparison holds
        self.cells = int(min(max(CELLS_PER_POINT * m, 16), MAX_CELLS))
        self.low = float(self.points[0])
        with np.errstate(over="ignore"):
            span = float(self.points[-1] - self.points[0])  # 0 for one point, inf beyond the largest float
        # A uniform grid needs a finite span and scale (not for points a few subnormals apart); else the bits' grid.
        scale = self.cells / span if 0 < span < math.inf else 0.0
        self.scale = scale if scale < math.inf else 0.0
        keys = _ordered_keys(self.points, np.empty(m, dtype=np.int64))
        self.key_low, self.key_high = int(keys[0]), int(keys[-1])
        self.shift = ((self.key_high - self.key_low) // self.cells).bit_length()  # cells of 2**shift keys
        best = None
        for mode in ("uniform", "bits") if self.scale else ("bits",):
            self.mode = mode
            per_cell = np.bincount(self._cells(self.points, np.empty(m), np.empty(m, np.intp)), minlength=self.cells)
            crowded = int(per_cell[per_cell > MAX_STEPS].sum())
            if best is None or crowded < best[0]:
                best = (crowded, mode, per_cell)
            if crowded == 0:
                break
        _, self.mode, per_cell = best
        self.start = np.concatenate([[0], np.cumsum(per_cell)[:-1]])  # points in earlier cells
        self.steps = min(int(per_cell.max()), MAX_STEPS)
        self.crowded = per_cell > MAX_STEPS if per_cell.max() > MAX_STEPS else None

    def _cells(self, values: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The grid cell of each value (monotone in the value), into ``out``."""
        if self.mode == "uniform":
            np.subtract(values, self.low, out=scratch)
            np.multiply(scratch, self.scale, out=scratch)
            np.clip(scratch, 0, self.cells - 1, out=scratch)
            np.copyto(out, scratch, casting="unsafe")
            return out
        keys = _ordered_keys(values, out)
        np.clip(keys, self.key_low, self.key_high, out=keys)
        np.subtract(keys, self.key_low, out=keys)  # in [0, 2**64): wraps in int64, exact read as unsigned
        unsigned = keys.view(np.uint64)
        np.right_shift(unsigned, self.shift, out=unsigned)
        np.minimum(keys, self.cells - 1, out=keys)
        return out

    def histogram(self, values: np.ndarray) -> np.ndarray:
        """How many ``values`` (float64, no NaN) hold each place: ``counts[2 * i + 1]`` equal ``points[i]``,
        ``counts[2 * i]`` lie strictly between ``points[i - 1]`` and ``points[i]`` (the last: above all points)."""
        values = np.ascontiguousarray(values, dtype="float64")
        m = len(self.points)
        if len(values) < SEARCH_ROWS or m == 0:
            place = np.searchsorted(self.points, values, side="left") + np.searchsorted(self.points, values, "right")
            return np.bincount(place, minlength=2 * m + 1)
        if self.mode is None:
            self._build()
        total = np.zeros(2 * m + 1, dtype=np.int64)
        size = min(LOOKUP_CHUNK, len(values))
        scratch, found = np.empty(size), np.empty(size)
        cell, place = np.empty(size, dtype=np.intp), np.empty(size, dtype=np.intp)
        flag = np.empty(size, dtype=bool)
        for begin in range(0, len(values), LOOKUP_CHUNK):
            v = values[begin : begin + LOOKUP_CHUNK]
            k = len(v)
            with np.errstate(over="ignore"):  # a value far from the points: inf, in the last cell
                c = self._cells(v, scratch[:k], cell[:k])
            i, got, b = place[:k], found[:k], flag[:k]
            np.take(self.start, c, out=i, mode="clip")  # mode="clip": "raise" would buffer ``out``
            for _ in range(self.steps):
                np.take(self._sentinel, i, out=got, mode="clip")
                np.less(got, v, out=b)
                i += b
            if self.crowded is not None:
                np.take(self.crowded, c, out=b, mode="clip")
                if b.any():
                    i[b] = np.searchsorted(self.points, v[b], side="left")
            np.take(self._sentinel, i, out=got, mode="clip")
            np.equal(got, v, out=b)
            i *= 2
            i += b
            total += np.bincount(i, minlength=2 * m + 1)
        return total

    def below_and_upto(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each point, how many ``values`` (float64, no NaN) are below it and how many at or below it."""
        cumulative = np.cumsum(self.histogram(values))
        return cumulative[0:-1:2], cumulative[1::2]


def _ks_at_points(cdf_probs: np.ndarray, below: np.ndarray, upto: np.ndarray, n: int) -> float:
    """The KS distance from a sample's counts below and at or below each reference point (see ``ks_distance``)."""
    ref_at = np.asarray(cdf_probs, dtype="float64")
    ref_before = np.concatenate([[0.0], ref_at[:-1]])  # the reference CDF just below each point
    return float(max(np.max(np.abs(ref_at - upto / n)), np.max(np.abs(ref_before - below / n))))


def ks_distance(cdf_values: np.ndarray, cdf_probs: np.ndarray, current: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the profile's reference CDF and a sample, in time linear in the sample.

    The reference CDF is the step function ``G`` stored in the profile: ``G(x) = cdf_probs[i]`` from
    ``cdf_values[i]`` up to the next point, 0 below the first. The distance is ``sup_x |G(x) - F(x)|`` with ``F`` the
    sample's empirical CDF. Between two points ``G`` is constant and ``F`` monotone, so the supremum is at an
    interval's ends: it is the largest of ``|G(x_i) - F(x_i)|`` and ``|G(x_i-) - F(x_i-)|`` over the points ``x_i``
    (``F(x_i-)`` the share of the sample strictly below ``x_i``), exactly. The sample is not sorted: its values are
    counted below and at each point (``PointLookup``), O(rows) for the few points (at most ``CDF_POINTS``).

    Against the two-sample KS of the raw training rows: when the profile stored every distinct training value (at
    most ``CDF_POINTS`` of them), ``G`` is the training rows' empirical CDF and the distance is that KS statistic
    exactly. Otherwise ``cdf_values`` are quantiles at probabilities ``k / CDF_POINTS``, the training CDF lies in
    ``[G, G + 1 / CDF_POINTS)`` everywhere, and the distance is within ``1 / CDF_POINTS`` of that statistic (either
    side). NaN in ``current`` is ignored.
    """
    sample = np.asarray(current, dtype="float64")
    sample = sample[~np.isnan(sample)]
    lookup = PointLookup(np.asarray(cdf_values, dtype="float64"))
    below, upto = lookup.below_and_upto(sample)
    where = np.searchsorted(lookup.points, np.asarray(cdf_values, dtype="float64"))
    return _ks_at_points(cdf_probs, below[where], upto[where], len(sample))


KS_LIMITING_N = 2_000  # from this effective size on, the limiting distribution (scipy's exact one costs 5 ms a call)


def ks_p_value(distance: float, n_reference: int, n_current: int) -> float:
    """Asymptotic two-sample KS p-value: scipy's ``kstwo`` at the effective size (as ``ks_2samp(method="asymp")``)
    up to ``KS_LIMITING_N``, Kolmogorov's limiting distribution with Stephens' small-sample correction beyond (they
    agree to about 1e-3 there; the p-value is reported, a verdict never rests on it)."""
    effective = max(round(n_reference * n_current / (n_reference + n_current)), 1)
    if effective < KS_LIMITING_N:
        return float(np.clip(stats.kstwo.sf(distance, effective), 0.0, 1.0))
    root = math.sqrt(effective)
    return float(np.clip(stats.kstwobign.sf((root + 0.12 + 0.11 / root) * distance), 0.0, 1.0))


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity (statistic, p-value); bins with expected counts under 5 are pooled."""
    table = np.vstack([reference_counts, current_counts]).astype("float64")
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or np.any(table.sum(axis=1) == 0):
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    small = expected.min(axis=0) < MIN_EXPECTED
    if small.any():
        pooled = table[:, small].sum(axis=1, keepdims=True)
        table = np.hstack([table[:, ~small], pooled])
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
        if expected[:, -1].min() < MIN_EXPECTED and table.shape[1] > 2:
            # Still too sparse: fold the pooled bin into the smallest other one.
            smallest = int(np.argmin(table[:, :-1].sum(axis=0)))
            table[:, smallest] += table[:, -1]
            table = table[:, :-1]
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1))


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def numeric_bin_labels(profile: Mapping[str, Any]) -> list[str]:
    """Readable names of a numeric feature's bins, in the order of its shares."""
    if profile["min"] is None:
        return ["< min", "[min, max]", "> max", MISSING]
    edges = [profile["min"], *profile["cuts"], profile["max"]]
    inner = [f"[{_fmt(a)}, {_fmt(b)})" for a, b in pairwise(edges[:-1])]
    last = f"[{_fmt(edges[-2])}, {_fmt(edges[-1])}]"
    return [f"< {_fmt(edges[0])}", *inner, last, f"> {_fmt(edges[-1])}", MISSING]


def numeric_bin_index(profile: Mapping[str, Any], present: np.ndarray) -> np.ndarray:
    """The profile bin of each (non-missing) value of a numeric feature: 0 below the minimum, then the cuts' bins,
    then above the maximum (``len(cuts) + 2``); the missing bin, ``len(cuts) + 3``, is the caller's."""
    cuts = np.asarray(profile["cuts"], dtype="float64")
    if profile["min"] is None:
        return np.ones(len(present), dtype=np.intp)
    index = np.searchsorted(cuts, present, side="right") + 1
    index[present < profile["min"]] = 0
    index[present > profile["max"]] = len(cuts) + 2
    return index


def bin_labels(profile: Mapping[str, Any]) -> list[str]:
    """Readable names of any feature's profile bins, in the order of its shares."""
    if profile["kind"] == "categorical":
        return [*profile["categories"], "other", MISSING]
    return numeric_bin_labels(profile)


def numeric_counts(profile: Mapping[str, Any], values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in a numeric feature's profile bins (NaN counted as missing, the last bin)."""
    return _numeric_pass(profile, values, with_cdf=False)[0]


def _numeric_pass(
    profile: Mapping[str, Any], values: np.ndarray, with_cdf: bool
) -> tuple[np.ndarray, int, tuple[np.ndarray, np.ndarray] | None]:
    """One pass over a numeric feature's values, linear in the rows: the counts in the profile's bins (as
    ``numeric_counts``), how many values are present, and (``with_cdf`` and a profile with a CDF) how many present
    values lie below and at or below each CDF point, for ``ks_distance``'s statistic.

    The bins' edges (minimum, cuts, maximum) and the CDF points are looked up together (``PointLookup``): a bin's
    count is a difference of counts below (or at or below) its edges."""
    values = np.asarray(values, dtype="float64")
    missing = np.isnan(values)
    n_missing = int(missing.sum())
    present = values[~missing] if n_missing else values
    n = len(present)
    cuts = np.asarray(profile["cuts"], dtype="float64")
    low, high = profile["min"], profile["max"]
    cdf = profile.get("cdf") if with_cdf else None
    cdf_values = np.asarray(cdf["values"], dtype="float64") if cdf else np.empty(0)
    counts = None
    if low is None or (len(cuts) and not low <= cuts[0] <= cuts[-1] <= high):
        # No values in training (one inner bin), or cuts outside [min, max] that edge counts cannot express.
        inner = np.bincount(numeric_bin_index(profile, present), minlength=len(cuts) + 3)
        counts = np.append(inner, n_missing).astype("float64")
        if cdf is None:
            return counts, n, None
        lookup = PointLookup(cdf_values)
    else:
        lookup = PointLookup(np.concatenate([[low, high], cuts, cdf_values]))
    below, upto = lookup.below_and_upto(present)

    def at(x: Any) -> np.ndarray:
        return np.searchsorted(lookup.points, np.asarray(x, dtype="float64"))

    if counts is None:
        # [< min], [min, c1), ..., [ck, max], [> max]: differences of the counts below min, below each cut, at or
        # below max, and of all present values.
        edges = np.concatenate([[0], below[at([low])], below[at(cuts)], upto[at([high])], [n]])
        counts = np.append(np.diff(edges), n_missing).astype("float64")
    if cdf is None:
        return counts, n, None
    where = at(cdf_values)
    return counts, n, (below[where], upto[where])


def categorical_counts(profile: Mapping[str, Any], values: pd.Series) -> np.ndarray:
    """Counts of ``values`` in a categorical feature's profile bins: categories, then "other", then "missing"."""
    categories = profile["categories"]
    if hasattr(values.array, "__arrow_array__"):
        # Arrow-backed strings (pandas' default str dtype): look up in Arrow, no conversion to Python objects.
        array = pa.array(values.array)
        found = pc.index_in(array, value_set=pa.array(categories, type=array.type))
        codes = found.fill_null(-1).to_numpy(zero_copy_only=False)
        missing = pc.fill_null(pc.equal(array, MISSING), True).to_numpy(zero_copy_only=False)
    else:
        codes = pd.Index(categories, dtype=object).get_indexer(values.to_numpy(dtype=object))
        missing = (values.isna() | values.eq(MISSING)).to_numpy(dtype=bool)
    codes = np.where(codes < 0, len(categories), codes)
    codes[missing] = len(categories) + 1
    return np.bincount(codes, minlength=len(categories) + 2).astype("float64")


def _numeric_values(window: pd.DataFrame, column: str) -> np.ndarray:
    series = window[column]
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        example = series.dropna().head(3).tolist()
        raise WindowInvalid(f"numeric feature {column!r} has dtype {series.dtype} (e.g. {example}), expected numbers")
    return series.to_numpy(dtype="float64", na_value=np.nan)


def _categorical_values(window: pd.DataFrame, column: str) -> pd.Series:
    series = window[column]
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred not in ("string", "empty"):
        example = series.dropna().head(3).tolist()
        raise WindowInvalid(
            f"categorical feature {column!r} holds {inferred} values (e.g. {example}), expected strings "
            "(the model features its feature step makes)"
        )
    return series


def _feature_drift(
    name: str, kind: str, profile: Mapping[str, Any], current: np.ndarray, extra: tuple[str, float | None, float | None]
) -> dict[str, Any]:
    """The drift fields of one feature that do not depend on the other features."""
    reference = np.asarray(profile["shares"], dtype="float64")
    shares = current / current.sum()
    labels = bin_labels(profile)
    test, statistic, p_value = extra
    return {
        "feature": name,
        "kind": kind,
        "psi": psi(reference, shares),
        "js_distance": js_distance(reference, shares),
        "test": test,
        "statistic": statistic,
        "p_value": p_value,
        "null_rate_reference": float(reference[-1]),
        "null_rate_current": float(shares[-1]),
        "bins": labels,
        "reference_shares": reference.tolist(),
        "current_shares": shares.tolist(),
    }


@dataclass
class FeatureCounts:
    """What a window's statistics of one feature need, additive over any split of its rows: the counts in the
    profile's bins (missing last) and, for a numeric feature, how many values are present and how many lie below and
    at or below each of the profile's CDF points (None without a CDF)."""

    counts: np.ndarray
    present: int = 0
    below: np.ndarray | None = None
    upto: np.ndarray | None = None

    def __add__(self, other: FeatureCounts) -> FeatureCounts:
        def add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or b is None else a + b

        return FeatureCounts(
            self.counts + other.counts, self.present + other.present, add(self.below, other.below),
            add(self.upto, other.upto),
        )  # fmt: skip

    @classmethod
    def of(cls, profile: Mapping[str, Any], window: pd.DataFrame, name: str) -> FeatureCounts:
        """One feature's counts over ``window``'s column ``name`` (its type checked)."""
        if profile["kind"] == "numeric":
            counts, present, at_cdf = _numeric_pass(profile, _numeric_values(window, name), with_cdf=True)
            below, upto = at_cdf if at_cdf is not None else (None, None)
            return cls(counts, present, below, upto)
        return cls(categorical_counts(profile, _categorical_values(window, name)))

    @classmethod
    def empty(cls, profile: Mapping[str, Any]) -> FeatureCounts:
        """The counts of no rows."""
        counts = np.zeros(len(profile["shares"]), dtype="float64")
        cdf = profile.get("cdf") if profile["kind"] == "numeric" else None
        zeros = np.zeros(len(cdf["values"]), dtype=np.int64) if cdf else None
        return cls(counts, 0, zeros, None if zeros is None else zeros.copy())


def _numeric_drift(name: str, kind: str, profile: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    counts, present, at_cdf = _numeric_pass(profile, values, with_cdf=True)
    below, upto = at_cdf if at_cdf is not None else (None, None)
    return _numeric_drift_of(name, kind, profile, FeatureCounts(counts, present, below, upto))


def _numeric_drift_of(name: str, kind: str, profile: Mapping[str, Any], found: FeatureCounts) -> dict[str, Any]:
    n_reference = round(profile.get("count", 0) * (1 - profile["shares"][-1]))
    if found.below is not None and found.upto is not None and found.present and n_reference:
        distance = _ks_at_points(profile["cdf"]["probs"], found.below, found.upto, found.present)
        extra = ("ks", distance, ks_p_value(distance, n_reference, found.present))
    else:
        extra = ("ks", None, None)
    return _feature_drift(name, kind, profile, found.counts, extra)


def _categorical_drift_of(name: str, profile: Mapping[str, Any], counts: np.ndarray) -> dict[str, Any]:
    reference_counts = np.asarray(profile["shares"], dtype="float64") * profile.get("count", 0)
    statistic, p_value = chi_square(reference_counts, counts) if reference_counts.sum() else (None, None)
    return _feature_drift(name, "categorical", profile, counts, ("chi_square", statistic, p_value))


def _array(values: Any, rows: int, what: str) -> np.ndarray:
    try:
        array = np.asarray(pd.Series(values).to_numpy(dtype="float64", na_value=np.nan))
    except (TypeError, ValueError) as err:
        raise WindowInvalid(f"{what} are not numbers: {err}") from err
    if array.shape != (rows,):
        raise WindowInvalid(f"{what} have shape {array.shape}, the window has {rows} rows")
    return array


def _performance(profile: Mapping[str, Any], probabilities: np.ndarray, outcomes: np.ndarray) -> PerformanceDrift:
    labelled = ~np.isnan(outcomes) & ~np.isnan(probabilities)
    y, p = outcomes[labelled], probabilities[labelled]
    if not np.isin(y, (0.0, 1.0)).all():
        raise WindowInvalid(f"outcomes must be 0, 1 or missing, got values {np.unique(y)[:5].tolist()}")
    both = 0 < y.sum() < len(y)  # both outcomes present (y is 0/1): no np.unique, which sorts
    reference = profile.get("test_metrics") or {}
    return PerformanceDrift(
        labelled_rows=int(labelled.sum()),
        roc_auc=float(metrics.roc_auc_score(y, p)) if both else None,
        log_loss=float(metrics.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])) if len(y) else None,
        reference_roc_auc=reference.get("roc_auc"),
        reference_log_loss=reference.get("log_loss"),
    )


def reference_estimated_auc(prediction_profile: Mapping[str, Any] | None) -> float | None:
    """The estimated ROC AUC of the profile's test-set probabilities, from their stored CDF (exact for at most
    ``CDF_POINTS`` distinct probabilities, else to the resolution of that many quantiles); None without one."""
    cdf = (prediction_profile or {}).get("cdf")
    if not cdf or not cdf.get("values"):
        return None
    mass = np.diff(np.asarray(cdf["probs"], dtype="float64"), prepend=0.0)
    values = np.clip(np.asarray(cdf["values"], dtype="float64"), 0.0, 1.0)
    return estimate(values, weights=np.maximum(mass, 0.0)).roc_auc


def _performance_estimate(
    reference: Mapping[str, Any], scores: np.ndarray, outcomes: np.ndarray | None, max_drop: float
) -> PerformanceEstimate:
    known = ~np.isnan(scores)
    window = estimate(scores[known])
    reference_auc = reference_estimated_auc(reference.get("prediction"))
    drop = None if window.roc_auc is None or reference_auc is None else reference_auc - window.roc_auc
    labelled = None
    if outcomes is not None:
        rows = known & ~np.isnan(outcomes)
        if rows.any():
            on_labelled = estimate(scores[rows])
            reliability = calibration(scores[rows], outcomes[rows])
            labelled = LabelledEstimate(
                rows=int(rows.sum()),
                estimated_roc_auc=on_labelled.roc_auc,
                interval=None if on_labelled.interval is None else list(on_labelled.interval),
                expected_log_loss=on_labelled.log_loss,
                mean_probability=reliability.mean_probability,
                observed_rate=reliability.observed_rate,
            )
    return PerformanceEstimate(
        rows=window.rows,
        estimated_roc_auc=window.roc_auc,
        interval=None if window.interval is None else list(window.interval),
        expected_positive_rate=window.positive_rate,
        expected_brier=window.brier,
        expected_log_loss=window.log_loss,
        reference_estimated_roc_auc=reference_auc,
        reference_realised_roc_auc=(reference.get("test_metrics") or {}).get("roc_auc"),
        drop=drop,
        max_drop=max_drop,
        dropped=drop is not None and drop > max_drop,
        labelled=labelled,
    )


def compare(
    profile: Mapping[str, Any],
    window: pd.DataFrame,
    thresholds: DriftThresholds | None = None,
    probabilities: Sequence[float] | np.ndarray | pd.Series | None = None,
    outcomes: Sequence[float] | np.ndarray | pd.Series | None = None,
    reference_sample: pd.DataFrame | None = None,
    segments: Sequence[str] = (),
) -> DriftResult:
    """Compare a window of model features (and its predicted probabilities and outcomes) with a reference profile.

    The same as ``compare_summary`` of the window's ``summarize``: a window too large for one process is summarised
    in parts that ``merge_summaries`` joins, with the same result.

    Args:
        profile: the model version's reference profile (``baseline/baseline_stats.json`` as parsed JSON).
        window: model features of the window's records (``features_from_frame``), one row per prediction.
        thresholds: drift thresholds; the defaults when None.
        probabilities: the model's predicted probability per row, for prediction drift and the label-free estimate.
        outcomes: the observed outcome per row (0/1, NaN where no feedback has arrived), for realised performance.
        reference_sample: model features of a bounded sample of the training rows, for the multivariate check
            (``airloop.monitoring.multivariate``); skipped when None.
        segments: the features whose bins are segments (``airloop.monitoring.segments``), e.g. age and race.

    Raises:
        ProfileUnavailable: the profile is missing, old or malformed ("retrain to enable drift monitoring").
        EmptyWindow: the window has no rows.
        WindowInvalid: columns missing or of the wrong type, probabilities or outcomes malformed.
    """
    summary = summarize(profile, window, probabilities, outcomes, segments)
    return compare_summary(profile, summary, thresholds, reference_sample, segments)


@dataclass
class WindowSummary:
    """Everything ``compare_summary`` reads of a window, mergeable over any split of its rows (``merge_summaries``).

    The features, which are most of a window's columns, are reduced to counts (``FeatureCounts``). The few per-row
    values that ranking statistics need are kept: the probabilities, outcomes and each segment feature's bin (an
    index into ``bin_labels``). ``sample`` is a uniform sample of at most ``sample_rows`` of the window's feature
    rows, for the multivariate check."""

    rows: int
    features: dict[str, FeatureCounts]
    probabilities: np.ndarray | None = None
    outcomes: np.ndarray | None = None
    segments: dict[str, np.ndarray] = field(default_factory=dict)
    sample: pd.DataFrame | None = None


def summarize(
    profile: Mapping[str, Any],
    window: pd.DataFrame,
    probabilities: Sequence[float] | np.ndarray | pd.Series | None = None,
    outcomes: Sequence[float] | np.ndarray | pd.Series | None = None,
    segments: Sequence[str] = (),
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> WindowSummary:
    """A window's (or a part of a window's) ``WindowSummary`` against a reference profile (arguments as ``compare``);
    a part with no rows has zero counts. Raises ``WindowInvalid`` as ``compare`` does."""
    reference = load_profile(profile)
    if not isinstance(window, pd.DataFrame):
        raise WindowInvalid(f"the window is a {type(window).__name__}, not a DataFrame of model features")
    rows = len(window)
    if outcomes is not None and probabilities is None:
        raise WindowInvalid("outcomes were given without the probabilities they are scored against")
    if rows == 0:
        empty = {name: FeatureCounts.empty(feature) for name, feature in reference["features"].items()}
        none = np.empty(0, dtype="float64")
        return WindowSummary(
            0, empty, None if probabilities is None else none, None if outcomes is None else none,
            {n: np.empty(0, dtype=np.int16) for n in segments if n in reference["features"]},
        )  # fmt: skip
    absent = [c for c in reference["features"] if c not in window.columns]
    if absent:
        raise WindowInvalid(f"the window lacks profiled feature columns {absent}; it has {list(window.columns)[:12]}")
    features = {name: FeatureCounts.of(feature, window, name) for name, feature in reference["features"].items()}
    scores = observed = None
    if probabilities is not None:
        scores = _array(probabilities, rows, "probabilities")
        if np.any((scores < 0) | (scores > 1)):
            raise WindowInvalid(f"probabilities outside [0, 1]: {scores[(scores < 0) | (scores > 1)][:5].tolist()}")
        observed = None if outcomes is None else _array(outcomes, rows, "outcomes")
    bins = {name: segment_bins(reference["features"][name], window[name]) for name in segments_of(reference, segments)}
    columns = list(reference["features"])
    sample = window[columns] if rows <= sample_rows else window[columns].sample(sample_rows, random_state=seed)
    return WindowSummary(rows, features, scores, observed, bins, sample)


def summary_parts(summary: WindowSummary) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """A summary as plain data to store: its counts (JSON), its per-row values and its sample (two frames);
    ``summary_from_parts`` reads them back."""
    counts = {
        "rows": summary.rows,
        "scored": summary.probabilities is not None,
        "labelled": summary.outcomes is not None,
        "segments": list(summary.segments),
        "features": {
            name: {
                "counts": f.counts.tolist(),
                "present": f.present,
                "below": None if f.below is None else f.below.tolist(),
                "upto": None if f.upto is None else f.upto.tolist(),
            }
            for name, f in summary.features.items()
        },
    }
    per_row = pd.DataFrame({f"segment:{name}": codes for name, codes in summary.segments.items()})
    if summary.probabilities is not None:
        per_row["probability"] = summary.probabilities
    if summary.outcomes is not None:
        per_row["outcome"] = summary.outcomes
    per_row.index = pd.RangeIndex(summary.rows)
    return counts, per_row, summary.sample if summary.sample is not None else pd.DataFrame()


def summary_from_parts(counts: Mapping[str, Any], per_row: pd.DataFrame, sample: pd.DataFrame) -> WindowSummary:
    """The summary ``summary_parts`` stored."""

    def array(values: list | None, dtype: str) -> np.ndarray | None:
        return None if values is None else np.asarray(values, dtype=dtype)

    features = {
        name: FeatureCounts(array(f["counts"], "float64"), int(f["present"]), array(f["below"], "int64"),
                            array(f["upto"], "int64"))
        for name, f in counts["features"].items()
    }  # fmt: skip

    def column(name: str) -> np.ndarray:  # a part with no rows may have stored no frame
        return per_row[name].to_numpy(dtype="float64") if name in per_row else np.empty(0, dtype="float64")

    return WindowSummary(
        rows=int(counts["rows"]),
        features=features,
        probabilities=column("probability") if counts["scored"] else None,
        outcomes=column("outcome") if counts["labelled"] else None,
        segments={
            n: per_row[f"segment:{n}"].to_numpy(dtype=np.int16) if f"segment:{n}" in per_row else np.empty(0, np.int16)
            for n in counts["segments"]
        },
        sample=sample if len(sample.columns) else None,
    )


def segments_of(reference: Mapping[str, Any], segments: Sequence[str]) -> list[str]:
    """The named segment features that the profile has."""
    return [name for name in dict.fromkeys(segments) if name in reference["features"]]


def merge_summaries(parts: Sequence[WindowSummary], sample_rows: int = SAMPLE_ROWS, seed: int = 0) -> WindowSummary:
    """The summary of the rows of ``parts`` together, in their order: what ``summarize`` of the concatenated window
    gives (the sample aside: a uniform sample of the union, drawn without replacement from the parts' samples in
    proportion to their rows, so it is a uniform sample of the whole window as the parts' own are of each part)."""
    if not parts:
        raise EmptyWindow("no part of the window was summarised: nothing to compare")
    rows = sum(part.rows for part in parts)
    features = {name: sum((p.features[name] for p in parts[1:]), parts[0].features[name]) for name in parts[0].features}
    scored = [p.probabilities is not None for p in parts if p.rows]
    probabilities = outcomes = None
    if any(scored):
        if not all(scored):
            raise WindowInvalid("some parts of the window have probabilities and others none")
        probabilities = np.concatenate([p.probabilities for p in parts if p.probabilities is not None])
        if any(p.outcomes is not None for p in parts):
            nan = np.full
            outcomes = np.concatenate(
                [p.outcomes if p.outcomes is not None else nan(p.rows, np.nan) for p in parts if p.rows]
            )
    segments = {name: np.concatenate([p.segments[name] for p in parts]) for name in parts[0].segments}
    samples = [p.sample for p in parts if p.sample is not None and len(p.sample)]
    sample = None
    if samples:
        sizes = np.array([p.rows for p in parts if p.sample is not None and len(p.sample)], dtype=np.int64)
        wanted = min(sample_rows, int(sizes.sum()))
        rng = np.random.default_rng(seed)
        taken = rng.multivariate_hypergeometric(sizes, wanted)
        sample = pd.concat(
            [
                s if k == len(s) else s.sample(int(k), random_state=seed)
                for s, k in zip(samples, taken, strict=True)
                if k
            ]
        )
    return WindowSummary(rows, features, probabilities, outcomes, segments, sample)


def compare_summary(
    profile: Mapping[str, Any],
    summary: WindowSummary,
    thresholds: DriftThresholds | None = None,
    reference_sample: pd.DataFrame | None = None,
    segments: Sequence[str] = (),
) -> DriftResult:
    """Compare a window's summary with a reference profile (``compare`` of the whole window, arguments as there)."""
    limits = thresholds or DriftThresholds()
    reference = load_profile(profile)
    rows = summary.rows
    if rows == 0:
        raise EmptyWindow("the window has no rows: nothing to compare")
    absent = [c for c in reference["features"] if c not in summary.features]
    if absent:
        raise WindowInvalid(f"the window lacks profiled feature columns {absent}")
    found = {}
    for name, feature in reference["features"].items():
        if feature["kind"] == "numeric":
            found[name] = _numeric_drift_of(name, "numeric", feature, summary.features[name])
        else:
            found[name] = _categorical_drift_of(name, feature, summary.features[name].counts)
    names = [n for n, f in found.items() if f["p_value"] is not None]
    adjusted = dict(zip(names, stats.false_discovery_control([found[n]["p_value"] for n in names]), strict=True))
    features = {
        name: FeatureDrift(
            **f,
            p_value_adjusted=None if name not in adjusted else float(adjusted[name]),
            psi_threshold=limits.psi_for(name),
            drifted=f["psi"] >= limits.psi_for(name),
            significant=name in adjusted and adjusted[name] < limits.alpha,
        )
        for name, f in found.items()
    }
    prediction = performance = performance_estimate = scores_and_outcomes = None
    scores = summary.probabilities
    if scores is not None:
        if reference.get("prediction") is not None:
            f = _numeric_drift("probability", "prediction", reference["prediction"], scores)
            # One test of its own, outside the features' Benjamini-Hochberg family.
            prediction = FeatureDrift(
                **f,
                p_value_adjusted=f["p_value"],
                psi_threshold=limits.prediction_psi,
                drifted=f["psi"] >= limits.prediction_psi,
                significant=f["p_value"] is not None and f["p_value"] < limits.alpha,
            )
        observed = summary.outcomes
        if observed is not None:
            performance = _performance(reference, scores, observed)
            scores_and_outcomes = (scores, observed)
        performance_estimate = _performance_estimate(reference, scores, observed, limits.max_estimated_auc_drop)
    total = sum(limits.weight_for(n) for n in features)
    drifted = sorted(n for n, f in features.items() if f.drifted)
    share = sum(limits.weight_for(n) for n in drifted) / total if total else 0.0
    shares = importance_shares(reference.get("importance"), list(features))
    facts = _facts(features, share, shares, prediction, performance, performance_estimate, scores_and_outcomes)
    counts = reference.get("test_counts") or {}
    if facts["realised"] is not None and counts.get("positives") and counts.get("negatives"):
        facts["realised"]["reference_counts"] = (int(counts["positives"]), int(counts["negatives"]))
    multivariate = None
    if reference_sample is not None and summary.sample is not None and rows >= limits.min_rows:
        multivariate = domain_classifier(
            reference_sample, summary.sample, watched_columns(list(features), shares, limits.importance_floor)
        )
    if multivariate is not None:
        facts["multivariate"] = {
            "roc_auc": multivariate.roc_auc,
            "interval": multivariate.interval,
            "features": multivariate.features,
        }
    by_segment = window_segments(
        reference,
        {name: summary.segments[name] for name in segments_of(reference, segments) if name in summary.segments},
        scores,
        None if scores_and_outcomes is None else scores_and_outcomes[1],
    )
    hits = decide(facts, limits) + segment_rules(by_segment, limits) if rows >= limits.min_rows else []
    hits.sort(key=lambda h: (h.decision != "alert", RULES.index(h.rule)))
    verdict, reason = _verdict(rows, hits, limits)
    return DriftResult(
        schema_version=SCHEMA_VERSION,
        verdict=verdict,
        reason=reason,
        rows=rows,
        drifted_features=drifted,
        drifted_share=share,
        importance_weighted_share=importance_weighted_score(drifted, shares),
        alert=any(h.decision == "alert" for h in hits),
        retrain=any(h.decision == "retrain" for h in hits),
        rules=hits,
        multivariate=multivariate,
        segments=by_segment,
        features=features,
        prediction=prediction,
        performance=performance,
        performance_estimate=performance_estimate,
        thresholds=limits,
    )


def _facts(
    features: Mapping[str, FeatureDrift],
    share: float,
    shares: Mapping[str, float] | None,
    prediction: FeatureDrift | None,
    performance: PerformanceDrift | None,
    estimated: PerformanceEstimate | None,
    scores_and_outcomes: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, Any]:
    """What the decision rules read (``decision.decide``), from the window's statistics."""
    found: dict[str, Any] = {
        "features": {
            name: {
                "psi": f.psi,
                "psi_threshold": f.psi_threshold,
                "drifted": f.drifted,
                "significant": f.significant,
                "null_rate_reference": f.null_rate_reference,
                "null_rate_current": f.null_rate_current,
                **(
                    {"other_reference": f.reference_shares[-2], "other_current": f.current_shares[-2]}
                    if f.kind == "categorical"
                    else {}
                ),
            }
            for name, f in features.items()
        },
        "drifted_share": share,
        "importance": shares,
        "prediction": None if prediction is None else {"psi": prediction.psi},
        "calibration": None,
        "estimate": None,
        "realised": None,
    }
    if scores_and_outcomes is not None:
        scores, outcomes = scores_and_outcomes
        known = ~np.isnan(scores) & ~np.isnan(outcomes)
        p, y = scores[known], outcomes[known]
        if len(p):
            found["calibration"] = {
                "rows": len(p),
                "mean_probability": float(p.mean()),
                "observed_rate": float(y.mean()),
                "variance_sum": float(np.sum(p * (1 - p))),
            }
            positives = int(y.sum())
            found["realised"] = {
                "roc_auc": None if performance is None else performance.roc_auc,
                "positives": positives,
                "negatives": len(y) - positives,
                "reference_roc_auc": None if performance is None else performance.reference_roc_auc,
                "reference_counts": None,
            }
    if estimated is not None:
        found["estimate"] = {
            "roc_auc": estimated.estimated_roc_auc,
            "interval": estimated.interval,
            "reference_roc_auc": estimated.reference_estimated_roc_auc,
        }
    return found


def _verdict(rows: int, hits: list[RuleHit], limits: DriftThresholds) -> tuple[Verdict, str]:
    """The window's verdict and a sentence naming the rules that fired."""
    if rows < limits.min_rows:
        return "insufficient_data", f"{rows} rows, fewer than the {limits.min_rows} a verdict needs: no verdict"
    retrain = [h for h in hits if h.decision == "retrain"]
    alert = [h for h in hits if h.decision == "alert"]
    if retrain:
        return "drift", "retrain: " + "; ".join(f"[{h.rule}] {h.message}" for h in retrain) + (
            "; alert: " + "; ".join(f"[{h.rule}] {h.message}" for h in alert) if alert else ""
        )
    if alert:
        return "alert", "alert: " + "; ".join(f"[{h.rule}] {h.message}" for h in alert) + "; no retrain rule fired"
    return "no_drift", "no alert or retrain rule fired"
