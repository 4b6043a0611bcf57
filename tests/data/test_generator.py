"""The schema-derived generator: a spec's raw form, reproducible, a learnable target, drift knobs that work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.data.generator import generate
from airloop.spec import ModelSpec, load_spec

REPO = Path(__file__).resolve().parents[2]
CHURN = load_spec(REPO / "models" / "churn.yaml")


def tiny_spec(**data: object) -> ModelSpec:
    """A small spec without missing markers: string key and entity, a free string, a nullable category."""
    document = {
        "name": "tiny",
        "data": {
            "key": "ticket",
            "entity": "user",
            "target": {"column": "outcome", "positive": ["bad"], "name": "is_bad"},
            "columns": [
                {"name": "ticket", "type": "string"},
                {"name": "user", "type": "string"},
                {"name": "channel", "type": "category", "values": ["web", "phone"], "nullable": True,
                 "missing_share": 0.2, "effect": 1.0},
                {"name": "score", "type": "float", "min": 0, "max": 60, "effect": 1.5},
                {"name": "visits", "type": "integer", "min": 0, "max": 10},
                {"name": "note", "type": "string"},
                {"name": "outcome", "type": "category", "values": ["good", "bad"], "weights": [3, 1]},
            ],
            **data,
        },
        "features": {"numeric": [{"column": "score"}]},
    }  # fmt: skip
    return ModelSpec.model_validate(document)


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return generate(CHURN, 20_000, seed=11)


def test_frame_has_the_spec_raw_columns_in_order_with_their_types(churn):
    assert list(churn.columns) == CHURN.data.raw_columns
    for column in CHURN.data.columns:
        kind = churn[column.name].dtype
        if column.type == "integer":
            assert kind == np.dtype("int64"), column.name
        elif column.type == "float":
            assert kind == np.dtype("float64"), column.name
        else:
            assert all(isinstance(v, str) for v in churn[column.name]), column.name


def test_same_arguments_give_the_same_frame_and_another_seed_another():
    first = generate(CHURN, 2000, seed=5, covariate_drift=1.0, concept_drift=0.5)
    again = generate(CHURN, 2000, seed=5, covariate_drift=1.0, concept_drift=0.5)
    other = generate(CHURN, 2000, seed=6, covariate_drift=1.0, concept_drift=0.5)

    pd.testing.assert_frame_equal(first, again)
    assert not first.drop(columns=["subscription_id"]).equals(other.drop(columns=["subscription_id"]))


def test_key_is_unique_and_each_entity_holds_about_one_and_a_half_records(churn):
    assert churn["subscription_id"].tolist() == list(range(1, len(churn) + 1))
    per_customer = churn.groupby("customer_id").size()
    assert 1.4 < per_customer.mean() < 1.6
    assert per_customer.max() > 2


def test_only_nullable_columns_are_missing_at_their_share_with_the_first_marker(churn):
    marker = CHURN.data.missing_markers[0]
    for column in CHURN.data.columns:
        values = churn[column.name]
        missing = values.isna() | values.eq(marker) if values.dtype != np.dtype("float64") else values.isna()
        if column.nullable:
            assert missing.mean() == pytest.approx(column.missing_share, abs=0.015), column.name
        else:
            assert not missing.any(), column.name
    assert churn["payment_method"].eq(marker).any()
    assert churn["satisfaction_score"].isna().any()


def test_categories_follow_their_weights_and_numbers_their_mean_inside_the_range(churn):
    contract = CHURN.data.column("contract")
    shares = churn["contract"].value_counts(normalize=True)
    for value, weight in zip(contract.values, contract.weights, strict=True):
        assert shares[value] == pytest.approx(weight / sum(contract.weights), abs=0.02)

    charges = CHURN.data.column("monthly_charges")
    assert churn["monthly_charges"].between(charges.min, charges.max).all()
    assert churn["monthly_charges"].mean() == pytest.approx(charges.mean, abs=1.5)
    assert churn["monthly_charges"].std() == pytest.approx(charges.std, rel=0.1)
    assert churn["tenure_months"].between(0, 72).all()


def test_defaults_center_a_number_in_its_range_and_write_none_without_markers():
    frame = generate(tiny_spec(), 20_000, seed=1)

    assert frame["score"].mean() == pytest.approx(30, abs=0.5)  # middle of [0, 60]
    assert frame["score"].std() == pytest.approx(10, rel=0.1)  # a sixth of the range
    assert frame["channel"].isna().mean() == pytest.approx(0.2, abs=0.015)
    assert frame["channel"].dropna().map(type).eq(str).all()
    assert frame.loc[frame["channel"].isna(), "channel"].map(lambda v: v is None).all()
    assert frame["ticket"].is_unique and frame["ticket"].str.startswith("ticket-").all()
    assert frame["user"].duplicated().any()
    assert frame["note"].nunique() > 1


def test_target_positive_share_matches_the_weights_without_drift(churn):
    assert churn["status"].eq("churned").mean() == pytest.approx(0.2, abs=0.015)
    assert generate(tiny_spec(), 20_000, seed=2)["outcome"].eq("bad").mean() == pytest.approx(0.25, abs=0.015)


def test_target_is_learnable_from_the_columns_with_an_effect(churn):
    churned = churn["status"].eq("churned")

    assert churn.loc[churned, "tenure_months"].mean() < churn.loc[~churned, "tenure_months"].mean() - 4
    by_contract = churned.groupby(churn["contract"]).mean()
    assert by_contract["month-to-month"] > 2 * by_contract["two-year"]


def test_covariate_drift_moves_the_columns_with_an_effect_and_leaves_the_others(churn):
    drifted = generate(CHURN, 20_000, seed=11, covariate_drift=2.0)
    charges = CHURN.data.column("monthly_charges")

    shift = drifted["monthly_charges"].mean() - churn["monthly_charges"].mean()
    assert shift == pytest.approx(0.5 * 2.0 * charges.std, rel=0.2)
    assert drifted["contract"].eq("two-year").mean() > churn["contract"].eq("two-year").mean() + 0.1
    pd.testing.assert_series_equal(drifted["discount_share"], churn["discount_share"])  # no effect, no drift
    pd.testing.assert_series_equal(drifted["region"], churn["region"])


def test_concept_drift_keeps_every_feature_and_reverses_the_relation(churn):
    drifted = generate(CHURN, 20_000, seed=11, concept_drift=3.0)
    features = CHURN.data.input_columns

    pd.testing.assert_frame_equal(drifted[features], churn[features])
    assert drifted["status"].eq("churned").mean() == pytest.approx(0.2, abs=0.02)
    by_contract = drifted["status"].eq("churned").groupby(drifted["contract"]).mean()
    assert by_contract["two-year"] > by_contract["month-to-month"]


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"n_rows": 0}, "n_rows"),
        ({"n_rows": 2.5}, "n_rows"),
        ({"covariate_drift": -0.1}, "covariate_drift"),
        ({"covariate_drift": 3.5}, "covariate_drift"),
        ({"concept_drift": 4}, "concept_drift"),
        ({"concept_drift": float("nan")}, "concept_drift"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(arguments, named):
    with pytest.raises(ValueError, match=named):
        generate(CHURN, **{"n_rows": 10, "seed": 1, **arguments})


@pytest.mark.property
@settings(max_examples=30, deadline=None)
@given(n_rows=st.integers(1, 400), seed=st.integers(0, 2**31), covariate=st.floats(0, 3), concept=st.floats(0, 3))
def test_any_frame_respects_the_schema(n_rows, seed, covariate, concept):
    frame = generate(CHURN, n_rows, seed, covariate_drift=covariate, concept_drift=concept)

    assert list(frame.columns) == CHURN.data.raw_columns and len(frame) == n_rows
    assert frame["subscription_id"].is_unique
    for column in CHURN.data.columns:
        values = frame[column.name]
        if column.values is not None:
            allowed = {str(v) for v in column.values} | set(CHURN.data.missing_markers if column.nullable else [])
            assert set(values) <= allowed, column.name
        if column.min is not None:
            assert (values.dropna() >= column.min).all(), column.name
        if column.max is not None:
            assert (values.dropna() <= column.max).all(), column.name
