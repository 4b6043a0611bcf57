"""The model takes the encounter as the hospital has it: the transform inside the model, equal on both paths, kept
by each model version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.training import features
from airloop.usecases.readmission import schema
from airloop.usecases.readmission import transform as tf
from airloop.usecases.readmission.features import EncounterFeatures
from tests.specs import READMISSION


@pytest.fixture(scope="module")
def published():
    from airloop.usecases.readmission.synthetic import generate

    return tf.prepare(generate(2000, seed=3))


def _frame_path(encoder: features.EncounterFeatures, records: list[dict]) -> pd.DataFrame:
    return encoder.transform(pd.DataFrame.from_records(records, columns=list(READMISSION.data.input_columns)))


def _records_path(encoder: features.EncounterFeatures, records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(encoder.transform_records(records))[encoder.get_feature_names_out()]


def assert_same_features(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert list(left.columns) == list(right.columns)
    for column in tf.NUMERIC_FEATURES:
        np.testing.assert_array_equal(left[column].to_numpy(), right[column].to_numpy(), err_msg=column)
    for column in tf.CATEGORICAL_FEATURES:
        assert left[column].astype(str).tolist() == right[column].astype(str).tolist(), column


def test_model_inputs_are_the_published_columns_minus_the_target(published):
    inputs = features.model_inputs(READMISSION, published)

    assert list(inputs.columns) == [c for c in schema.RAW_COLUMNS if c != "readmitted"]
    assert inputs["age"].iloc[0].startswith("[")
    assert (inputs["medical_specialty"] == "?").any()  # missing stays as the file writes it


def test_record_path_equals_frame_path_on_synthetic_encounters(published):
    encoder = EncounterFeatures().fit(None)
    records = features.model_inputs(READMISSION, published).to_dict("records")

    assert_same_features(_records_path(encoder, records), _frame_path(encoder, records).reset_index(drop=True))


def test_record_path_equals_frame_path_on_the_real_published_rows(real_sample):
    from airloop.data.sources import read_csv_bytes

    encoder = EncounterFeatures().fit(None)
    records = features.model_inputs(READMISSION, tf.prepare(read_csv_bytes(real_sample, READMISSION))).to_dict(
        "records"
    )

    assert_same_features(_records_path(encoder, records), _frame_path(encoder, records).reset_index(drop=True))


codes = st.one_of(
    st.none(),
    st.sampled_from(["?", "", "250", "250.83", "428", "V57", "E909", "785.5", "999.99", "1000"]),
    st.text(max_size=8),
    st.floats(min_value=0, max_value=1200).map(lambda x: f"{x:.2f}"),
)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(
    diag=codes,
    race=st.one_of(st.none(), st.text(max_size=5), st.just("?")),
    admission=st.integers(0, 40),
    visits=st.lists(st.integers(0, 2**62), min_size=3, max_size=3),
)
def test_both_paths_agree_on_any_field_values(published, diag, race, admission, visits):
    encoder = EncounterFeatures().fit(None)
    record = {**features.model_inputs(READMISSION, published).iloc[0].to_dict(), "diag_1": diag, "race": race}
    record["admission_type_id"] = admission
    record.update(zip(("number_outpatient", "number_emergency", "number_inpatient"), visits, strict=True))

    assert_same_features(_records_path(encoder, [record]), _frame_path(encoder, [record]))


def test_a_saved_model_version_keeps_its_own_transform_after_the_code_changes(published, tmp_path, monkeypatch):
    import mlflow

    x, y = features.model_inputs(READMISSION, published), features.target(READMISSION, published)
    model = features.make_pipeline(READMISSION, "logistic_regression", {}, seed=0).fit(x, y)
    mlflow.sklearn.save_model(
        model,
        tmp_path / "v1",
        skops_trusted_types=features.skops_trusted_types(model),
        pip_requirements=["scikit-learn"],
    )
    before = model.predict_proba(x)[:, 1]
    # A later release regroups circulatory codes and renames the age buckets.
    monkeypatch.setattr(tf, "DIAG_RANGES", (("circulatory", ((0, 1),)),))
    monkeypatch.setattr(schema, "AGE_BUCKETS", tuple(f"age-{i}" for i in range(10)))
    assert EncounterFeatures().fit(None).transform(x.head(50)).ne(model[0].transform(x.head(50))).any().any()

    loaded = mlflow.sklearn.load_model(str(tmp_path / "v1"))

    np.testing.assert_array_equal(loaded.predict_proba(x)[:, 1], before)
