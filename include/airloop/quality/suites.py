"""Great Expectations suites, kept as code: one for raw encounters as published, one for the feature frame."""

from __future__ import annotations

import great_expectations as gx
from great_expectations.expectations import Expectation

from airloop import schema
from airloop.data import transform as tf
from airloop.settings import QualitySettings

RAW_SUITE = "readmission_raw"
FEATURES_SUITE = "readmission_features"

_ID_DOMAINS: dict[str, tuple[int, ...]] = {
    "admission_type_id": schema.ADMISSION_TYPE_IDS,
    "discharge_disposition_id": schema.DISCHARGE_DISPOSITION_IDS,
    "admission_source_id": schema.ADMISSION_SOURCE_IDS,
}


def _common(columns: tuple[str, ...], quality: QualitySettings) -> list[Expectation]:
    return [
        gx.expectations.ExpectTableColumnsToMatchOrderedList(column_list=list(columns)),
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=quality.min_rows, max_value=quality.max_rows),
        gx.expectations.ExpectColumnValuesToBeUnique(column="encounter_id"),
        gx.expectations.ExpectColumnValuesToBeBetween(column="encounter_id", min_value=1),
        gx.expectations.ExpectColumnValuesToBeBetween(column="patient_nbr", min_value=1),
        *(
            gx.expectations.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi)
            for c, (lo, hi) in schema.COUNT_RANGES.items()
        ),
    ]


def raw_expectations(quality: QualitySettings) -> list[Expectation]:
    """Expectations on encounters exactly as diabetic_data.csv publishes them ("?" marks missing, no nulls)."""
    expectations = _common(schema.RAW_COLUMNS, quality)
    expectations += [
        gx.expectations.ExpectColumnValuesToBeOfType(column=c, type_="int64") for c in schema.INTEGER_COLUMNS
    ]
    expectations += [gx.expectations.ExpectColumnValuesToNotBeNull(column=c) for c in schema.RAW_COLUMNS]
    expectations += [
        gx.expectations.ExpectColumnValuesToBeInSet(column=c, value_set=list(values))
        for c, values in schema.CATEGORY_DOMAINS.items()
    ]
    expectations += [
        gx.expectations.ExpectColumnValuesToBeInSet(column=c, value_set=list(ids)) for c, ids in _ID_DOMAINS.items()
    ]
    expectations += [
        gx.expectations.ExpectColumnValuesToMatchRegex(column=c, regex=schema.ICD9_PATTERN) for c in schema.DIAG_COLUMNS
    ]
    return expectations


def feature_expectations(quality: QualitySettings) -> list[Expectation]:
    """Expectations on the transformed frame that training reads."""
    integer_columns = (*tf.ID_COLUMNS, *tf.NUMERIC_FEATURES, tf.TARGET)
    domains = {
        c: tuple("missing" if v == schema.MISSING else v for v in values)
        for c, values in schema.CATEGORY_DOMAINS.items()
        if c in tf.CATEGORICAL_FEATURES or c == "readmitted"
    }
    domains.update({f"{c}_group": tf.DIAG_GROUPS for c in schema.DIAG_COLUMNS})
    domains.update({c: tuple(str(i) for i in ids) for c, ids in _ID_DOMAINS.items()})
    expectations = _common(tf.FEATURE_COLUMNS, quality)
    expectations += [gx.expectations.ExpectColumnValuesToBeOfType(column=c, type_="int64") for c in integer_columns]
    expectations += [gx.expectations.ExpectColumnValuesToNotBeNull(column=c) for c in tf.FEATURE_COLUMNS]
    expectations += [
        gx.expectations.ExpectColumnValuesToBeInSet(column=c, value_set=list(values)) for c, values in domains.items()
    ]
    expectations += [
        gx.expectations.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=len(schema.AGE_BUCKETS) - 1),
        gx.expectations.ExpectColumnValuesToBeInSet(column=tf.TARGET, value_set=[0, 1]),
        gx.expectations.ExpectColumnValuesToNotBeInSet(
            column="discharge_disposition_id", value_set=[str(i) for i in sorted(schema.NON_READMITTABLE_DISPOSITIONS)]
        ),
    ]
    return expectations


SUITES = {RAW_SUITE: raw_expectations, FEATURES_SUITE: feature_expectations}
