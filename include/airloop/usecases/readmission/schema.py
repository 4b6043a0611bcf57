"""The diabetic_data.csv schema: the 50 published columns in order, their value domains and the binary target."""

from __future__ import annotations

MISSING = "?"

MEDICATIONS: tuple[str, ...] = (
    "metformin",
    "repaglinide",
    "nateglinide",
    "chlorpropamide",
    "glimepiride",
    "acetohexamide",
    "glipizide",
    "glyburide",
    "tolbutamide",
    "pioglitazone",
    "rosiglitazone",
    "acarbose",
    "miglitol",
    "troglitazone",
    "tolazamide",
    "examide",
    "citoglipton",
    "insulin",
    "glyburide-metformin",
    "glipizide-metformin",
    "glimepiride-pioglitazone",
    "metformin-rosiglitazone",
    "metformin-pioglitazone",
)

RAW_COLUMNS: tuple[str, ...] = (
    "encounter_id",
    "patient_nbr",
    "race",
    "gender",
    "age",
    "weight",
    "admission_type_id",
    "discharge_disposition_id",
    "admission_source_id",
    "time_in_hospital",
    "payer_code",
    "medical_specialty",
    "num_lab_procedures",
    "num_procedures",
    "num_medications",
    "number_outpatient",
    "number_emergency",
    "number_inpatient",
    "diag_1",
    "diag_2",
    "diag_3",
    "number_diagnoses",
    "max_glu_serum",
    "A1Cresult",
    *MEDICATIONS,
    "change",
    "diabetesMed",
    "readmitted",
)

ID_COLUMNS: tuple[str, ...] = ("encounter_id", "patient_nbr")
ADMIN_ID_COLUMNS: tuple[str, ...] = ("admission_type_id", "discharge_disposition_id", "admission_source_id")

# Inclusive ranges of the count columns over the full published file (101,766 rows).
COUNT_RANGES: dict[str, tuple[int, int]] = {
    "time_in_hospital": (1, 14),
    "num_lab_procedures": (1, 132),
    "num_procedures": (0, 6),
    "num_medications": (1, 81),
    "number_outpatient": (0, 42),
    "number_emergency": (0, 76),
    "number_inpatient": (0, 21),
    "number_diagnoses": (1, 16),
}

INTEGER_COLUMNS: tuple[str, ...] = (*ID_COLUMNS, *ADMIN_ID_COLUMNS, *COUNT_RANGES)

AGE_BUCKETS: tuple[str, ...] = tuple(f"[{lo}-{lo + 10})" for lo in range(0, 100, 10))
WEIGHT_BUCKETS: tuple[str, ...] = (*(f"[{lo}-{lo + 25})" for lo in range(0, 200, 25)), ">200")
MEDICATION_VALUES: tuple[str, ...] = ("No", "Steady", "Up", "Down")
READMITTED_VALUES: tuple[str, ...] = ("NO", ">30", "<30")
POSITIVE_CLASS = "<30"

# Ids as listed in the IDS_mapping.csv published with the dataset.
ADMISSION_TYPE_IDS: tuple[int, ...] = tuple(range(1, 9))
DISCHARGE_DISPOSITION_IDS: tuple[int, ...] = tuple(range(1, 31))
ADMISSION_SOURCE_IDS: tuple[int, ...] = (*range(1, 16), *range(17, 27))

# Discharge dispositions after which a readmission cannot happen: expired (11, 19, 20, 21) or hospice (13, 14).
NON_READMITTABLE_DISPOSITIONS: frozenset[int] = frozenset({11, 13, 14, 19, 20, 21})

CATEGORY_DOMAINS: dict[str, tuple[str, ...]] = {
    "race": ("Caucasian", "AfricanAmerican", "Hispanic", "Asian", "Other", MISSING),
    "gender": ("Female", "Male", "Unknown/Invalid"),
    "age": AGE_BUCKETS,
    "weight": (*WEIGHT_BUCKETS, MISSING),
    "payer_code": (
        *("MC", "MD", "HM", "UN", "BC", "SP", "CP", "SI", "DM", "CM", "CH", "PO", "WC", "OT", "OG", "MP", "FR"),
        MISSING,
    ),
    # The published file spells "no test" as the string "None"; the UCI re-release leaves it empty.
    "max_glu_serum": ("None", "Norm", ">200", ">300"),
    "A1Cresult": ("None", "Norm", ">7", ">8"),
    **{med: MEDICATION_VALUES for med in MEDICATIONS},
    "change": ("No", "Ch"),
    "diabetesMed": ("No", "Yes"),
    "readmitted": READMITTED_VALUES,
}

# ICD-9 as the file writes it: leading zeros dropped ("8", "38"), V and E codes, "?" when absent.
ICD9_PATTERN = r"^(?:\d{1,3}(?:\.\d{1,2})?|V\d{1,2}(?:\.\d{1,2})?|E\d{3}(?:\.\d{1,2})?|\?)$"
DIAG_COLUMNS: tuple[str, ...] = ("diag_1", "diag_2", "diag_3")
