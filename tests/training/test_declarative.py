"""Declarative features: what a spec's features section declares, the same on frames and records, saved with skops,
and good enough that a model learns the generated churn data (and loses it under concept drift)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from airloop.data.generator import generate
from airloop.spec import ModelSpec, load_spec
from airloop.training.declarative import SKOPS_TRUSTED_TYPE, DeclarativeFeatures, declarative_spec
from airloop.training.record_features import feature_step

REPO = Path(__file__).resolve().parents[2]
CHURN = load_spec(REPO / "models" / "churn.yaml")


def shop_spec() -> ModelSpec:
    """A small spec using every kind of declarative feature, with "?" as the missing marker."""
    return ModelSpec.model_validate(
        {
            "name": "shop",
            "data": {
                "key": "order_id",
                "entity": "buyer",
                "missing_markers": ["?"],
                "target": {"column": "returned", "positive": ["yes"], "name": "is_returned"},
                "columns": [
                    {"name": "order_id", "type": "integer"},
                    {"name": "buyer", "type": "integer"},
                    {"name": "price", "type": "float", "nullable": True},
                    {"name": "items", "type": "integer"},
                    {"name": "country", "type": "string", "nullable": True},
                    {"name": "size", "type": "category", "values": ["S", "M", "L"], "nullable": True},
                    {"name": "product_code", "type": "string", "nullable": True},
                    {"name": "gift", "type": "category", "values": ["no", "yes"]},
                    {"name": "express", "type": "category", "values": ["no", "yes"]},
                    {"name": "returned", "type": "category", "values": ["no", "yes"]},
                ],
            },
            "features": {
                "numeric": [{"column": "price", "impute": "mean"}, {"column": "items", "impute": "zero"}],
                "categorical": [{"column": "country", "min_frequency": 2}],
                "ordinal": [{"column": "size", "order": ["S", "M", "L"]}],
                "code_groups": [
                    {
                        "column": "product_code",
                        "name": "department",
                        "prefixes": {"books": ["B"]},
                        "ranges": {"garden": [[100, 199]], "kitchen": [[200, 299], [900, 900]]},
                    }
                ],
                "sums": [{"name": "price_and_items", "columns": ["price", "items"]}],
                "counts": [{"name": "extras", "columns": ["gift", "express"], "values": ["yes"]}],
            },
        }
    )


SHOP = pd.DataFrame(
    {
        "order_id": [1, 2, 3, 4, 5],
        "buyer": [10, 10, 11, 12, 13],
        "price": [10.0, np.nan, 20.0, 30.0, 40.0],
        "items": [1, 2, 3, 4, 5],
        "country": ["DE", "DE", "FR", "?", "DE"],
        "size": ["S", "L", "?", "M", "XL"],
        "product_code": ["B12", "150", "250.5", "?", "900"],
        "gift": ["yes", "no", "yes", "no", "?"],
        "express": ["yes", "no", "no", "no", "no"],
    }
)


@pytest.fixture(scope="module")
def shop() -> DeclarativeFeatures:
    return DeclarativeFeatures(declarative_spec(shop_spec())).fit(SHOP)


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return generate(CHURN, 4000, seed=1)


@pytest.fixture(scope="module")
def churn_step(train) -> DeclarativeFeatures:
    return DeclarativeFeatures(declarative_spec(CHURN)).fit(train[CHURN.data.input_columns])


def as_records(features: pd.DataFrame) -> list[dict]:
    return [
        {c: (float(v) if isinstance(v, float | np.floating) else str(v)) for c, v in row.items()}
        for row in features.to_dict("records")
    ]


def test_feature_kinds_are_known_before_fit_numbers_first():
    numeric, categorical = DeclarativeFeatures(declarative_spec(shop_spec())).feature_kinds()

    assert numeric == ["price", "items", "size", "price_and_items", "extras"]
    assert categorical == ["country", "department"]


def test_fit_learns_imputation_values_and_kept_levels(shop):
    assert shop.impute_ == {"price": 25.0, "items": 0.0, "size": 1.0}  # mean of 10..40; zero; median of S, L, M
    assert shop.levels_ == {"country": ["DE"]}  # FR is seen once (< min_frequency 2); "?" is missing


def test_transform_gives_the_declared_values(shop):
    features = shop.transform(SHOP)

    assert list(features.columns) == ["price", "items", "size", "price_and_items", "extras", "country", "department"]
    assert features["price"].tolist() == [10.0, 25.0, 20.0, 30.0, 40.0]  # missing price -> fitted mean
    assert features["size"].tolist() == [0.0, 2.0, 1.0, 1.0, 1.0]  # "?" and unknown "XL" -> fitted median
    assert features["price_and_items"].tolist() == [11.0, 2.0, 23.0, 34.0, 45.0]  # a missing part adds 0
    assert features["extras"].tolist() == [2.0, 0.0, 1.0, 0.0, 0.0]  # a missing value never counts
    assert features["country"].tolist() == ["DE", "DE", "other", "missing", "DE"]
    assert features["department"].tolist() == ["books", "garden", "kitchen", "missing", "kitchen"]
    assert all(features[c].dtype == np.dtype("float64") for c in features.columns[:5])
    assert not features.iloc[:, :5].isna().any().any()


def test_unseen_levels_are_pooled_and_none_nan_or_marker_are_missing(shop):
    records = [
        {**SHOP.iloc[0].to_dict(), "country": "JP", "price": None, "size": float("nan")},
        {**SHOP.iloc[0].to_dict(), "country": None, "price": "?", "product_code": "Z9"},
        {**SHOP.iloc[0].to_dict(), "country": float("nan"), "price": "12.5", "items": "3"},
    ]

    out = shop.transform_records(records)

    assert [r["country"] for r in out] == ["other", "missing", "missing"]
    assert [r["price"] for r in out] == [25.0, 25.0, 12.5]
    assert out[0]["size"] == 1.0 and out[2]["items"] == 3.0
    assert out[1]["department"] == "other"  # no prefix, not a number: the default group


def test_records_path_gives_exactly_the_frame_values(churn_step):
    frame = generate(CHURN, 3000, seed=2, covariate_drift=1.0)[CHURN.data.input_columns]

    from_frame = as_records(churn_step.transform(frame))
    from_records = churn_step.transform_records(frame.to_dict("records"))

    assert from_records == from_frame
    assert any(r["payment_method"] == "missing" for r in from_records)


def test_a_number_that_is_not_a_number_is_an_error_naming_the_column(shop):
    with pytest.raises(ValueError, match=r"'price'.*'ten'"):
        shop.transform_records([{**SHOP.iloc[0].to_dict(), "price": "ten"}])


def test_declarative_spec_is_plain_data_and_refuses_a_model_with_its_own_transformer():
    import json

    spec = declarative_spec(CHURN)
    assert json.loads(json.dumps(spec)) == spec
    assert spec["missing_markers"] == ["n/a"]
    with pytest.raises(ValueError, match="transformer"):
        declarative_spec(load_spec(REPO / "models" / "readmission.yaml"))


def test_an_unfitted_step_without_spec_says_what_it_needs():
    with pytest.raises(ValueError, match="declarative_spec"):
        DeclarativeFeatures().fit(SHOP)


def churn_pipeline(step: DeclarativeFeatures) -> Pipeline:
    numeric, categorical = step.feature_kinds()
    preprocess = ColumnTransformer(
        [("num", StandardScaler(), numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)]
    )
    return Pipeline([("features", step), ("preprocess", preprocess), ("model", LogisticRegression(max_iter=2000))])


def labels(frame: pd.DataFrame) -> np.ndarray:
    return frame[CHURN.data.target.column].isin(CHURN.data.target.positive).astype(int).to_numpy()


@pytest.fixture(scope="module")
def churn_model(train) -> Pipeline:
    return churn_pipeline(DeclarativeFeatures(declarative_spec(CHURN))).fit(
        train[CHURN.data.input_columns], labels(train)
    )


def test_a_model_trained_on_generated_churn_beats_chance_and_concept_drift_lowers_it(churn_model):
    held_out = generate(CHURN, 3000, seed=2)
    drifted = generate(CHURN, 3000, seed=2, concept_drift=2.0)

    def auc(frame: pd.DataFrame) -> float:
        return roc_auc_score(labels(frame), churn_model.predict_proba(frame[CHURN.data.input_columns])[:, 1])

    assert auc(held_out) >= 0.75
    assert auc(drifted) < auc(held_out) - 0.2


def test_a_fitted_pipeline_round_trips_through_skops_with_the_trusted_type(churn_model):
    import skops.io as sio

    blob = sio.dumps(churn_model)
    untrusted = sio.get_untrusted_types(data=blob)
    assert SKOPS_TRUSTED_TYPE in untrusted
    assert set(untrusted) <= {SKOPS_TRUSTED_TYPE, "numpy.dtype"}

    loaded = sio.loads(blob, trusted=untrusted)
    frame = generate(CHURN, 500, seed=3)[CHURN.data.input_columns]

    np.testing.assert_array_equal(loaded.predict_proba(frame), churn_model.predict_proba(frame))
    step = feature_step(loaded)
    assert isinstance(step, DeclarativeFeatures)
    assert step.transform_records(frame.head(3).to_dict("records")) == as_records(step.transform(frame.head(3)))


_values = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.just("?"),
    st.sampled_from(["DE", "FR", "S", "M", "L", "B1", "150", "250.5", "yes", "no", "x"]),
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.booleans(),
)
_numbers = st.one_of(st.none(), st.just(float("nan")), st.just("?"), st.integers(-1000, 1000), st.floats(-1e6, 1e6))
_record = st.fixed_dictionaries(
    {
        "price": _numbers,
        "items": _numbers,
        "country": _values,
        "size": _values,
        "product_code": _values,
        "gift": _values,
        "express": _values,
    }
)


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(records=st.lists(_record, min_size=1, max_size=20))
def test_any_records_give_the_same_features_on_both_paths(shop, records):
    frame = pd.DataFrame(records, dtype=object)

    from_frame = as_records(shop.transform(frame))
    from_records = shop.transform_records(records)

    assert from_records == from_frame
    assert all(not math.isnan(r[c]) for r in from_records for c in shop.feature_kinds()[0])


def test_segments_must_be_features_the_declarative_transform_makes(tmp_path):
    from airloop.spec import SpecError

    text = (REPO / "models" / "churn.yaml").read_text().replace("segments: [plan, region]", "segments: [plan, planet]")
    broken = tmp_path / "churn.yaml"
    broken.write_text(text)

    with pytest.raises(SpecError, match=r"monitoring.segments. names \['planet'\], which are not among"):
        load_spec(broken)
    assert CHURN.monitoring["segments"] == ["plan", "region"]
