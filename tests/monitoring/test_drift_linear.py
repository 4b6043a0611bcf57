"""compare() in time linear in the rows: the point lookup that replaces sorting each column, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from airloop.monitoring import drift
from airloop.monitoring.baseline import CDF_POINTS, numeric_profile
from airloop.monitoring.drift import PointLookup, ks_distance, numeric_bin_index, numeric_counts

# Shapes that put the lookup in each of its modes: a uniform grid (normal, integers), a grid on the floats' bits
# (lognormal with a long tail) and binary search in crowded cells (Cauchy: long tails on both sides of zero).
SHAPES = {
    "normal": lambda rng, n, shift: rng.normal(shift, 1.0, n),
    "integers": lambda rng, n, shift: rng.poisson(2.0 + abs(shift), n).astype("float64"),
    "lognormal": lambda rng, n, shift: rng.lognormal(shift, 2.0, n),
    "cauchy": lambda rng, n, shift: rng.standard_cauchy(n) + shift,
    "rounded": lambda rng, n, shift: np.round(rng.normal(shift, 1.0, n), 2) * np.where(rng.random(n) < 0.2, 0.0, 1.0),
}


def _brute_histogram(points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """2 * #{points < v} + [v is a point], counted per place, by comparing every value with every point."""
    points = np.unique(points)
    below = (points[None, :] < values[:, None]).sum(axis=1)
    equal = (points[None, :] == values[:, None]).any(axis=1)
    return np.bincount(2 * below + equal, minlength=2 * len(points) + 1)


def _brute_ks(cdf_values: np.ndarray, cdf_probs: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """max |G - F| at the CDF points (each point and just below it), and sup |G - F| over the whole line.

    G is the profile's step CDF, F the sample's empirical CDF, both evaluated by comparing every value."""
    x, p = np.asarray(cdf_values, dtype="float64"), np.asarray(cdf_probs, dtype="float64")
    n = len(current)
    at = (current[None, :] <= x[:, None]).sum(axis=1) / n
    below = (current[None, :] < x[:, None]).sum(axis=1) / n
    before = np.concatenate([[0.0], p[:-1]])
    at_points = max(np.max(np.abs(p - at)), np.max(np.abs(before - below)))

    def g(t: np.ndarray, strict: bool) -> np.ndarray:
        below_t = (x[None, :] < t[:, None]) if strict else (x[None, :] <= t[:, None])
        last = below_t.sum(axis=1) - 1
        return np.where(last >= 0, p[np.maximum(last, 0)], 0.0)

    # Both step functions jump only at the CDF points and the sample's values: the supremum is at one of them,
    # on its right (the value itself) or its left (just below it).
    t = np.unique(np.concatenate([x, current]))
    f_at = (current[None, :] <= t[:, None]).sum(axis=1) / n
    f_below = (current[None, :] < t[:, None]).sum(axis=1) / n
    whole_line = max(np.max(np.abs(g(t, False) - f_at)), np.max(np.abs(g(t, True) - f_below)))
    return float(at_points), float(whole_line)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
edge_values = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324, np.inf, -np.inf])


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(st.one_of(finite, edge_values.filter(np.isfinite)), min_size=1, max_size=60),
    values=st.lists(st.one_of(finite, edge_values), min_size=0, max_size=300),
    chunk=st.sampled_from([7, 64, 1 << 15]),
    search_rows=st.sampled_from([0, drift.SEARCH_ROWS]),  # the grid, or binary search for a few values
    reuse=st.booleans(),
)
@example(points=[0.0, 5e-324], values=[0.0, 1.0, -0.0], chunk=64, search_rows=0, reuse=False)  # no uniform grid
@example(points=[-1e308, 1e308], values=[np.inf, 0.0, -1e308], chunk=64, search_rows=0, reuse=True)  # span: inf
def test_the_point_lookup_counts_exactly_what_comparing_every_value_with_every_point_counts(
    points, values, chunk, search_rows, reuse
):
    points, values = np.asarray(points), np.asarray(values, dtype="float64")
    if reuse and len(values):
        values = np.concatenate([values, np.resize(points, len(values))])  # values on the points themselves
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(drift, "LOOKUP_CHUNK", chunk)
        patch.setattr(drift, "SEARCH_ROWS", search_rows)
        found = PointLookup(points).histogram(values)

    assert np.array_equal(found, _brute_histogram(points, values))


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from(sorted(SHAPES)),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3_000),
    m=st.integers(1, 1_500),
    shift=st.floats(-1, 1),
)
def test_the_point_lookup_is_exact_on_every_shape_of_data_and_grid(shape, seed, n, m, shift):
    rng = np.random.default_rng(seed)
    reference, current = SHAPES[shape](rng, n, 0.0), SHAPES[shape](rng, m, shift)
    profile = numeric_profile(reference)
    points = np.concatenate([profile["cdf"]["values"], profile["cuts"], [profile["min"], profile["max"]]])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(drift, "LOOKUP_CHUNK", 256)  # several chunks
        patch.setattr(drift, "SEARCH_ROWS", 0)  # the grid even for a few values
        lookup = PointLookup(points)
        found = lookup.histogram(current)

    assert lookup.mode in ("uniform", "bits")
    assert np.array_equal(found, _brute_histogram(points, current))


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from(sorted(SHAPES)),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 4_000),
    m=st.integers(1, 1_500),
    shift=st.floats(-1, 1),
    missing=st.floats(0, 0.5),
    search_rows=st.sampled_from([0, drift.SEARCH_ROWS]),
)
def test_bin_counts_from_the_point_lookup_equal_each_rows_bin_counted(shape, seed, n, m, shift, missing, search_rows):
    rng = np.random.default_rng(seed)
    profile = numeric_profile(SHAPES[shape](rng, n, 0.0))
    current = SHAPES[shape](rng, m, shift)
    current = np.concatenate([current, profile["cuts"], [profile["min"], profile["max"]]])  # values on the edges
    current[rng.random(len(current)) < missing] = np.nan
    present = current[~np.isnan(current)]
    expected = np.bincount(numeric_bin_index(profile, present), minlength=len(profile["cuts"]) + 3)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(drift, "SEARCH_ROWS", search_rows)
        counts = numeric_counts(profile, current)

    assert counts.tolist() == [*expected.tolist(), int(np.isnan(current).sum())]


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from(sorted(SHAPES)),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 4_000),
    m=st.integers(1, 1_500),
    shift=st.floats(-1, 1),
    search_rows=st.sampled_from([0, drift.SEARCH_ROWS]),
)
def test_binned_ks_is_exactly_the_largest_cdf_gap_at_the_profiles_points_and_over_the_whole_line(
    shape, seed, n, m, shift, search_rows
):
    rng = np.random.default_rng(seed)
    reference, current = SHAPES[shape](rng, n, 0.0), SHAPES[shape](rng, m, shift)
    cdf = numeric_profile(reference)["cdf"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(drift, "SEARCH_ROWS", search_rows)
        distance = ks_distance(cdf["values"], cdf["probs"], current)
    at_points, whole_line = _brute_ks(np.asarray(cdf["values"]), np.asarray(cdf["probs"]), current)

    assert distance == pytest.approx(at_points, abs=1e-12)
    assert distance == pytest.approx(whole_line, abs=1e-12)


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(CDF_POINTS + 1, 20_000),
    m=st.integers(50, 5_000),
    shift=st.floats(-1, 1),
    scale=st.floats(0.5, 2),
)
def test_binned_ks_of_continuous_data_is_within_one_cdf_step_of_scipys_two_sample_ks(seed, n, m, shift, scale):
    # More distinct training values than CDF points: the profile keeps quantiles at k / CDF_POINTS, between which
    # the training CDF lies within 1 / CDF_POINTS above the stored step function, so the KS may differ by as much.
    rng = np.random.default_rng(seed)
    reference, current = rng.normal(size=n), rng.normal(shift, scale, size=m)
    cdf = numeric_profile(reference)["cdf"]
    assert len(cdf["values"]) <= CDF_POINTS

    distance = ks_distance(cdf["values"], cdf["probs"], current)

    assert abs(distance - stats.ks_2samp(reference, current).statistic) < 1 / CDF_POINTS + 1e-12


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, CDF_POINTS),
    m=st.integers(1, 3_000),
    discrete=st.booleans(),
    shift=st.floats(-1, 1),
)
def test_binned_ks_is_scipys_two_sample_ks_when_the_profile_holds_every_training_value(seed, n, m, discrete, shift):
    rng = np.random.default_rng(seed)
    if discrete:
        reference, current = rng.poisson(3, n * 5).astype(float), rng.poisson(3 + abs(shift), m).astype(float)
    else:
        reference, current = rng.normal(size=n), rng.normal(shift, 1.2, m)
    cdf = numeric_profile(reference)["cdf"]
    assert len(cdf["values"]) == len(np.unique(reference))

    distance = ks_distance(cdf["values"], cdf["probs"], current)

    assert distance == pytest.approx(stats.ks_2samp(reference, current).statistic, abs=1e-12)


def test_nan_in_the_sample_is_ignored_by_the_ks_distance():
    sample = np.array([0.5, np.nan, 1.5, 2.5, np.nan])

    assert ks_distance([1.0, 2.0], [0.5, 1.0], sample) == ks_distance([1.0, 2.0], [0.5, 1.0], sample[~np.isnan(sample)])
