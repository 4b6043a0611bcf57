"""Judged per group: levels of each group, the figures per level, and the rule that refuses a candidate worse for one
group (pure logic; the real-data tests of the gate are in tests/training/test_group_gate.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics

from airloop import groups
from airloop.registry.contract import Outcome
from airloop.spec.schema import EvaluationSpec, GroupSpec
from airloop.training.model_gate import decide

AGE = GroupSpec(column="age", name="age_band", bands={"young": ["[0-10)", "[10-20)"], "old": ["[70-80)", "[80-90)"]})


def test_levels_are_bands_values_missing_and_other():
    values = pd.Series(["[0-10)", "[70-80)", "?", None, "[40-50)", "[10-20)"])

    assert list(groups.group_labels(AGE, values, ["?"])) == ["young", "old", "missing", "missing", "other", "young"]
    ids = groups.group_labels(GroupSpec(column="admission_type_id"), pd.Series([1.0, 2.0, np.nan, 1.0]))
    assert list(ids) == ["1", "2", "missing", "1"]  # an integer id read as float is the same level


def test_a_column_with_many_values_keeps_the_most_frequent_levels():
    values = pd.Series([f"s{i}" for i in range(30)] + ["s0"] * 5)

    found = groups.group_labels(GroupSpec(column="specialty"), values)

    assert len(set(found)) == groups.MAX_LEVELS + 1 and "other" in set(found) and (found == "s0").sum() == 6


def test_figures_per_level_match_scikit_learn_and_count_every_row():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 600)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 600), 0, 1)
    labels = {"g": np.where(rng.uniform(size=600) < 0.4, "a", "b").astype(object)}

    found = groups.figures(labels, y, p, p >= 0.5)

    assert sum(f["rows"] for f in found["g"].values()) == 600
    a = labels["g"] == "a"
    fig = found["g"]["a"]
    assert fig["roc_auc"] == pytest.approx(metrics.roc_auc_score(y[a], p[a]))
    assert fig["recall"] == pytest.approx(metrics.recall_score(y[a], p[a] >= 0.5))
    assert fig["calibration_gap"] == pytest.approx(p[a].mean() - y[a].mean())
    assert fig["alert_rate"] == pytest.approx((p[a] >= 0.5).mean())
    for stat in ("roc_auc", "recall", "calibration_gap", "positive_rate", "alert_rate"):
        low, high = fig[f"{stat}_ci"]
        assert low <= fig[stat] <= high


def test_flat_metric_names_are_bounded_and_mlflow_safe():
    found = {"age_band": {"[70-80)": {"rows": 10, "roc_auc": 0.7, "recall": None}}}

    assert groups.flat_metrics(found) == {
        "group.age_band.70-80.rows": 10.0,
        "group.age_band.70-80.roc_auc": 0.7,
    }
    assert len(groups.metric_name("g", "x" * 500, "roc_auc")) < 60


def _scores(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.25 * y + rng.uniform(0, 0.75, n), 0.001, 0.999)
    return y, p, {"g": rng.choice(np.array(["a", "b", "c"], dtype=object), n)}


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(60, 800), power=st.floats(0.2, 5.0))
def test_a_candidate_that_ranks_every_record_like_the_champion_is_never_refused(seed, n, power):
    y, p, labels = _scores(seed, n)
    spec = EvaluationSpec(min_rows=20, tolerance=0.0)

    gaps = groups.compare(spec, labels, y, p, p**power)  # a monotone rescaling: the same ranking in every group

    assert not groups.refusals(gaps)
    assert all(g.gap == pytest.approx(0.0, abs=1e-12) for g in gaps if g.gap is not None)


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(200, 1500), tolerance=st.floats(0, 0.2), more=st.floats(0, 0.2))
def test_a_larger_tolerance_never_refuses_more(seed, n, tolerance, more):
    y, p, labels = _scores(seed, n)
    candidate = np.where(labels["g"] == "a", np.random.default_rng(seed).permutation(p), p)
    strict = groups.compare(EvaluationSpec(min_rows=20, tolerance=tolerance), labels, y, p, candidate)
    lenient = groups.compare(EvaluationSpec(min_rows=20, tolerance=tolerance + more), labels, y, p, candidate)

    refused = {(g.group, g.level) for g in groups.refusals(strict)}
    assert {(g.group, g.level) for g in groups.refusals(lenient)} <= refused
    for gap in groups.refusals(strict):  # every refusal is beyond the tolerance and beyond doubt
        assert gap.judged and gap.gap < -tolerance and gap.interval[1] < -tolerance and gap.rows >= 20


@pytest.mark.property
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), levels=st.integers(1, 8))
def test_the_interval_level_is_bonferroni_corrected_over_the_levels_judged(seed, levels):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400 * levels)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, len(y)), 0, 1)
    labels = {"g": np.repeat(np.arange(levels).astype(str), 400).astype(object)}

    gaps = groups.compare(EvaluationSpec(min_rows=100, level=0.9), labels, y, p, rng.permutation(p))

    assert all(g.judged for g in gaps)
    assert {round(g.confidence, 12) for g in gaps} == {round(1 - 0.1 / levels, 12)}


def test_a_candidate_scrambled_for_one_group_is_refused_that_group_named():
    y, p, labels = _scores(7, 3000)
    candidate = p.copy()
    b = labels["g"] == "b"
    candidate[b] = np.random.default_rng(1).permutation(p[b])

    refused = groups.refusals(groups.compare(EvaluationSpec(min_rows=200), labels, y, p, candidate))

    assert [(g.group, g.level) for g in refused] == [("g", "b")]
    assert "g=b: roc_auc" in groups.reason(refused)


def test_arms_on_disjoint_rows_are_compared_unpaired_per_group():
    y_a, p_a, labels_a = _scores(1, 3000)
    y_b, p_b, labels_b = _scores(2, 3000)
    c = labels_b["g"] == "c"
    p_b[c] = np.random.default_rng(0).permutation(p_b[c])

    gaps = groups.compare_arms(EvaluationSpec(min_rows=200), (labels_a, y_a, p_a), (labels_b, y_b, p_b))

    assert [(g.level) for g in groups.refusals(gaps)] == ["c"]
    assert groups.worst(gaps).level == "c"


gap_values = st.floats(-0.5, 0.5, allow_nan=False)


@pytest.mark.property
@given(candidate=st.floats(0, 1), champion=st.floats(0, 1), margin=st.floats(-0.1, 0.1), gap=gap_values)
def test_the_gate_refuses_a_candidate_better_overall_but_worse_for_a_group_and_names_it(
    candidate, champion, margin, gap
):
    level = groups.GroupGap(
        "race",
        "Asian",
        "roc_auc",
        300,
        0.6,
        0.6 - gap,
        gap,
        (gap - 0.05, gap + 0.05),
        True,
        gap + 0.05 < -0.02,
        0.02,
        0.99,
    )
    plain = decide("roc_auc", candidate, champion, margin)
    judged = decide("roc_auc", candidate, champion, margin, groups=[level])

    if level.worse and plain.outcome == Outcome.CHALLENGER:
        assert judged.outcome == Outcome.REJECTED
        assert "race=Asian" in judged.reason and plain.reason.removeprefix("better: ") in judged.reason
    else:
        assert judged == plain


def test_a_refusal_names_the_worst_groups_and_counts_the_rest():
    def gap(level: str, value: float) -> groups.GroupGap:
        return groups.GroupGap(
            "g", level, "roc_auc", 300, 0.5, 0.5 - value, value, (value - 0.01, value + 0.01), True, True, 0.02, 0.99
        )

    refused = groups.refusals([gap(str(i), -0.1 - i / 100) for i in range(8)])
    text = groups.reason(refused)

    assert [g.level for g in refused[:2]] == ["7", "6"]  # worst first
    assert "g=7:" in text and "g=3:" in text and "g=2:" not in text and text.endswith("and 3 more groups")
