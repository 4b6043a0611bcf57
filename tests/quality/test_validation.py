"""The Great Expectations validator: clean batches pass, each kind of corruption fails with the expectation named."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airloop.quality import suites
from airloop.quality.validation import Validator
from airloop.settings import QualitySettings
from airloop.usecases.readmission import schema
from airloop.usecases.readmission.transform import transform
from tests.specs import READMISSION

QUALITY = QualitySettings(min_rows=500, max_rows=1_000_000)


@pytest.fixture(scope="module")
def validator(tmp_path_factory):
    return Validator(tmp_path_factory.mktemp("gx"))


@pytest.fixture(scope="module")
def clean():
    from airloop.usecases.readmission.synthetic import generate

    return generate(2000, seed=3)


def check_raw(validator, frame):
    return validator.validate(frame, "readmission_raw", suites.expectations(READMISSION, QUALITY, "raw"), "test")


def failed(report) -> set[str]:
    return {f"{f.expectation}({f.column})" if f.column else f.expectation for f in report.failures}


def test_clean_synthetic_batch_passes_both_suites(validator, clean):
    raw = check_raw(validator, clean)
    features = validator.validate(
        transform(clean), "readmission_features", suites.expectations(READMISSION, QUALITY, "features"), "test"
    )

    assert raw.success, raw.failures
    assert features.success, features.failures
    assert raw.docs_url and raw.docs_url.startswith("file://")


def test_real_published_rows_pass_both_suites(validator, real_sample):
    from airloop.data.sources import read_csv_bytes

    frame = read_csv_bytes(real_sample, READMISSION)
    raw = check_raw(validator, frame)
    features = validator.validate(
        transform(frame), "readmission_features", suites.expectations(READMISSION, QUALITY, "features"), "test"
    )

    assert raw.success, raw.failures
    assert features.success, features.failures


def test_missing_column_is_named(validator, clean):
    report = check_raw(validator, clean.drop(columns=["A1Cresult"]))

    assert not report.success
    columns_failure = next(f for f in report.failures if f.expectation == "expect_table_columns_to_match_ordered_list")
    assert "missing columns ['A1Cresult']" in columns_failure.evidence


def test_wrong_type_names_column_and_bad_values(validator, clean):
    frame = clean.astype({"time_in_hospital": "str"})
    frame.loc[5, "time_in_hospital"] = "three"

    report = check_raw(validator, frame)

    failure = next(f for f in report.failures if f.expectation == "expect_column_values_to_be_of_type")
    assert failure.column == "time_in_hospital"
    assert "'three'" in failure.evidence


def test_out_of_domain_category_names_value(validator, clean):
    frame = clean.copy()
    frame.loc[0, "race"] = "Martian"

    report = check_raw(validator, frame)

    assert [str(f) for f in report.failures] == [
        "expect_column_values_to_be_in_set(race) saw 1 unexpected values, e.g. ['Martian']"
    ]


def test_duplicate_encounter_id_fails_uniqueness(validator, clean):
    frame = clean.copy()
    frame.loc[1, "encounter_id"] = frame.loc[0, "encounter_id"]

    assert "expect_column_values_to_be_unique(encounter_id)" in failed(check_raw(validator, frame))


def test_too_few_rows_fails_row_count(validator, clean):
    report = check_raw(validator, clean.head(100))

    assert failed(report) == {"expect_table_row_count_to_be_between"}
    assert "100" in str(report.failures[0])


def test_a_stored_suite_is_reused_across_validators_and_a_changed_one_is_applied(tmp_path, clean):
    root = tmp_path / "gx"
    first = Validator(root).validate(
        clean, "readmission_raw", suites.expectations(READMISSION, QUALITY, "raw"), "first"
    )
    stored = {p: p.stat().st_mtime_ns for p in (root / "gx").rglob("*.json") if "uncommitted" not in p.parts}

    # A new process's validator on the same project: the same suite runs from the store, nothing of it rewritten.
    again = Validator(root).validate(
        clean, "readmission_raw", suites.expectations(READMISSION, QUALITY, "raw"), "again"
    )
    unchanged = {p: p.stat().st_mtime_ns for p in stored}
    # A changed suite (a row-count floor above the batch) is written and applied, not the stored one.
    stricter = QualitySettings(min_rows=len(clean) + 1, max_rows=1_000_000)
    changed = Validator(root).validate(
        clean, "readmission_raw", suites.expectations(READMISSION, stricter, "raw"), "changed"
    )

    assert stored and first.success and again.success
    assert unchanged == stored
    assert failed(changed) == {"expect_table_row_count_to_be_between"}
    assert first.evaluated == again.evaluated == changed.evaluated


CORRUPTIONS = {
    "category": lambda f, col, row: f.__setitem__(col, f[col].where(f.index != row, "Martian")),
    "count_range": lambda f, col, row: f.__setitem__(col, f[col].where(f.index != row, 999)),
    "duplicate": lambda f, col, row: f.__setitem__(
        "encounter_id", f["encounter_id"].where(f.index != row, f["encounter_id"].iloc[(row + 1) % len(f)])
    ),
    "null": lambda f, col, row: f.__setitem__(col, f[col].astype(object).where(f.index != row, None)),
}
EXPECTED = {
    "category": "expect_column_values_to_be_in_set({col})",
    "count_range": "expect_column_values_to_be_between({col})",
    "duplicate": "expect_column_values_to_be_unique(encounter_id)",
    "null": "expect_column_values_to_not_be_null({col})",
}


@pytest.mark.property
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(CORRUPTIONS)),
    category=st.sampled_from(sorted(schema.CATEGORY_DOMAINS)),
    count=st.sampled_from(sorted(schema.COUNT_RANGES)),
    row=st.integers(min_value=0, max_value=1999),
)
def test_generated_corruptions_fail_with_the_expectation_named(validator, clean, kind, category, count, row):
    column = count if kind == "count_range" else category
    frame = clean.copy()
    CORRUPTIONS[kind](frame, column, row)

    report = check_raw(validator, frame)

    assert not report.success
    assert EXPECTED[kind].format(col=column) in failed(report)


def test_great_expectations_info_chatter_is_silenced_but_warnings_kept(tmp_path, clean, caplog):
    import logging

    caplog.set_level(logging.INFO)

    report = Validator(tmp_path / "gx").validate(
        clean, "readmission_raw", suites.expectations(READMISSION, QUALITY, "raw"), "quiet"
    )
    logging.getLogger("great_expectations.some_module").warning("a real warning")

    assert report.success
    chatter = [r for r in caplog.records if "great_expectations" in r.name and r.levelno < logging.WARNING]
    assert chatter == []
    assert "a real warning" in [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
