"""Transform: missing markers, age ordinal, ICD-9 groups, non-readmittable encounters dropped, target."""

from __future__ import annotations

import pandas as pd
import pytest

from airloop.usecases.readmission import schema
from airloop.usecases.readmission.transform import FEATURE_COLUMNS, TARGET, age_ordinal, icd9_group, prepare, transform
from tests.specs import READMISSION


@pytest.mark.parametrize(
    ("code", "group"),
    [
        ("428", "circulatory"),
        ("785.5", "circulatory"),
        ("486", "respiratory"),
        ("786", "respiratory"),
        ("560", "digestive"),
        ("250.83", "diabetes"),
        ("250", "diabetes"),
        ("996", "injury"),
        ("715", "musculoskeletal"),
        ("599", "genitourinary"),
        ("788", "genitourinary"),
        ("174", "neoplasms"),
        ("V57", "other"),
        ("E909", "other"),
        ("8", "other"),
        ("276", "other"),
        ("?", "missing"),
    ],
)
def test_icd9_codes_map_to_diagnosis_groups(code, group):
    assert icd9_group(pd.Series([code], dtype="str")).iloc[0] == group


def test_age_buckets_become_decade_ordinals():
    assert age_ordinal(pd.Series(["[0-10)", "[70-80)", "[90-100)"])).tolist() == [0, 7, 9]


def test_transform_drops_expired_and_hospice_and_marks_missing():
    from airloop.usecases.readmission.synthetic import generate

    raw = generate(3000, seed=2)
    raw.loc[0, "race"] = "?"

    out = transform(raw)

    assert list(out.columns) == list(FEATURE_COLUMNS)
    kept = ~raw["discharge_disposition_id"].isin(schema.NON_READMITTABLE_DISPOSITIONS)
    assert len(out) == kept.sum()
    assert not out["discharge_disposition_id"].isin([str(i) for i in schema.NON_READMITTABLE_DISPOSITIONS]).any()
    assert (out.loc[out["encounter_id"] == raw.loc[0, "encounter_id"], "race"] == "missing").all() or not kept[0]
    assert (out[TARGET] == (out["readmitted"] == "<30")).all()
    assert out["patient_nbr"].dtype == "int64"


def test_real_rows_transform_with_expected_counts(real_sample):
    from airloop.data.sources import read_csv_bytes

    raw = read_csv_bytes(real_sample, READMISSION)
    kept = raw.loc[~raw["discharge_disposition_id"].isin(schema.NON_READMITTABLE_DISPOSITIONS)]

    out = transform(raw)

    assert 2900 < len(out) == len(kept) < 3000
    assert out[TARGET].sum() == (kept["readmitted"] == "<30").sum()
    assert (out["race"] == "missing").sum() == (kept["race"] == "?").sum()
    assert out["diag_1_group"].value_counts().index[0] == "circulatory"


def test_prepare_keeps_the_record_as_published_and_adds_the_target():
    from airloop.usecases.readmission.synthetic import generate

    raw = generate(2000, seed=4)

    out = prepare(raw)

    assert list(out.columns) == [*schema.RAW_COLUMNS, TARGET]
    kept = raw.loc[~raw["discharge_disposition_id"].isin(schema.NON_READMITTABLE_DISPOSITIONS)].reset_index(drop=True)
    pd.testing.assert_frame_equal(out[list(schema.RAW_COLUMNS)], kept[list(schema.RAW_COLUMNS)])
    assert (out[TARGET] == (out["readmitted"] == "<30")).all()
