"""The champion/challenger gate decides by the configured metric and margin."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airloop.registry.contract import Outcome
from airloop.training.model_gate import decide

CHAMPION, CHALLENGER, REJECTED = Outcome.CHAMPION, Outcome.CHALLENGER, Outcome.REJECTED

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
