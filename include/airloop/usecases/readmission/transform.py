"""Raw encounters to model features: missing markers, age ordinal, ICD-9 groups, derived counts.

``prepare`` makes the published training rows (raw records + target); ``features_from_frame`` and
``features_from_records`` are the one transform every model version carries inside itself (with its ``spec``);
``transform`` is the feature frame the features quality suite checks.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from airloop.usecases.readmission import schema

DIAG_GROUPS: tuple[str, ...] = (
    "circulatory",
    "respiratory",
    "digestive",
    "diabetes",
    "injury",
    "musculoskeletal",
    "genitourinary",
    "neoplasms",
    "other",
    "missing",
)

# Columns mostly empty in the published file (weight ~97% "?") or replaced by derived ones.
DROPPED_COLUMNS: tuple[str, ...] = ("weight", *schema.DIAG_COLUMNS)
TARGET = "readmitted_30d"
# Bump when the transform's logic (not only its spec data) changes; a model keeps the version it was fitted with.
TRANSFORM_VERSION = 1

CATEGORICAL_FEATURES: tuple[str, ...] = (
    "race",
    "gender",
    "payer_code",
    "medical_specialty",
    "admission_type_id",
    "discharge_disposition_id",
    "admission_source_id",
    "diag_1_group",
    "diag_2_group",
    "diag_3_group",
    "max_glu_serum",
    "A1Cresult",
    *schema.MEDICATIONS,
    "change",
    "diabetesMed",
)
NUMERIC_FEATURES: tuple[str, ...] = (
    "age",
    *schema.COUNT_RANGES,
    "service_utilization",
    "n_medication_changes",
    "n_medications_used",
)
ID_COLUMNS: tuple[str, ...] = schema.ID_COLUMNS

FEATURE_COLUMNS: tuple[str, ...] = (
    *ID_COLUMNS,
    *NUMERIC_FEATURES,
    *CATEGORICAL_FEATURES,
    "readmitted",
    TARGET,
)


# ICD-9 groups by numeric range (inclusive), checked in this order after "250*" (diabetes) and missing codes.
DIAG_RANGES: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = (
    ("circulatory", ((390, 459.99), (785, 785.99))),
    ("respiratory", ((460, 519.99), (786, 786.99))),
    ("digestive", ((520, 579.99), (787, 787.99))),
    ("injury", ((800, 999.99),)),
    ("musculoskeletal", ((710, 739.99),)),
    ("genitourinary", ((580, 629.99), (788, 788.99))),
    ("neoplasms", ((140, 239.99),)),
)
DIABETES_PREFIX = "250"
UTILIZATION_COLUMNS: tuple[str, ...] = ("number_outpatient", "number_emergency", "number_inpatient")
CHANGED_MEDICATION_VALUES: tuple[str, ...] = ("Up", "Down")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def default_spec() -> dict[str, Any]:
    """Everything the encounter -> features transform depends on, as plain data.

    A model version stores this spec inside itself when it is fitted, so it keeps its own transform when the
    constants here change later.
    """
    return {
        "version": TRANSFORM_VERSION,
        "age_index": {bucket: i for i, bucket in enumerate(schema.AGE_BUCKETS)},
        "missing_markers": [schema.MISSING, ""],
        "diag_columns": list(schema.DIAG_COLUMNS),
        "diabetes_prefix": DIABETES_PREFIX,
        "diag_ranges": [[group, [list(r) for r in ranges]] for group, ranges in DIAG_RANGES],
        "admin_id_columns": list(schema.ADMIN_ID_COLUMNS),
        "count_columns": list(schema.COUNT_RANGES),
        "utilization_columns": list(UTILIZATION_COLUMNS),
        "medications": list(schema.MEDICATIONS),
        "changed_medication_values": list(CHANGED_MEDICATION_VALUES),
        "numeric_features": list(NUMERIC_FEATURES),
        "categorical_features": list(CATEGORICAL_FEATURES),
    }


def is_missing(value: Any, markers: list[str] | tuple[str, ...] = (schema.MISSING, "")) -> bool:
    """Whether a raw value means "not recorded": null, NaN, "?" or empty."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value in markers


def diag_group(code: Any, spec: dict[str, Any]) -> str:
    """The diagnosis group of one ICD-9 code as the file writes it ("missing" for "?" or null, "other" if unknown)."""
    if is_missing(code, spec["missing_markers"]):
        return "missing"
    text = str(code)
    if text.startswith(spec["diabetes_prefix"]):
        return "diabetes"
    if not _NUMBER.fullmatch(text):
        return "other"  # V and E codes
    number = float(text)
    for group, ranges in spec["diag_ranges"]:
        if any(lo <= number <= hi for lo, hi in ranges):
            return group
    return "other"


def category(value: Any, spec: dict[str, Any]) -> str:
    """A categorical feature value: the raw value as a string, "missing" when not recorded."""
    return "missing" if is_missing(value, spec["missing_markers"]) else str(value)


def admin_id(value: Any, spec: dict[str, Any]) -> str:
    """An admission/discharge/source id as the category string ("1"), "missing" when not recorded."""
    return "missing" if is_missing(value, spec["missing_markers"]) else str(int(value))


def _categorical_value(column: str, value: Any, spec: dict[str, Any]) -> str:
    return admin_id(value, spec) if column in spec["admin_id_columns"] else category(value, spec)


def features_from_records(records: list[dict[str, Any]], spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Model features of raw encounter records (dicts), one dict per record: the serving path, no pandas.

    Gives exactly the values of ``features_from_frame`` (same scalar functions, same order).
    """
    age_index, counts = spec["age_index"], spec["count_columns"]
    meds, changed = spec["medications"], set(spec["changed_medication_values"])
    utilization, diag_columns = spec["utilization_columns"], spec["diag_columns"]
    categorical = [c for c in spec["categorical_features"] if not c.endswith("_group")]
    out = []
    for record in records:
        features: dict[str, Any] = {"age": float(age_index.get(record["age"], math.nan))}
        for column in counts:
            features[column] = float(record[column])
        features["service_utilization"] = sum(float(record[c]) for c in utilization)  # float sums, as the frame
        features["n_medication_changes"] = float(sum(1 for m in meds if record[m] in changed))
        features["n_medications_used"] = float(sum(1 for m in meds if record[m] != "No"))
        for column in categorical:
            features[column] = _categorical_value(column, record[column], spec)
        for column in diag_columns:
            features[f"{column}_group"] = diag_group(record[column], spec)
        out.append(features)
    return out


def _per_value(column: pd.Series, function: Any) -> np.ndarray:
    """``function`` of every value of ``column``, called once per distinct value (a column has few): as fast on a
    million rows as the scalar path is on one, and the same values."""
    codes, distinct = pd.factorize(column, use_na_sentinel=False)
    mapped = np.empty(len(distinct), dtype=object)
    mapped[:] = [function(value) for value in distinct.tolist()]
    return mapped[codes]


def features_from_frame(frame: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
    """Model features of raw encounters (a frame with the raw columns): numbers as float64, categories as str."""
    columns: dict[str, Any] = {}
    age_index = spec["age_index"]
    columns["age"] = _per_value(frame["age"], lambda v: age_index.get(v, math.nan)).astype("float64")
    for column in spec["count_columns"]:
        columns[column] = frame[column].to_numpy(dtype="float64")
    columns["service_utilization"] = sum(frame[c].to_numpy(dtype="float64") for c in spec["utilization_columns"])
    meds = frame[spec["medications"]]
    changed = spec["changed_medication_values"]
    columns["n_medication_changes"] = meds.isin(changed).sum(axis=1).to_numpy(dtype="float64")
    columns["n_medications_used"] = (meds != "No").sum(axis=1).to_numpy(dtype="float64")
    for column in spec["categorical_features"]:
        if column.endswith("_group"):
            values = _per_value(frame[column.removesuffix("_group")], lambda v: diag_group(v, spec))
        else:
            values = _per_value(frame[column], lambda v, c=column: _categorical_value(c, v, spec))
        columns[column] = pd.array(values, dtype="str")
    ordered = [*spec["numeric_features"], *spec["categorical_features"]]
    return pd.DataFrame({c: columns[c] for c in ordered}, index=frame.index)


def icd9_group(codes: pd.Series) -> pd.Series:
    """Map ICD-9 codes as the file writes them to the usual nine diagnosis groups ("missing" for "?")."""
    spec = default_spec()
    return pd.Series([diag_group(v, spec) for v in codes.tolist()], index=codes.index, dtype="str")


def age_ordinal(buckets: pd.Series) -> pd.Series:
    """ "[70-80)" -> 7: the decade index of the published age bucket."""
    mapping = {bucket: i for i, bucket in enumerate(schema.AGE_BUCKETS)}
    return buckets.map(mapping).astype("int64")


def prepare(raw: pd.DataFrame) -> pd.DataFrame:
    """The published training rows: readmittable encounters exactly as the hospital records them, plus the target.

    Columns are the raw file's (``schema.RAW_COLUMNS``, "?" kept) followed by ``readmitted_30d``; a model takes these
    records as they are and carries the feature transform inside itself.
    """
    frame = raw.loc[~raw["discharge_disposition_id"].isin(schema.NON_READMITTABLE_DISPOSITIONS)]
    frame = frame.loc[:, list(schema.RAW_COLUMNS)].reset_index(drop=True)
    frame[TARGET] = frame["readmitted"].eq(schema.POSITIVE_CLASS).astype("int64")
    return frame


def transform(raw: pd.DataFrame) -> pd.DataFrame:
    """The feature frame that the features suite validates: ids, model features (counts as int64), target.

    The features are those every model computes inside itself (``features_from_frame``), so what the quality gate
    checks is what the model sees.
    """
    frame = prepare(raw)
    features = features_from_frame(frame, default_spec())
    for column in NUMERIC_FEATURES:
        features[column] = features[column].astype("int64")
    out = pd.concat([frame[list(ID_COLUMNS)], features, frame[["readmitted", TARGET]]], axis=1)
    return out.loc[:, list(FEATURE_COLUMNS)].reset_index(drop=True)
