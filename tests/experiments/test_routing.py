"""Sticky weighted A/B assignment: shares match weights, ids stay put, weight changes move ids one way only."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, chisquare

from airloop.experiments.routing import RoutingConfig, assign

BOTH = {"champion", "challenger"}
IDS = [f"patient-{i}" for i in range(20_000)]

entities = st.one_of(st.text(max_size=40), st.integers())
# Realistic weights (percentages, ratios, counts); non-finite ones are refused, tested below.
weights = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
experiments = st.text(min_size=1, max_size=30)


def ab(champion: float = 90, challenger: float = 10, experiment: str = "readmission-ab-1") -> RoutingConfig:
    return RoutingConfig(experiment=experiment, weights={"champion": champion, "challenger": challenger})


def sticky(config: RoutingConfig, entity: str | int, available: set[str] = BOTH) -> str:
    return assign(config, entity, available, random.Random())


def test_shares_of_20k_ids_match_the_90_10_weights():
    counts = Counter(sticky(ab(90, 10), entity) for entity in IDS)

    result = chisquare([counts["champion"], counts["challenger"]], [0.9 * len(IDS), 0.1 * len(IDS)])

    assert result.pvalue > 0.01, counts


def test_requests_without_entity_id_get_a_weighted_random_variant_from_the_given_rng():
    rng = random.Random(7)

    counts = Counter(assign(ab(90, 10), None, BOTH, rng) for _ in IDS)
    first = [assign(ab(90, 10), None, BOTH, random.Random(11)) for _ in range(3)]
    replay = [assign(ab(90, 10), None, BOTH, random.Random(11)) for _ in range(3)]

    assert chisquare([counts["champion"], counts["challenger"]], [18_000, 2_000]).pvalue > 0.01, counts
    assert first == replay


def test_without_entity_id_assignments_are_not_sticky():
    rng = random.Random(3)

    assert {assign(ab(50, 50), None, BOTH, rng) for _ in range(50)} == BOTH


@pytest.mark.property
@given(entity=entities, experiment=experiments, champion=weights, challenger=weights, seed=st.integers())
def test_the_same_id_in_the_same_experiment_always_gets_the_same_variant(
    entity, experiment, champion, challenger, seed
):
    assume(champion + challenger > 0)
    first = assign(ab(champion, challenger, experiment), entity, BOTH, random.Random(seed))

    again = [assign(ab(champion, challenger, experiment), entity, BOTH, random.Random(seed + n)) for n in range(1, 4)]

    assert again == [first] * 3


def test_an_integer_id_and_its_string_form_get_the_same_variant():
    assert [sticky(ab(50, 50), i) for i in range(200)] == [sticky(ab(50, 50), str(i)) for i in range(200)]


@pytest.mark.property
@given(entity=entities, experiment=experiments, champion=weights, low=weights, high=weights)
def test_raising_the_challenger_weight_never_moves_an_id_away_from_challenger(entity, experiment, champion, low, high):
    low, high = sorted((low, high))
    assume(champion + low > 0)

    before = sticky(ab(champion, low, experiment), entity)
    after = sticky(ab(champion, high, experiment), entity)

    assert before != "challenger" or after == "challenger"


@pytest.mark.property
@given(entity=entities, experiment=experiments, champion=weights, low=weights, high=weights)
def test_lowering_the_challenger_weight_never_moves_an_id_into_challenger(entity, experiment, champion, low, high):
    low, high = sorted((low, high))
    assume(champion + low > 0)

    before = sticky(ab(champion, high, experiment), entity)
    after = sticky(ab(champion, low, experiment), entity)

    assert after != "challenger" or before == "challenger"


def test_raising_challenger_from_10_to_20_percent_moves_only_champion_ids_and_about_the_expected_number():
    before = [sticky(ab(90, 10), entity) for entity in IDS]
    after = [sticky(ab(80, 20), entity) for entity in IDS]

    moved = Counter((b, a) for b, a in zip(before, after, strict=True) if b != a)

    assert set(moved) == {("champion", "challenger")}
    assert moved["champion", "challenger"] == pytest.approx(0.1 * len(IDS), rel=0.1)


@pytest.mark.property
@given(
    entity=st.one_of(st.none(), entities),
    champion=weights,
    challenger=weights,
    available=st.sets(st.sampled_from(sorted(BOTH)), min_size=1),
    seed=st.integers(),
)
def test_an_unavailable_variant_is_never_chosen(entity, champion, challenger, available, seed):
    assume(champion + challenger > 0)

    assert assign(ab(champion, challenger), entity, available, random.Random(seed)) in available


def test_ids_of_a_variant_that_is_not_loaded_go_to_the_loaded_one():
    challenger_only = ab(0, 100)

    assert {sticky(challenger_only, entity, {"champion"}) for entity in IDS[:500]} == {"champion"}
    assert {assign(challenger_only, None, {"champion"}, random.Random(1)) for _ in range(100)} == {"champion"}


def test_assigning_with_no_variant_loaded_is_refused():
    with pytest.raises(LookupError, match="no model variant"):
        assign(ab(), "patient-1", set(), random.Random())


def test_a_different_experiment_salt_reshuffles_assignments():
    first = [sticky(ab(50, 50, "readmission-ab-1"), entity) for entity in IDS]
    second = [sticky(ab(50, 50, "readmission-ab-2"), entity) for entity in IDS]

    table = Counter(zip(first, second, strict=True))
    contingency = [[table[a, b] for b in sorted(BOTH)] for a in sorted(BOTH)]

    # Independent of the old assignment: about half the ids change variant, and the shares stay 50/50.
    assert 0.45 < sum(a != b for a, b in zip(first, second, strict=True)) / len(IDS) < 0.55
    assert chi2_contingency(contingency).pvalue > 0.01, contingency
    assert chisquare([second.count("champion"), second.count("challenger")]).pvalue > 0.01


@pytest.mark.parametrize(
    ("weights", "mode"),
    [
        ({"champion": -1, "challenger": 2}, "ab"),
        ({"champion": 0, "challenger": 0}, "ab"),
        ({}, "ab"),
        ({"champion": 1}, "canary"),
    ],
    ids=["negative", "zero-sum", "empty", "unknown-mode"],
)
def test_invalid_routing_is_refused(weights, mode):
    with pytest.raises(ValueError):
        RoutingConfig(experiment="e", weights=weights, mode=mode)


@pytest.mark.parametrize(
    "weights",
    [
        {"champion": math.nan, "challenger": 10},
        {"champion": math.inf, "challenger": 10},
        {"champion": 1e308, "challenger": 1e308},
    ],
    ids=["nan", "infinity", "overflowing-sum"],
)
def test_non_finite_weights_are_refused(weights):
    with pytest.raises(ValueError):
        RoutingConfig(experiment="e", weights=weights)
