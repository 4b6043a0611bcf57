"""Judged per group: a model's figures on each group of records its spec names, and the rule that refuses a candidate
worse than the champion for one group, whatever it gains on average.

The spec's ``evaluation.groups`` name raw columns of the record (readmission: age band, gender, race, admission
type), optionally merged into ``bands``; ``labels`` gives every record its level of each group. Training (the test
set), the gate (candidate vs champion on the same test rows) and the A/B evaluation (per arm on its labelled rows)
all take their per-group figures and verdicts from here.

Figures of one level (``figures``), each with its count and an interval at ``evaluation.level``:

- ROC AUC, DeLong interval (``airloop.experiments.sequential``);
- recall at the version's operating threshold (flagged positives / positives), Wilson interval;
- calibration gap, mean predicted probability minus observed rate, normal interval of the per-row ``p - y``;
- positive rate (the observed outcome rate) and alert rate (share flagged), Wilson intervals.

The rule (``compare``, ``refusals``): a level is judged when it has at least ``min_rows`` labelled rows (in each
arm) and the difference of ``evaluation.metric`` can be estimated; the candidate is worse there when it is worse by
more than ``tolerance`` beyond doubt: the whole interval of the difference lies below ``-tolerance`` (so it also
excludes 0). The interval is paired DeLong (or the paired per-row loss differences) when both models scored the same
rows, unpaired otherwise, at a level Bonferroni-corrected over the levels judged, so ~20 levels do not mean ~20
chances of a false refusal. Why not "point gap beyond the tolerance and the interval excludes 0": the interval covers
the sampling of the test rows, not the training variance of a retrain, and on the 3,000-row sample of
diabetic_data.csv a retrain of the same config with another seed was refused that way (gender=Male, gap -0.072,
interval [-0.142, -0.002]). Pure numpy/pandas: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from airloop.experiments import sequential
from airloop.spec.schema import EvaluationSpec, GroupSpec

MISSING = "missing"
OTHER = "other"
#: Levels kept per group (the most frequent; the rest are "other"), so reports and metric names stay bounded.
MAX_LEVELS = 20
#: Characters MLflow allows in a metric name besides letters and digits (others become "_").
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


# --- which level of each group a record is in ---


def _text(value: Any) -> str:
    """A raw value as a level name: integral numbers without ``.0`` (an integer id read as float is the same id)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def group_labels(group: GroupSpec, values: pd.Series, missing_markers: Sequence[str] = ()) -> np.ndarray:
    """Each record's level of one group: its band, or its value; "missing" where not recorded, "other" beyond."""
    raw = values.astype("object")
    missing = (raw.isna() | raw.isin(list(missing_markers))).to_numpy()
    text = np.asarray([_text(v) for v in raw.to_numpy()], dtype=object)
    if group.bands:
        lookup = {_text(member): band for band, members in group.bands.items() for member in members}
        out = np.asarray([lookup.get(v, OTHER) for v in text], dtype=object)
    else:
        out = text.copy()
        present = out[~missing]
        if len(present):
            levels, counts = np.unique(present.astype(str), return_counts=True)
            if len(levels) > MAX_LEVELS:
                kept = set(levels[np.argsort(-counts, kind="stable")[:MAX_LEVELS]])
                out = np.asarray([v if v in kept else OTHER for v in out], dtype=object)
    out[missing] = MISSING
    return out


def labels(spec: EvaluationSpec, records: pd.DataFrame, missing_markers: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Every group's level per record (``{group: labels}``); a group whose column the records lack is left out."""
    return {
        g.label: group_labels(g, records[g.column], missing_markers) for g in spec.groups if g.column in records.columns
    }


# --- figures of one model on one set of rows ---


def _interval(mean: float, variance: float, z: float, low: float = -math.inf, high: float = math.inf):
    if not math.isfinite(variance):
        return None
    half = z * math.sqrt(max(variance, 0.0))
    return max(low, mean - half), min(high, mean + half)


def level_figures(y: np.ndarray, p: np.ndarray, flagged: np.ndarray | None, level: float = 0.95) -> dict[str, Any]:
    """ROC AUC, recall, calibration gap, positive rate and alert rate of one set of labelled rows, with intervals
    (recall and alert rate None when ``flagged``, the records the model's class marks positive, is not known)."""
    n = len(y)
    positives = int(y.sum())
    arm = sequential.arm_stats(y, p, level)
    z = float(stats.norm.ppf(0.5 + level / 2))
    gap = (p - y).astype(float)
    gap_mean = float(gap.mean()) if n else None
    found: dict[str, Any] = {
        "rows": n,
        "positives": positives,
        "roc_auc": arm.roc_auc,
        "roc_auc_ci": arm.roc_auc_ci,
        "recall": None,
        "recall_ci": None,
        "calibration_gap": gap_mean,
        "calibration_gap_ci": _interval(gap_mean, float(gap.var(ddof=1)) / n, z, -1.0, 1.0) if n > 1 else None,
        "positive_rate": arm.positive_rate,
        "positive_rate_ci": arm.positive_rate_ci,
        "alert_rate": None,
        "alert_rate_ci": None,
    }
    if flagged is not None:
        caught = int(flagged[y == 1].sum())
        found.update(
            recall=caught / positives if positives else None,
            recall_ci=sequential.wilson(caught, positives, level),
            alert_rate=float(flagged.mean()) if n else None,
            alert_rate_ci=sequential.wilson(int(flagged.sum()), n, level),
        )
    return found


def figures(
    groups: Mapping[str, np.ndarray], y: np.ndarray, p: np.ndarray, flagged: np.ndarray | None, level: float = 0.95
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{group: {level: level_figures}}`` of one model on labelled rows, levels largest first. ``flagged``: the
    records the model's class marks positive (probability at or above its operating threshold), None if unknown."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    flags = None if flagged is None else np.asarray(flagged, dtype=bool)
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for name, labelled in groups.items():
        names, counts = np.unique(labelled.astype(str), return_counts=True)
        order = names[np.argsort(-counts, kind="stable")]
        found[name] = {}
        for v in order:
            mask = labelled == v
            found[name][str(v)] = level_figures(y[mask], p[mask], None if flags is None else flags[mask], level)
    return found


#: The prefix of the flat per-group metrics on a training run (apart from its pooled ``test_*`` metrics).
METRIC_PREFIX = "group"


def metric_name(group: str, level: str, stat: str, prefix: str = METRIC_PREFIX) -> str:
    """A flat MLflow metric name for one figure, bounded in length and made of characters MLflow accepts."""
    safe = _METRIC_UNSAFE.sub("_", level).strip("_")[:32] or "blank"
    return f"{prefix}.{group}.{safe}.{stat}"


FLAT_STATS = ("rows", "roc_auc", "recall", "calibration_gap", "positive_rate", "alert_rate")


def from_metrics(metrics: Mapping[str, float], prefix: str = METRIC_PREFIX) -> dict[str, dict[str, dict[str, float]]]:
    """The flat per-group metrics of a run read back as ``{group: {level: {stat: value}}}`` (levels as named in the
    metric, i.e. made MLflow-safe)."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for key, value in sorted(metrics.items()):
        parts = key.split(".")
        if len(parts) < 4 or parts[0] != prefix or parts[-1] not in FLAT_STATS:
            continue
        found.setdefault(parts[1], {}).setdefault(".".join(parts[2:-1]), {})[parts[-1]] = value
    return found


def flat_metrics(found: Mapping[str, Mapping[str, Mapping[str, Any]]], prefix: str = METRIC_PREFIX) -> dict[str, float]:
    """The figures as flat MLflow metrics (``<prefix>.<group>.<level>.<stat>``; undefined ones left out)."""
    return {
        metric_name(group, level, stat, prefix): float(figs[stat])
        for group, levels in found.items()
        for level, figs in levels.items()
        for stat in FLAT_STATS
        if figs.get(stat) is not None
    }


# --- candidate against champion, group by group ---


@dataclass(frozen=True)
class GroupGap:
    """How the candidate compares with the champion on one level of one group (positive gap = candidate better)."""

    group: str
    level: str
    metric: str
    rows: int  # labelled rows: of the level (paired), or of the smaller arm's level (unpaired)
    candidate: float | None
    champion: float | None
    gap: float | None
    interval: tuple[float, float] | None
    judged: bool  # enough rows and an estimable difference
    worse: bool  # beyond the tolerance and the interval excludes 0
    tolerance: float
    confidence: float  # the per-level level after the Bonferroni correction

    def sentence(self) -> str:
        """The comparison in words, with every number."""
        who = f"{self.group}={self.level}"
        if self.gap is None or self.interval is None:
            return f"{who}: {self.rows} rows, not estimable"
        low, high = self.interval
        return (
            f"{who}: {self.metric} {_fmt(self.candidate)} vs champion {_fmt(self.champion)} (gap {self.gap:+.4f},"
            f" {self.confidence:.2%} interval [{low:+.4f}, {high:+.4f}], tolerance {self.tolerance}, {self.rows} rows)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, with the sentence."""
        return {**asdict(self), "interval": list(self.interval) if self.interval else None, "text": self.sentence()}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _metric_value(metric: str, y: np.ndarray, p: np.ndarray) -> float | None:
    if metric == "roc_auc":
        return sequential.arm_stats(y, p).roc_auc
    return float(sequential.row_losses(metric, y, p).mean()) if len(y) else None


def _judge(
    found: list[tuple[str, str, int, float | None, float | None, sequential.Difference | None]],
    spec: EvaluationSpec,
) -> list[GroupGap]:
    judged = [f for f in found if f[2] >= spec.min_rows and f[5] is not None]
    confidence = 1 - (1 - spec.level) / max(len(judged), 1)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    gaps = []
    for group, level, rows, cand, champ, diff in found:
        is_judged = rows >= spec.min_rows and diff is not None
        interval = None if diff is None else _interval(diff.estimate, diff.variance, z)
        worse = bool(is_judged and interval is not None and interval[1] < -spec.tolerance)
        gap = None if diff is None else diff.estimate
        gaps.append(
            GroupGap(
                group,
                level,
                spec.metric,
                rows,
                cand,
                champ,
                gap,
                interval,
                is_judged,
                worse,
                spec.tolerance,
                confidence,
            )
        )
    return gaps


def compare(
    spec: EvaluationSpec,
    groups: Mapping[str, np.ndarray],
    y: np.ndarray,
    p_champion: np.ndarray,
    p_candidate: np.ndarray,
) -> list[GroupGap]:
    """Candidate vs champion on the same labelled rows (the gate's test set, or shadow scores), level by level."""
    y, p_a, p_b = (np.asarray(v, dtype=float) for v in (y, p_champion, p_candidate))
    found = []
    for name, labelled in groups.items():
        for level in dict.fromkeys(labelled.astype(str)):
            mask = labelled == level
            diff = sequential.paired_difference(spec.metric, y[mask], p_a[mask], p_b[mask])
            cand, champ = _metric_value(spec.metric, y[mask], p_b[mask]), _metric_value(spec.metric, y[mask], p_a[mask])
            found.append((name, str(level), int(mask.sum()), cand, champ, diff))
    return _judge(found, spec)


def compare_arms(
    spec: EvaluationSpec,
    champion: tuple[Mapping[str, np.ndarray], np.ndarray, np.ndarray],
    candidate: tuple[Mapping[str, np.ndarray], np.ndarray, np.ndarray],
) -> list[GroupGap]:
    """Candidate vs champion on disjoint labelled rows (A/B arms: each ``(groups, y, p)``), level by level."""
    groups_a, y_a, p_a = champion
    groups_b, y_b, p_b = candidate
    y_a, p_a, y_b, p_b = (np.asarray(v, dtype=float) for v in (y_a, p_a, y_b, p_b))
    found = []
    for name in groups_a.keys() & groups_b.keys():
        for level in dict.fromkeys([*groups_a[name].astype(str), *groups_b[name].astype(str)]):
            a, b = groups_a[name] == level, groups_b[name] == level
            diff = sequential.difference(spec.metric, y_a[a], p_a[a], y_b[b], p_b[b])
            cand, champ = _metric_value(spec.metric, y_b[b], p_b[b]), _metric_value(spec.metric, y_a[a], p_a[a])
            found.append((name, str(level), int(min(a.sum(), b.sum())), cand, champ, diff))
    return _judge(found, spec)


def refusals(gaps: Sequence[GroupGap]) -> list[GroupGap]:
    """The levels where the candidate is worse than the champion beyond the tolerance, worst first."""
    return sorted((g for g in gaps if g.worse), key=lambda g: g.gap or 0.0)


def worst(gaps: Sequence[GroupGap]) -> GroupGap | None:
    """The judged level with the lowest gap (the candidate's worst group), if any was judged."""
    judged = [g for g in gaps if g.judged and g.gap is not None]
    return min(judged, key=lambda g: g.gap) if judged else None  # type: ignore[arg-type, return-value]


#: Groups a refusal's reason spells out (worst first); the rest are counted, so the reason fits a registry tag.
REASON_GROUPS = 5


def reason(refused: Sequence[GroupGap]) -> str:
    """The refusal in words: the groups the candidate is worse for, worst first (the first ``REASON_GROUPS``)."""
    shown = "; ".join(g.sentence() for g in refused[:REASON_GROUPS])
    more = len(refused) - REASON_GROUPS
    return f"worse for {shown}" + (f"; and {more} more groups" if more > 0 else "")
