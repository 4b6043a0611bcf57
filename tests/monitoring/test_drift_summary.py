"""A window summarised in parts and merged gives the verdict of the whole window (``summarize``, ``merge_summaries``,
``compare_summary``): what lets the drift DAG profile a large window in mapped tasks, one log partition each."""

from __future__ import annotations

import json
from dataclasses import asdict
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airloop.jsonable import plain
from airloop.monitoring.baseline import reference_profile
from airloop.monitoring.drift import (
    EmptyWindow,
    WindowSummary,
    compare,
    compare_summary,
    merge_summaries,
    summarize,
)
from airloop.monitoring.multivariate import reference_sample
from airloop.usecases.readmission import transform as tf
from tests.monitoring.frames import synthetic_features

NUMERIC = list(tf.NUMERIC_FEATURES)
CATEGORICAL = list(tf.CATEGORICAL_FEATURES)
SEGMENTS = ["age", "race", "gender", "number_inpatient"]


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return synthetic_features(6_000, seed=1)


@pytest.fixture(scope="module")
def profile(training) -> dict:
    proba = np.random.default_rng(5).beta(2, 6, size=2_000)
    built = reference_profile(training, NUMERIC, CATEGORICAL, proba, test_metrics={"roc_auc": 0.68, "log_loss": 0.33})
    return json.loads(json.dumps(built))


@pytest.fixture(scope="module")
def window() -> pd.DataFrame:
    """About 1,600 rows, the later half drifted: parts differ from each other as a log's hours do."""
    return pd.concat(
        [synthetic_features(800, seed=2), synthetic_features(800, seed=3, covariate_drift=0.8)], ignore_index=True
    )


def _scored(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probabilities = rng.beta(2, 6, size=rows)
    outcomes = (rng.random(rows) < probabilities).astype(float)
    outcomes[rng.random(rows) < 0.4] = np.nan  # outcomes not arrived yet
    return probabilities, outcomes


def _same(a, b) -> bool:
    return json.dumps(plain(asdict(a)), sort_keys=True) == json.dumps(plain(asdict(b)), sort_keys=True)


@pytest.mark.property
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.integers(1, 1_600),
    cuts=st.lists(st.integers(0, 1_600), max_size=6),
    with_outcomes=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_merged_parts_give_the_whole_windows_result(profile, window, rows, cuts, with_outcomes, seed) -> None:
    """Any split, empty parts included, without multivariate sample: bit for bit the same result."""
    rows = min(rows, len(window))  # the transform drops some generated encounters
    frame = window.sample(rows, random_state=seed).reset_index(drop=True)
    probabilities, outcomes = _scored(rows, seed)
    outcomes = outcomes if with_outcomes else None
    bounds = [0, *sorted(min(c, rows) for c in cuts), rows]
    parts = [
        summarize(profile, frame.iloc[a:b], probabilities[a:b], None if outcomes is None else outcomes[a:b], SEGMENTS)
        for a, b in pairwise(bounds)
    ]
    whole = compare(profile, frame, probabilities=probabilities, outcomes=outcomes, segments=SEGMENTS)
    merged = compare_summary(profile, merge_summaries(parts), segments=SEGMENTS)
    assert _same(whole, merged)


def test_a_window_within_the_sample_bound_gets_the_same_multivariate_check(profile, training, window) -> None:
    frame = window.iloc[400:1_000].reset_index(drop=True)  # 600 rows: every row is in the sample
    probabilities, outcomes = _scored(len(frame), 7)
    sample = reference_sample(training)
    whole = compare(profile, frame, None, probabilities, outcomes, sample, SEGMENTS)
    parts = [summarize(profile, frame.iloc[a : a + 150], probabilities[a : a + 150], outcomes[a : a + 150], SEGMENTS)
             for a in range(0, 600, 150)]  # fmt: skip
    merged = compare_summary(profile, merge_summaries(parts), None, sample, SEGMENTS)
    assert whole.multivariate is not None and _same(whole, merged)


def test_the_merged_sample_is_bounded_and_drawn_from_every_part_by_its_rows(profile, window) -> None:
    sizes = [1_200, 200, 100]
    starts = np.cumsum([0, *sizes])
    parts = [summarize(profile, window.iloc[a:b], sample_rows=250) for a, b in pairwise(starts)]
    drawn = [merge_summaries(parts, sample_rows=250, seed=s).sample for s in range(40)]
    assert all(len(d) == 250 and d.index.is_unique for d in drawn)
    share = np.mean([(d.index < sizes[0]).mean() for d in drawn])
    assert share == pytest.approx(sizes[0] / sum(sizes), abs=0.02)  # 0.8 of the rows, 0.8 of the sample
    small = merge_summaries([summarize(profile, window.iloc[:30]), summarize(profile, window.iloc[30:50])])
    assert list(small.sample.index) == list(range(50))  # fewer rows than the bound: every row, in order


def test_an_empty_window_has_nothing_to_compare(profile, window) -> None:
    empty = summarize(profile, window.iloc[:0], np.empty(0), np.empty(0), SEGMENTS)
    assert isinstance(empty, WindowSummary) and empty.rows == 0
    with pytest.raises(EmptyWindow):
        compare_summary(profile, merge_summaries([empty, empty]))
    with pytest.raises(EmptyWindow):
        merge_summaries([])


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(
    offset_min=st.integers(0, 59),
    span_h=st.integers(1, 200),
    sizes=st.dictionaries(st.integers(-3, 205), st.integers(0, 500), max_size=60),
    part_bytes=st.integers(1, 2_000),
    most=st.integers(1, 20),
)
def test_window_parts_cover_the_window_on_the_hour_grid_within_the_budget(offset_min, span_h, sizes, part_bytes, most):
    from datetime import UTC, datetime, timedelta

    from airloop.monitoring.job import window_parts

    grid = datetime(2026, 3, 1, tzinfo=UTC)
    start = grid + timedelta(minutes=offset_min)
    end = start + timedelta(hours=span_h)
    by_hour = {grid + timedelta(hours=h): size for h, size in sizes.items()}
    parts = window_parts(start, end, by_hour, part_bytes, most)
    assert parts[0][0] == start and parts[-1][1] == end and len(parts) <= most
    assert all(a < b and (b == end or b.minute == 0) for a, b in parts)
    assert all(b == c for (_, b), (c, _) in pairwise(parts))  # contiguous: no row in two parts or none
    inside = {h: v for h, v in by_hour.items() if h + timedelta(hours=1) > start and h < end}
    # The budget: part_bytes, or the share of the window that keeps the parts within `most`.
    budget = max(part_bytes, -(-sum(inside.values()) // most))
    if len(inside) < most:  # no more parts than hours: every part within the budget, or one hour alone over it
        for a, b in parts:
            held = [v for h, v in inside.items() if a <= h < b or (h < a < h + timedelta(hours=1))]
            assert sum(held) <= budget or len([v for v in held if v]) == 1
    if sum(inside.values()) <= part_bytes:
        assert parts == [(start, end)]  # a sparse window, however long: one part
