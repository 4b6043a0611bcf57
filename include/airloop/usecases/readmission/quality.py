"""Readmission's features suite checks beyond what the platform derives (row count, unique key, target in {0, 1}):
the feature frame its own transform makes (``transform.transform``) has exactly the expected columns, types and
value domains, and no expired or hospice encounter reached it. Named by ``models/readmission.yaml``."""

from __future__ import annotations

import great_expectations as gx
from great_expectations.expectations import Expectation

from airloop.settings import QualitySettings
from airloop.usecases.readmission import schema
from airloop.usecases.readmission import transform as tf

ID_DOMAINS: dict[str, tuple[int, ...]] = {
    "admission_type_id": schema.ADMISSION_TYPE_IDS,
    "discharge_disposition_id": schema.DISCHARGE_DISPOSITION_IDS,
    "admission_source_id": schema.ADMISSION_SOURCE_IDS,
}


def feature_expectations(quality: QualitySettings) -> list[Expectation]:
    """Expectations on the transformed frame that training reads."""
    integer_columns = (*tf.ID_COLUMNS, *tf.NUMERIC_FEATURES, tf.TARGET)
    domains = {
        c: tuple("missing" if v == schema.MISSING else v for v in values)
        for c, values in schema.CATEGORY_DOMAINS.items()
        if c in tf.CATEGORICAL_FEATURES or c == "readmitted"
    }
    domains.update({f"{c}_group": tf.DIAG_GROUPS for c in schema.DIAG_COLUMNS})
    domains.update({c: tuple(str(i) for i in ids) for c, ids in ID_DOMAINS.items()})
    expectations: list[Expectation] = [
        gx.expectations.ExpectTableColumnsToMatchOrderedList(column_list=list(tf.FEATURE_COLUMNS)),
        gx.expectations.ExpectColumnValuesToBeBetween(column="encounter_id", min_value=1),
        gx.expectations.ExpectColumnValuesToBeBetween(column="patient_nbr", min_value=1),
        *(
            gx.expectations.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi)
            for c, (lo, hi) in schema.COUNT_RANGES.items()
        ),
    ]
    expectations += [gx.expectations.ExpectColumnValuesToBeOfType(column=c, type_="int64") for c in integer_columns]
    expectations += [gx.expectations.ExpectColumnValuesToNotBeNull(column=c) for c in tf.FEATURE_COLUMNS]
    expectations += [
        gx.expectations.ExpectColumnValuesToBeInSet(column=c, value_set=list(values)) for c, values in domains.items()
    ]
    expectations += [
        gx.expectations.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=len(schema.AGE_BUCKETS) - 1),
        gx.expectations.ExpectColumnValuesToNotBeInSet(
            column="discharge_disposition_id", value_set=[str(i) for i in sorted(schema.NON_READMITTABLE_DISPOSITIONS)]
        ),
    ]
    return expectations
