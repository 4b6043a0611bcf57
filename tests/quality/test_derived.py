"""Suites derived from a spec: the churn spec's generated batches pass them through the real GE runner, and a
corrupted batch fails with the column named."""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx
import pandas as pd
import pytest

from airloop.data.generator import generate
from airloop.quality import derived
from airloop.quality.validation import Validator
from airloop.settings import QualitySettings
from airloop.spec import ModelSpec, load_spec

REPO = Path(__file__).resolve().parents[2]
CHURN = load_spec(REPO / "models" / "churn.yaml")
QUALITY = QualitySettings(min_rows=500, max_rows=1_000_000)
RAW_SUITE, FEATURES_SUITE = "churn_raw", "churn_features"


def extra_expectations(quality: QualitySettings) -> list:
    """A ``raw_extra`` entry point for the tests: one expectation that needs code to say."""
    return [gx.expectations.ExpectTableRowCountToBeBetween(min_value=quality.min_rows, max_value=quality.min_rows * 9)]


def published(raw: pd.DataFrame, spec: ModelSpec = CHURN) -> pd.DataFrame:
    """The published rows (filters applied, the binary target added), as the ETL writes them."""
    keep = pd.Series(True, index=raw.index)
    for row_filter in spec.data.filters:
        keep &= ~raw[row_filter.column].isin([str(v) for v in row_filter.not_in])
    frame = raw.loc[keep].reset_index(drop=True)
    frame[spec.data.target.name] = frame[spec.data.target.column].isin(spec.data.target.positive).astype("int64")
    return frame


def with_quality(**quality: object) -> ModelSpec:
    document = CHURN.model_dump(by_alias=True, exclude_unset=True)
    return ModelSpec.model_validate({**document, "quality": {**document.get("quality", {}), **quality}})


@pytest.fixture(scope="module")
def validator(tmp_path_factory) -> Validator:
    return Validator(tmp_path_factory.mktemp("gx"))


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return generate(CHURN, 3000, seed=4)


def check_raw(validator: Validator, frame: pd.DataFrame):
    return validator.validate(frame, RAW_SUITE, derived.raw_expectations(CHURN, QUALITY), "test")


def failed(report) -> set[str]:
    return {f"{f.expectation}({f.column})" if f.column else f.expectation for f in report.failures}


def test_generated_churn_batch_passes_its_derived_raw_suite(validator, raw):
    report = check_raw(validator, raw)

    assert report.success, [str(f) for f in report.failures]
    assert report.evaluated == len(derived.raw_expectations(CHURN, QUALITY))


def test_features_frame_of_published_churn_passes_the_features_suite(validator, raw):
    frame = derived.features_frame(CHURN, published(raw))
    report = validator.validate(
        frame, FEATURES_SUITE, derived.feature_expectations(CHURN, QUALITY, list(frame.columns)), "test"
    )

    assert report.success, [str(f) for f in report.failures]
    assert list(frame.columns[:2]) == ["subscription_id", "customer_id"] and frame.columns[-1] == "churned_60d"
    assert len(frame) == len(published(raw)) < len(raw)  # internal accounts filtered out before publication
    assert frame["churned_60d"].isin([0, 1]).all()


@pytest.mark.parametrize(
    ("column", "value", "expectation"),
    [
        ("payment_method", "bitcoin", "expect_column_values_to_be_in_set"),
        ("tenure_months", 500, "expect_column_values_to_be_between"),
        ("contract", None, "expect_column_values_to_not_be_null"),
        ("monthly_charges", -3.0, "expect_column_values_to_be_between"),
    ],
)
def test_a_corrupted_value_fails_the_raw_suite_naming_its_column(validator, raw, column, value, expectation):
    frame = raw.copy()
    frame.loc[7, column] = value

    report = check_raw(validator, frame)

    assert not report.success
    assert f"{expectation}({column})" in failed(report)


def test_a_duplicated_key_and_a_text_integer_column_fail_naming_them(validator, raw):
    frame = raw.copy()
    frame.loc[1, "subscription_id"] = frame.loc[0, "subscription_id"]
    frame["late_payments_12m"] = frame["late_payments_12m"].astype(str)

    report = check_raw(validator, frame)

    assert {
        "expect_column_values_to_be_unique(subscription_id)",
        "expect_column_values_to_be_of_type(late_payments_12m)",
    } <= failed(report)


def test_the_spec_own_raw_expectations_run_and_fail_on_their_column(validator, raw):
    frame = raw.copy()
    frame["monthly_charges"] = (frame["monthly_charges"] + 60).clip(upper=150.0)  # every bill in range, mean ~120

    report = check_raw(validator, frame)

    assert "expect_column_mean_to_be_between(monthly_charges)" in failed(report)


def test_nullable_columns_admit_their_marker_or_null_and_others_not():
    expectations = [e.configuration.to_json_dict() for e in derived.raw_expectations(CHURN, QUALITY)]
    not_null = {e["kwargs"]["column"] for e in expectations if e["type"] == "expect_column_values_to_not_be_null"}
    value_sets = {
        e["kwargs"]["column"]: e["kwargs"]["value_set"]
        for e in expectations
        if e["type"] == "expect_column_values_to_be_in_set"
    }

    assert not_null == set(CHURN.data.raw_columns) - {"avg_session_minutes", "satisfaction_score"}
    assert value_sets["payment_method"] == ["card", "bank_transfer", "invoice", "voucher", "n/a"]
    assert "n/a" not in value_sets["contract"]


def test_an_unknown_expectation_name_is_an_error_naming_it():
    spec = with_quality(raw=[{"type": "expect_column_to_be_purple", "kwargs": {"column": "plan"}}])

    with pytest.raises(derived.UnknownExpectation, match="expect_column_to_be_purple"):
        derived.raw_expectations(spec, QUALITY)


def test_wrong_arguments_of_a_known_expectation_are_an_error_naming_it():
    spec = with_quality(features=[{"type": "expect_column_values_to_be_between", "kwargs": {"colum": "plan"}}])

    with pytest.raises(derived.UnknownExpectation, match="expect_column_values_to_be_between"):
        derived.feature_expectations(spec, QUALITY, ["plan"])


def test_extra_expectations_come_from_the_entry_point():
    spec = with_quality(raw_extra="tests.quality.test_derived:extra_expectations")

    added = derived.raw_expectations(spec, QUALITY)[-1].configuration.to_json_dict()

    assert added["type"] == "expect_table_row_count_to_be_between"
    assert added["kwargs"]["max_value"] == 4500


def test_a_features_frame_with_an_unknown_level_fails_naming_the_column(validator, raw):
    frame = derived.features_frame(CHURN, published(raw))
    frame.loc[3, "region"] = "atlantis"
    frame.loc[4, "churned_60d"] = 2

    report = validator.validate(
        frame, FEATURES_SUITE, derived.feature_expectations(CHURN, QUALITY, list(frame.columns)), "test"
    )

    assert {
        "expect_column_values_to_be_in_set(region)",
        "expect_column_values_to_be_in_set(churned_60d)",
    } <= failed(report)


def test_a_spec_without_markers_admits_nulls_in_nullable_text_and_checks_patterns(validator):
    spec = ModelSpec.model_validate(
        {
            "name": "tickets",
            "data": {
                "key": "ticket",
                "entity": "user",
                "target": {"column": "outcome", "positive": ["bad"], "name": "is_bad"},
                "columns": [
                    {"name": "ticket", "type": "string", "pattern": r"^ticket-\d+$"},
                    {"name": "user", "type": "integer", "min": 1},
                    {"name": "channel", "type": "category", "values": ["web", "phone"], "nullable": True,
                     "missing_share": 0.2, "effect": 1.0},
                    {"name": "wait_minutes", "type": "float", "min": 0, "max": 60, "effect": 1.5},
                    {"name": "outcome", "type": "category", "values": ["good", "bad"], "weights": [3, 1]},
                ],
            },
            "features": {"numeric": [{"column": "wait_minutes"}], "categorical": [{"column": "channel"}]},
        }
    )  # fmt: skip
    frame = generate(spec, 1000, seed=1)
    expectations = derived.raw_expectations(spec, QUALITY)

    clean = validator.validate(frame, "tickets_raw", expectations, "test")
    frame.loc[2, "ticket"] = "T-2"
    broken = validator.validate(frame, "tickets_raw", expectations, "test")

    assert frame["channel"].isna().any()
    assert clean.success, [str(f) for f in clean.failures]
    assert failed(broken) == {"expect_column_values_to_match_regex(ticket)"}
