"""Risk factors: contributions + base value reproduce each model's score in log-odds, on real rows, for every
candidate kind of readmission and for churn (a model with no code of its own); labels in the terms of the record."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from threadpoolctl import threadpool_limits

from airloop.data.generator import generate
from airloop.data.records import prepare
from airloop.data.sources import read_csv_bytes
from airloop.explanations import (
    COVARIANCE_ATTRIBUTE,
    NO_STORED_BAND,
    Explainer,
    ExplanationUnavailable,
    _factors,
    remember_training_rows,
)
from airloop.spec import load_spec
from airloop.training import features
from airloop.training.compiled import compile_pipeline
from tests.specs import MODELS, READMISSION

CHURN = load_spec(MODELS / "churn.yaml")
KINDS = {"hist_gradient_boosting": {"max_iter": 80}, "logistic_regression": {"C": 1.0}}


@functools.cache
def _trained(name: str, kind: str, sample: Path | None):
    """A fitted registered-shape Pipeline of ``name`` and the rows it was trained on."""
    if name == "readmission":
        spec, frame = READMISSION, prepare(READMISSION, read_csv_bytes(sample, READMISSION))
    else:  # churn has no real rows: its own spec's generator
        spec, frame = CHURN, prepare(CHURN, generate(CHURN, 3000, seed=3))
    x, y = features.model_inputs(spec, frame), features.target(spec, frame)
    with threadpool_limits(1):
        pipeline = features.make_pipeline(spec, kind, dict(KINDS[kind]), seed=0).fit(x, y)
    remember_training_rows(pipeline, x)
    return pipeline, x


@pytest.fixture(params=[(m, k) for m in ("readmission", "churn") for k in KINDS], ids="-".join)
def trained(request, real_sample):
    name, kind = request.param
    return _trained(name, kind, real_sample if name == "readmission" else None)


def as_records(x: pd.DataFrame) -> list[dict]:
    return x.astype(object).where(x.notna(), None).to_dict(orient="records")


@pytest.mark.parametrize("fast_path", [True, False], ids=["compiled", "sklearn"])
def test_contributions_and_base_value_reproduce_the_score_in_log_odds_on_real_rows(trained, fast_path):
    pipeline, x = trained
    explainer = Explainer.of(pipeline, compile_pipeline(pipeline) if fast_path else None)
    records = as_records(x.head(300))

    answers = explainer.explain_records(records, top=len(explainer.factors))
    framed = explainer.explain_frame(x, top=3)

    score = pipeline.decision_function(x)
    probability = pipeline.predict_proba(x)[:, 1]
    for i, answer in enumerate(answers):
        total = answer["base_value"] + sum(f["contribution"] for f in answer["factors"])
        assert answer["other_factors"] == pytest.approx(0.0, abs=1e-12)  # every factor listed
        assert total == pytest.approx(score[i], abs=1e-6)
        assert np.log(probability[i] / (1 - probability[i])) == pytest.approx(total, abs=1e-6)
    totals = [a["base_value"] + sum(f["contribution"] for f in a["factors"]) + a["other_factors"] for a in framed]
    np.testing.assert_allclose(totals, score, rtol=0, atol=1e-6)
    assert {a["base_value"] for a in framed} == {explainer.base}  # one reference per version


def test_features_of_one_field_add_up_under_it_and_a_sum_of_fields_stands_as_its_own_factor(real_sample):
    pipeline, x = _trained("readmission", "hist_gradient_boosting", real_sample)
    explainer = Explainer.of(pipeline, compile_pipeline(pipeline))
    by_name = {f.name: f for f in explainer.factors}

    assert by_name["diag_1"].features == ("diag_1_group",)
    assert by_name["service_utilization"].columns == ("number_outpatient", "number_emergency", "number_inpatient")
    assert by_name["number_inpatient"].features == ("number_inpatient",)
    assert not {"diag_1_group", "weight"} & set(by_name)  # named as the client sends it; unused fields are absent
    (answer,) = explainer.explain_records(as_records(x.head(1)), top=len(by_name))
    utilization = next(f for f in answer["factors"] if f["factor"] == "service_utilization")
    row = x.iloc[0]
    assert utilization["value"] == float(row["number_outpatient"] + row["number_emergency"] + row["number_inpatient"])
    assert utilization["label"].endswith("(from number_outpatient + number_emergency + number_inpatient)")


def test_a_code_is_labelled_with_the_group_the_model_saw_and_a_count_as_sent(real_sample):
    pipeline, x = _trained("readmission", "logistic_regression", real_sample)
    explainer = Explainer.of(pipeline, compile_pipeline(pipeline))
    record = {**as_records(x.head(1))[0], "diag_1": "428", "number_inpatient": 3, "race": "?"}

    (answer,) = explainer.explain_records([record], top=len(explainer.factors))

    labels = {f["factor"]: f["label"] for f in answer["factors"]}
    assert labels["diag_1"] == "diag_1 = 428 (circulatory)"
    assert labels["number_inpatient"] == "number_inpatient = 3"
    assert labels["race"] == "race = ? (missing)"


def test_churn_labels_pooled_levels_imputed_numbers_and_its_declared_sums(real_sample):
    pipeline, x = _trained("churn", "logistic_regression", None)
    explainer = Explainer.of(pipeline, compile_pipeline(pipeline))
    record = {**as_records(x.head(1))[0], "satisfaction_score": None, "region": "mars"}

    (answer,) = explainer.explain_records([record], top=len(explainer.factors))

    labels = {f["factor"]: f["label"] for f in answer["factors"]}
    fill = pipeline.steps[0][1].impute_["satisfaction_score"]
    assert labels["satisfaction_score"] == f"satisfaction_score = missing (imputed {fill:.6g})"
    assert labels["region"] == "region = mars (other)"
    assert labels["service_issues"].endswith("(from support_tickets_90d + late_payments_12m)")
    assert labels["n_addons"].endswith("(from streaming_addon + device_protection)")


def test_logistic_regression_gives_a_band_around_its_probability_and_trees_say_they_give_none(real_sample):
    linear, x = _trained("readmission", "logistic_regression", real_sample)
    trees, _ = _trained("readmission", "hist_gradient_boosting", real_sample)
    records = as_records(x.head(50))

    banded = Explainer.of(linear, compile_pipeline(linear)).explain_records(records)
    unbanded = Explainer.of(trees, compile_pipeline(trees)).explain_records(records)

    probability = linear.predict_proba(x.head(50))[:, 1]
    widths = []
    for answer, p in zip(banded, probability, strict=True):
        assert answer["band"]["low"] < p < answer["band"]["high"]
        widths.append(answer["band"]["high"] - answer["band"]["low"])
    assert len(set(widths)) > 1  # the band is the record's own, not one width for all
    assert all(a["band"] is None and "trees" in a["band_unavailable"] for a in unbanded)


def test_a_linear_version_trained_before_references_were_stored_still_adds_up_and_says_so(real_sample):
    import copy

    pipeline, x = _trained("readmission", "logistic_regression", real_sample)
    old = copy.deepcopy(pipeline)
    del old.steps[-1][1].__dict__["airloop_reference_"], old.steps[-1][1].__dict__[COVARIANCE_ATTRIBUTE]

    answers = Explainer.of(old, compile_pipeline(old)).explain_records(as_records(x.head(20)), top=100)

    score = old.decision_function(x.head(20))
    for answer, s in zip(answers, score, strict=True):
        assert answer["base_value"] + sum(f["contribution"] for f in answer["factors"]) == pytest.approx(s, abs=1e-6)
        assert answer["reference"].startswith("the all-zero input") and answer["band_unavailable"] == NO_STORED_BAND


def test_an_estimator_without_an_exact_explanation_is_refused_by_name(real_sample):
    _, x = _trained("churn", "logistic_regression", None)
    forest = features.make_pipeline(CHURN, "logistic_regression", {}, seed=0)
    forest.steps[-1] = ("model", RandomForestClassifier(n_estimators=2, random_state=0))
    forest.fit(x, np.arange(len(x)) % 2)

    with pytest.raises(ExplanationUnavailable, match="RandomForestClassifier"):
        Explainer.of(forest)


FEATURE = st.text("abcdef", min_size=1, max_size=3)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(
    st.lists(FEATURE, min_size=1, max_size=12, unique=True),
    st.dictionaries(FEATURE, st.lists(FEATURE, min_size=1, max_size=3, unique=True), max_size=12),
    st.data(),
)
def test_every_feature_lands_in_exactly_one_factor_and_totals_are_kept(names, sources, data):
    factors, index = _factors(names, sources)
    values = np.array(data.draw(st.lists(st.floats(-5, 5), min_size=len(names), max_size=len(names))))
    grouping = np.zeros((len(names), len(factors)))
    grouping[np.arange(len(names)), [index[n] for n in names]] = 1.0

    assert sorted(f for factor in factors for f in factor.features) == sorted(names)
    assert (values @ grouping).sum() == pytest.approx(values.sum(), abs=1e-9)
    for factor in factors:
        if factor.derived:  # several fields: the feature alone, under its own name
            assert factor.features == (factor.name,) and len(factor.columns) == len(sources[factor.name])
        else:  # one field: every feature computed from it, under the field's name
            assert all(list(sources.get(f) or [f]) == [factor.name] for f in factor.features)
