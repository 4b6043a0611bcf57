"""The version's operating point: the threshold at a target recall or alert rate is the one the clinician asked for."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airloop.training import evaluate

probabilities = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=300).map(np.array)
targets = st.floats(0.01, 0.99)


@pytest.mark.property
@given(p=probabilities, seed=st.integers(0, 1000), target=targets)
def test_the_recall_threshold_catches_the_target_and_is_the_highest_that_does(p, seed, target):
    y = np.random.default_rng(seed).integers(0, 2, len(p))
    if not y.any():
        y[0] = 1

    threshold = evaluate.operating_threshold(y, p, "recall", target)

    def recall(t):
        return ((p >= t) & (y == 1)).sum() / y.sum()

    assert recall(threshold) >= target - 1e-12
    higher = p[p > threshold]
    assert not len(higher) or recall(higher.min()) < target


@pytest.mark.property
@given(p=probabilities, target=targets)
def test_the_alert_rate_threshold_flags_at_most_the_target_and_no_lower_score_would(p, target):
    threshold = evaluate.operating_threshold(np.zeros(len(p), int), p, "alert_rate", target)

    assert (p >= threshold).mean() <= target + 1e-12
    lower = p[p < threshold]
    assert not len(lower) or (p >= lower.max()).mean() > target


def test_f1_is_the_default_and_a_target_is_required_otherwise():
    y, p = np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.6, 0.3])

    assert evaluate.operating_threshold(y, p) == evaluate.best_threshold(y, p)
    with pytest.raises(ValueError, match="needs a target"):
        evaluate.operating_threshold(y, p, "recall")
