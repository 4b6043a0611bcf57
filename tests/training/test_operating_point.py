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


def test_churn_a_spec_without_code_gets_its_alert_rate_threshold_and_its_groups():
    """models/churn.yaml (no Python of its own) asks for an alert rate of 20% and judges plan, contract and region."""
    from airloop import groups
    from airloop.data.generator import generate
    from airloop.data.records import prepare
    from airloop.training import features
    from airloop.training.split import group_split
    from tests.specs import MODELS, load_spec

    spec = load_spec(MODELS / "churn.yaml")
    point = spec.evaluation.operating_point
    frame = prepare(spec, generate(spec, 4000, seed=3)).reset_index(drop=True)
    parts = group_split(frame, spec.data.target.name, spec.data.entity, 0.3, 0.3, 0)

    def xy(rows):
        return features.model_inputs(spec, frame.iloc[rows]), features.target(spec, frame.iloc[rows]).to_numpy()

    (x, y), (x_val, y_val), (x_test, y_test) = xy(parts.train), xy(parts.validation), xy(parts.test)
    model = features.make_pipeline(spec, "logistic_regression", {"C": 1.0}, 0).fit(x, y)
    p_val, p_test = model.predict_proba(x_val)[:, 1], model.predict_proba(x_test)[:, 1]

    threshold = evaluate.operating_threshold(y_val, p_val, point.kind, point.target)

    assert (point.kind, point.target) == ("alert_rate", 0.2)
    assert (p_val >= threshold).mean() <= 0.2
    assert abs((p_test >= threshold).mean() - 0.2) < 0.05  # the rate holds on rows the threshold never saw
    found = groups.figures(groups.labels(spec.evaluation, x_test), y_test, p_test, p_test >= threshold)
    assert set(found) == {"plan", "contract", "region"}
    assert set(found["plan"]) == {"basic", "standard", "premium"}  # staff accounts are filtered out before training
    assert sum(level["rows"] for level in found["region"].values()) == len(y_test)


GROUP = "- {column: region}\n  min_rows"  # the last group of churn's evaluation section


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (GROUP, GROUP.replace("region", "planet"), r"groups. names 'planet', which is not"),
        (GROUP, GROUP.replace("region", "status"), r"groups. names the target column 'status'"),
        (GROUP, GROUP.replace("{column: region}", '{column: region, bands: {n: ["nord"]}}'), r"band 'n' of"),
        ("{kind: alert_rate, target: 0.2}", "{kind: recall}", r"kind `recall` needs a `target`"),
    ],
)
def test_a_wrong_evaluation_section_is_named_with_its_key(tmp_path, old, new, error):
    from airloop.spec import SpecError, load_spec
    from tests.specs import MODELS

    text = (MODELS / "churn.yaml").read_text()
    assert old in text
    broken = tmp_path / "churn.yaml"
    broken.write_text(text.replace(old, new, 1))

    with pytest.raises(SpecError, match=error):
        load_spec(broken)
