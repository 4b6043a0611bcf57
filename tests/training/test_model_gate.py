"""The champion/challenger gate decides by the configured metric and margin."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airloop.registry.contract import Outcome
from airloop.training.model_gate import decide

CHAMPION, CHALLENGER, REJECTED, HELD = Outcome.CHAMPION, Outcome.CHALLENGER, Outcome.REJECTED, Outcome.HELD
RUNNING = "experiment readmission-v1-vs-v2 (ab) with challenger v2 is running"

scores = st.floats(min_value=0, max_value=1, allow_nan=False)
margins = st.floats(min_value=-0.2, max_value=0.2, allow_nan=False)


def test_first_model_becomes_champion():
    assert decide("roc_auc", 0.61, None, 0.01).outcome == CHAMPION


@pytest.mark.property
@given(candidate=scores, champion=scores, margin=margins)
def test_higher_is_better_metrics_need_the_margin(candidate, champion, margin):
    decision = decide("roc_auc", candidate, champion, margin)

    assert decision.outcome == (CHALLENGER if candidate - champion >= margin else REJECTED)
    assert f"{candidate:.4f}" in decision.reason and f"{champion:.4f}" in decision.reason


@pytest.mark.property
@given(candidate=scores, champion=scores, margin=margins)
def test_loss_metrics_need_a_lower_value(candidate, champion, margin):
    decision = decide("log_loss", candidate, champion, margin)

    assert decision.outcome == (CHALLENGER if champion - candidate >= margin else REJECTED)


@pytest.mark.property
@given(candidate=scores, champion=scores, margin=margins)
def test_while_an_experiment_runs_a_better_model_is_held_never_made_challenger(candidate, champion, margin):
    free = decide("roc_auc", candidate, champion, margin)
    busy = decide("roc_auc", candidate, champion, margin, RUNNING)

    assert busy.outcome == (HELD if free.outcome == CHALLENGER else free.outcome)
    assert busy.outcome != CHALLENGER
    if busy.outcome == HELD:
        assert busy.reason == f"{free.reason}; held, not made challenger: {RUNNING}"


def test_the_first_model_is_champion_even_while_an_experiment_is_recorded():
    assert decide("roc_auc", 0.6, None, 0.0, RUNNING).outcome == CHAMPION
