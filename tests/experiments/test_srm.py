"""Sample ratio mismatch, checked at every look: a broken split halts, a correct one almost never does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.experiments import srm
from airloop.experiments.evaluation import HALT, LABELLED, TRAFFIC, evidence, srm_checks

LOOKS = 20  # an hourly evaluation over most of a day
UNITS = 5_000  # entities routed by the end of the experiment


def halted(rng: np.random.Generator, true_share: float, weights: dict[str, float], runs: int) -> float:
    """The share of simulated experiments whose SRM check halts at any of ``LOOKS`` looks."""
    steps = np.linspace(UNITS / LOOKS, UNITS, LOOKS).astype(int)
    total = sum(weights.values())
    shares = np.asarray([weights["champion"] / total, weights["challenger"] / total])
    threshold = np.log(1 / srm.ALPHA)  # what srm.check compares the statistic with
    fired = 0
    for _ in range(runs):
        challenger = np.cumsum(rng.random(UNITS) < true_share)
        for n in steps:
            counts = np.asarray([n - challenger[n - 1], challenger[n - 1]], dtype=float)
            if srm.log_bayes_factor(counts, shares) >= threshold:
                fired += 1
                break
    return fired / runs


@pytest.mark.property
def test_a_broken_45_55_split_halts_in_at_least_95_percent_of_experiments():
    rate = halted(np.random.default_rng(1), 0.55, {"champion": 50, "challenger": 50}, runs=300)

    assert rate >= 0.95, rate


@pytest.mark.property
@pytest.mark.parametrize("weights", [{"champion": 50, "challenger": 50}, {"champion": 90, "challenger": 10}])
def test_a_correct_split_fires_in_at_most_1_percent_of_experiments_however_often_it_is_looked_at(weights):
    share = weights["challenger"] / 100

    rate = halted(np.random.default_rng(2), share, weights, runs=1_000)

    assert rate <= 0.01, rate


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 10**6), share=st.integers(1, 99))
def test_counts_exactly_as_configured_never_mismatch(total, share):
    counts = {"champion": total * (100 - share), "challenger": total * share}

    found = srm.check(counts, {"champion": 100 - share, "challenger": share}, "units")

    assert not found.mismatch and found.log_bayes_factor <= 0


def test_the_check_names_the_counts_the_shares_and_the_evidence():
    found = srm.check({"champion": 4_500, "challenger": 5_500}, {"champion": 50, "challenger": 50}, "routed entities")

    assert found.mismatch and found.p_value_fixed < 1e-20
    assert found.sentence().startswith("sample ratio mismatch in routed entities (champion 4500, challenger 5500:")
    assert srm.check({"champion": 10}, {"champion": 100, "challenger": 0}, "units") is None  # one weighted arm
    with pytest.raises(ValueError, match="alpha"):
        srm.check({"champion": 1, "challenger": 1}, {"champion": 1, "challenger": 1}, "units", alpha=0)


def test_units_are_entities_so_a_busy_patient_counts_once():
    rows = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(6)],
            "variant": ["champion"] * 4 + ["challenger"] * 2,
            "entity_id": ["p1", "p1", "p1", "p2", "p3", None],
        }
    )

    assert srm.units(rows) == {"champion": 2, "challenger": 2}  # p1 once; the request without an entity is its own


def test_an_ab_look_checks_traffic_and_labelled_rows_and_the_evidence_says_so():
    rng = np.random.default_rng(3)
    n = 4_000
    scored = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "entity_id": [f"p{i}" for i in range(n)],
            "variant": np.where(rng.random(n) < 0.5, "challenger", "champion"),
            "shadow": False,
        }
    )
    # Outcomes come back for nearly every champion patient but for few of the challenger's: the labelled arms skew.
    kept = (scored["variant"] == "champion") | (rng.random(n) < 0.6)
    checks = srm_checks(scored, scored[kept], {"champion": 50, "challenger": 50})

    assert not checks[TRAFFIC]["mismatch"] and checks[LABELLED]["mismatch"]
    text = evidence({"action": HALT, "reason": "halted", "srm": checks, "arms": {}})
    assert "Sample ratio: split as configured in routed entities" in text
    assert "Sample ratio: sample ratio mismatch in labelled entities" in text
