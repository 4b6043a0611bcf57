"""Raw encounters to model features: missing markers, age ordinal, ICD-9 groups, non-readmittable encounters out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from airloop import schema

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
NULLABLE_CATEGORIES: tuple[str, ...] = ("race", "payer_code", "medical_specialty")
TARGET = "readmitted_30d"

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


def icd9_group(codes: pd.Series) -> pd.Series:
    """Map ICD-9 codes as the file writes them to the usual nine diagnosis groups ("missing" for "?")."""
    text = codes.astype("str")
    numeric = pd.to_numeric(text, errors="coerce")
    conditions = [
        text.eq(schema.MISSING) | text.eq(""),
        text.str.startswith("250"),
        numeric.between(390, 459.99) | numeric.between(785, 785.99),
        numeric.between(460, 519.99) | numeric.between(786, 786.99),
        numeric.between(520, 579.99) | numeric.between(787, 787.99),
        numeric.between(800, 999.99),
        numeric.between(710, 739.99),
        numeric.between(580, 629.99) | numeric.between(788, 788.99),
        numeric.between(140, 239.99),
    ]
    choices = ["missing", "diabetes", "circulatory", "respiratory", "digestive", "injury", "musculoskeletal"]
    choices += ["genitourinary", "neoplasms"]
    return pd.Series(np.select(conditions, choices, default="other"), index=codes.index, dtype="str")


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
    """Turn validated raw encounters into the feature frame the training DAG reads (columns in FEATURE_COLUMNS)."""
    frame = raw.loc[~raw["discharge_disposition_id"].isin(schema.NON_READMITTABLE_DISPOSITIONS)].copy()
    for column in NULLABLE_CATEGORIES:
        frame[column] = frame[column].where(frame[column] != schema.MISSING).astype("str")
    frame["age"] = age_ordinal(frame["age"])
    for column in schema.DIAG_COLUMNS:
        frame[f"{column}_group"] = icd9_group(frame[column])
    for column in schema.ADMIN_ID_COLUMNS:
        frame[column] = frame[column].astype("int64").astype("str")
    meds = frame[list(schema.MEDICATIONS)]
    frame["n_medication_changes"] = meds.isin(["Up", "Down"]).sum(axis=1).astype("int64")
    frame["n_medications_used"] = meds.ne("No").sum(axis=1).astype("int64")
    frame["service_utilization"] = (
        frame["number_outpatient"] + frame["number_emergency"] + frame["number_inpatient"]
    ).astype("int64")
    frame[TARGET] = frame["readmitted"].eq(schema.POSITIVE_CLASS).astype("int64")
    return frame.loc[:, list(FEATURE_COLUMNS)].reset_index(drop=True)
