"""Training trials: the fixed candidates without a search, seeded draws inside the declared space with one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.spec import load_spec
from airloop.training.search import trials

REPO = Path(__file__).resolve().parents[2]
CANDIDATES = {"logistic_regression": [{"C": 0.1}, {"C": 1.0}], "hist_gradient_boosting": [{"learning_rate": 0.1}]}
SEARCH = {
    "budget": 5,
    "space": {
        "hist_gradient_boosting": {
            "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
            "max_leaf_nodes": {"low": 8, "high": 64, "integer": True},
            "max_iter": {"choices": [100, 200, 300]},
        },
        "logistic_regression": {"C": {"low": 0.001, "high": 100.0, "log": True}},
    },
}


def test_without_a_search_the_fixed_candidates_are_the_trials():
    assert trials(CANDIDATES, None, seed=1) == CANDIDATES
    assert trials(CANDIDATES, {}, seed=1) == CANDIDATES


def test_a_search_draws_budget_trials_per_kind_inside_the_space():
    drawn = trials(CANDIDATES, SEARCH, seed=42)

    assert list(drawn) == ["hist_gradient_boosting", "logistic_regression"]
    assert all(len(params) == 5 for params in drawn.values())
    for params in drawn["hist_gradient_boosting"]:
        assert set(params) == {"learning_rate", "max_leaf_nodes", "max_iter"}
        assert 0.01 <= params["learning_rate"] <= 0.3 and isinstance(params["learning_rate"], float)
        assert 8 <= params["max_leaf_nodes"] <= 64 and isinstance(params["max_leaf_nodes"], int)
        assert params["max_iter"] in (100, 200, 300)
    assert all(0.001 <= p["C"] <= 100 for p in drawn["logistic_regression"])


def test_the_same_seed_gives_the_same_trials_and_another_seed_others():
    assert trials(CANDIDATES, SEARCH, seed=7) == trials(CANDIDATES, SEARCH, seed=7)
    assert trials(CANDIDATES, SEARCH, seed=7) != trials(CANDIDATES, SEARCH, seed=8)


def test_a_kind_keeps_its_trials_when_another_kind_is_added_or_removed():
    alone = {"budget": 5, "space": {"logistic_regression": SEARCH["space"]["logistic_regression"]}}

    assert trials({}, alone, seed=3)["logistic_regression"] == trials({}, SEARCH, seed=3)["logistic_regression"]


def test_log_scale_draws_spread_over_the_decades():
    many = trials(
        {}, {"budget": 200, "space": {"logistic_regression": {"C": {"low": 0.001, "high": 1000, "log": True}}}}, 0
    )
    decades = [math.floor(math.log10(p["C"])) for p in many["logistic_regression"]]

    assert set(decades) == {-3, -2, -1, 0, 1, 2}  # uniform draws would put ~all of them above 1


def test_the_churn_spec_search_gives_two_trials_per_kind():
    spec = load_spec(REPO / "models" / "churn.yaml")

    drawn = trials({}, spec.training.search, seed=42)

    assert {kind: len(params) for kind, params in drawn.items()} == {
        "hist_gradient_boosting": 2,
        "logistic_regression": 2,
    }


@pytest.mark.parametrize(
    ("space", "named"),
    [
        ({"C": {"low": 0.0, "high": 1.0, "log": True}}, "logistic_regression.C"),
        ({"C": {"low": 0.2, "high": 0.8, "integer": True}}, "logistic_regression.C"),
        ({"C": {"low": 2.0, "high": 1.0}}, "low"),
    ],
)
def test_an_impossible_range_is_an_error_naming_the_parameter(space, named):
    with pytest.raises(ValueError, match=named):
        trials({}, {"budget": 1, "space": {"logistic_regression": space}}, seed=0)


@pytest.mark.property
@settings(max_examples=100, deadline=None)
@given(
    low=st.floats(0.001, 100),
    width=st.floats(0, 1000),
    log=st.booleans(),
    integer=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_draw_stays_inside_its_range(low, width, log, integer, seed):
    high = low + width
    if integer and math.ceil(low) > math.floor(high):
        return
    param = {"low": low, "high": high, "log": log, "integer": integer}

    drawn = trials({}, {"budget": 3, "space": {"hist_gradient_boosting": {"p": param}}}, seed)

    for params in drawn["hist_gradient_boosting"]:
        assert low <= params["p"] <= high
        assert isinstance(params["p"], int) == integer
