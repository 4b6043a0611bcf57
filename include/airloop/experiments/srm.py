"""Sample ratio mismatch: is the traffic split the one configured? Checked at every look, valid however often one looks.

A broken split (a router bug, a variant that fails for some clients, outcomes that arrive for one arm only) makes
every other number of the experiment suspect: the arms no longer hold comparable rows. The usual fixed rule is a
chi-square test at alpha = 0.001, valid once; an experiment that is looked at every hour needs a test that stays
valid under repeated looks. This is the Dirichlet-multinomial sequential test of Lindon and Malek (2020, "Anytime-valid
inference for multinomial count data"), the one Optimizely and GrowthBook run for SRM: the Bayes factor of the
observed counts under a Dirichlet mixture around the configured shares against the configured shares themselves is a
martingale under a correct split, so by Ville's inequality it exceeds ``1 / alpha`` with probability at most
``alpha`` at any look, ever. A mismatch halts the experiment's decision (no promote, no reject) until a person looks.

Counted in randomisation units: routing is sticky per entity, so one entity's requests all go one way and are not
independent draws; each arm's distinct entities are (a request without an entity is its own unit). Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln

ALPHA = 0.001
CONCENTRATION = 100.0  # the Dirichlet prior's total weight around the configured shares


@dataclass(frozen=True)
class SrmCheck:
    """One SRM check: the units per arm, the configured shares, the test's evidence and whether it halts."""

    unit: str
    counts: dict[str, int]
    expected_shares: dict[str, float]
    observed_shares: dict[str, float]
    log_bayes_factor: float
    threshold: float  # log(1 / alpha)
    mismatch: bool
    p_value_fixed: float | None  # the one-look chi-square p-value, for reference only (not valid under repeated looks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        observed = ", ".join(f"{k} {v:.1%}" for k, v in self.observed_shares.items())
        expected = ", ".join(f"{k} {v:.1%}" for k, v in self.expected_shares.items())
        verdict = "sample ratio mismatch" if self.mismatch else "split as configured"
        return (
            f"{verdict} in {self.unit} ({counts}: {observed} vs configured {expected}; log Bayes factor "
            f"{self.log_bayes_factor:.1f} {'>=' if self.mismatch else '<'} {self.threshold:.1f})"
        )


def log_bayes_factor(counts: np.ndarray, shares: np.ndarray, concentration: float = CONCENTRATION) -> float:
    """log of the Dirichlet-multinomial mixture's likelihood over the multinomial's at ``shares`` (the multinomial
    coefficient cancels)."""
    prior = concentration * shares
    n = counts.sum()
    mixture = gammaln(prior.sum()) - gammaln(prior.sum() + n) + np.sum(gammaln(prior + counts) - gammaln(prior))
    null = np.sum(np.where(counts > 0, counts * np.log(np.where(shares > 0, shares, 1.0)), 0.0))
    return float(mixture - null)


def check(counts: Mapping[str, int], weights: Mapping[str, float], unit: str, alpha: float = ALPHA) -> SrmCheck | None:
    """The SRM check of ``counts`` per arm against the configured ``weights`` (relative; arms with weight 0 are
    left out). None when fewer than two arms are weighted or nothing was counted."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    arms = [a for a, w in weights.items() if w > 0]
    total_weight = sum(weights[a] for a in arms)
    observed = np.asarray([int(counts.get(a, 0)) for a in arms], dtype="float64")
    if len(arms) < 2 or observed.sum() == 0:
        return None
    shares = np.asarray([weights[a] / total_weight for a in arms])
    lbf = log_bayes_factor(observed, shares)
    threshold = math.log(1 / alpha)
    chi2 = stats.chisquare(observed, observed.sum() * shares).pvalue if observed.sum() >= 10 else None
    return SrmCheck(
        unit=unit,
        counts={a: int(c) for a, c in zip(arms, observed, strict=True)},
        expected_shares={a: float(s) for a, s in zip(arms, shares, strict=True)},
        observed_shares={a: float(c / observed.sum()) for a, c in zip(arms, observed, strict=True)},
        log_bayes_factor=lbf,
        threshold=threshold,
        mismatch=lbf >= threshold,
        p_value_fixed=None if chi2 is None else float(chi2),
    )


def units(rows: pd.DataFrame, variant: str = "variant") -> dict[str, int]:
    """Randomisation units per variant: distinct entities, a request without one counting as its own."""
    if not len(rows):
        return {}
    unit = (
        rows["entity_id"].fillna("request:" + rows["request_id"].astype(str))
        if "entity_id" in rows
        else rows["request_id"]
    )
    return {str(k): int(v) for k, v in rows.assign(_unit=unit).groupby(variant)["_unit"].nunique().items()}
