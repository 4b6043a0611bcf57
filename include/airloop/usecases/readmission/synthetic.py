"""Synthetic encounters shaped like diabetic_data.csv, with a learnable readmission signal and drift knobs.

`generate` returns the 50 published columns in the raw form the loader produces from the real file: integer columns
as int64, everything else as the strings the file writes ("?" for missing, "None" for no glucose/A1C test).

How a frame is built:

- **Marginals** come from ``synthetic_marginals.json`` beside this module: per-column value counts from the first
  3,000 rows of the published file (``calibrate``), except ``payer_code`` and ``readmitted``, whose shares in that
  early sample are unrepresentative and are taken from the full published file instead.
- **Patients**: about 0.7 patients per encounter with a skewed number of encounters each; race, gender and (up to
  a small jitter) age belong to the patient. Patients with many encounters are frailer: more prior inpatient and
  emergency visits and a higher readmission risk.
- **Correlations** use a Gaussian copula: correlated latent normals are mapped through each column's calibrated
  inverse CDF, so marginals stay as calibrated while e.g. older patients get more diagnoses and sicker encounters
  stay longer and take more medications.
- **Target**: an ordinal latent risk (prior inpatient/emergency visits, diagnoses, length of stay, age, discharge
  disposition, insulin changes, primary diagnosis group, A1C, a patient random effect, logistic noise) is cut into
  NO / >30 / <30 at thresholds that reproduce the published shares when there is no covariate drift. Expired
  patients are never readmitted and hospice patients rarely are.
- **Covariate drift** shifts the latents of `DRIFTED_COLUMNS_COVARIATE` only (older patients, more insulin use and
  so more diabetesMed "Yes" and "Ch", more prior inpatient visits); the readmission rate rises as a consequence.
- **Concept drift** leaves every feature column untouched (same seed, same features) and changes the risk: the
  effect of number_inpatient weakens and then reverses while num_medications becomes predictive.

Regenerate the marginals from the real sample with
``python -m airloop.usecases.readmission.synthetic ../shared/data/diabetic_data_sample.csv``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from airloop.usecases.readmission import schema
from airloop.usecases.readmission.transform import icd9_group

MARGINALS_PATH = Path(__file__).with_name("synthetic_marginals.json")
TOP_DIAGNOSES = 150
MAX_DRIFT = 3.0

# Shares over the full published file (101,766 rows); the 3,000-row sample is early data and misrepresents them.
PUBLISHED_READMITTED_COUNTS: dict[str, int] = {"NO": 54_864, ">30": 35_545, "<30": 11_357}
PUBLISHED_PAYER_CODE_COUNTS: dict[str, int] = {
    "?": 40_256, "MC": 32_439, "HM": 6_274, "SP": 5_007, "BC": 4_655, "MD": 3_532, "CP": 2_533, "UN": 2_448,
    "CM": 1_937, "OG": 1_033, "PO": 592, "DM": 549, "CH": 146, "WC": 135, "OT": 95, "MP": 79, "SI": 55, "FR": 1,
}  # fmt: skip

CATEGORICAL_COLUMNS: tuple[str, ...] = (
    "race",
    "gender",
    "age",
    "weight",
    *schema.ADMIN_ID_COLUMNS,
    "payer_code",
    "medical_specialty",
    "max_glu_serum",
    "A1Cresult",
    *schema.MEDICATIONS,
    "change",
    "diabetesMed",
    "readmitted",
)

DRIFTED_COLUMNS_COVARIATE: tuple[str, ...] = ("age", "number_inpatient", "insulin", "change", "diabetesMed")

# Discharge dispositions from least to most care needed (expired last), so the copula ties them to age and severity.
_DISPOSITION_CARE_ORDER: tuple[int, ...] = (
    1, 25, 26, 18, 9, 8, 12, 16, 17, 10, 27, 29, 30, 7, 4, 2, 23, 5, 6, 22, 24, 28, 15, 3, 13, 14, 11, 19, 20, 21,
)  # fmt: skip
_ORAL_MEDICATIONS: tuple[str, ...] = tuple(m for m in schema.MEDICATIONS if m != "insulin")
# Drawn from their marginals alone (diag_2/diag_3 then set to "?" when number_diagnoses is below 2/3).
_INDEPENDENT_COLUMNS: tuple[str, ...] = (
    "weight", "admission_type_id", "admission_source_id", "payer_code", "medical_specialty", "max_glu_serum",
    "A1Cresult", "diag_1", "diag_2", "diag_3", *_ORAL_MEDICATIONS,
)  # fmt: skip
_EXPIRED_DISPOSITIONS: frozenset[int] = frozenset({11, 19, 20, 21})
_INSULIN_ORDER: tuple[str, ...] = ("No", "Down", "Steady", "Up")

# Log-odds contributions to the latent readmission risk (the logistic noise has scale 1).
_DISPOSITION_EFFECT: dict[int, float] = {
    2: 0.4, 3: 0.45, 5: 0.5, 6: 0.25, 7: 0.6, 22: 0.7, 23: 0.25, 28: 0.9, 13: -3.0, 14: -3.0,
}  # fmt: skip
_INSULIN_EFFECT: dict[str, float] = {"No": 0.0, "Steady": 0.12, "Up": 0.3, "Down": 0.45}
_DIAG_GROUP_EFFECT: dict[str, float] = {
    "diabetes": 0.4, "circulatory": 0.12, "neoplasms": 0.3, "respiratory": -0.08, "injury": -0.15,
    "musculoskeletal": -0.25,
}  # fmt: skip
_A1C_EFFECT: dict[str, float] = {"None": 0.12, "Norm": 0.0, ">7": 0.0, ">8": 0.08}
# Per log1p(visit count), per diagnosis, per day, per 8 medications, per age decade, for diabetes medication at all.
_WEIGHTS: dict[str, float] = {
    "number_inpatient": 1.25, "number_emergency": 0.6, "number_outpatient": 0.25, "number_diagnoses": 0.13,
    "time_in_hospital": 0.06, "num_medications": 0.05, "age": 0.1, "diabetesMed": 0.25,
}  # fmt: skip


@dataclass(frozen=True)
class _Marginal:
    """One column's calibrated distribution: values and their probabilities, in a fixed order."""

    values: np.ndarray
    probs: np.ndarray

    def draw(self, u: np.ndarray) -> np.ndarray:
        """Indices into ``values`` for uniforms ``u`` (inverse CDF, so monotone in ``u``)."""
        cdf = np.cumsum(self.probs)
        return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(self.values) - 1)

    def reordered(self, order: list[Any]) -> _Marginal:
        """The same distribution with values sorted by their position in ``order`` (unknown values last)."""
        rank = {v: i for i, v in enumerate(order)}
        idx = sorted(range(len(self.values)), key=lambda i: rank.get(self.values[i], len(rank)))
        return _Marginal(self.values[idx], self.probs[idx])

    def without(self, value: Any) -> _Marginal:
        """The distribution conditioned on not being ``value``."""
        keep = self.values != value
        return _Marginal(self.values[keep], self.probs[keep])


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().items()}


def calibrate(sample: pd.DataFrame) -> dict[str, Any]:
    """Value frequencies of a raw sample (read as strings) for the generator: no row-level data, only counts."""
    categorical = {c: _counts(sample[c]) for c in CATEGORICAL_COLUMNS if c not in ("change", "diabetesMed")}
    categorical["payer_code"] = dict(PUBLISHED_PAYER_CODE_COUNTS)
    categorical["readmitted"] = dict(PUBLISHED_READMITTED_COUNTS)
    counts = {
        c: {str(v): int(k) for v, k in sample[c].astype("int64").value_counts().sort_index().items()}
        for c in schema.COUNT_RANGES
    }
    diagnoses = {}
    for column in schema.DIAG_COLUMNS:
        freq = sample[column].value_counts()
        top = freq.iloc[:TOP_DIAGNOSES]
        diagnoses[column] = {
            "top": {str(code): int(count) for code, count in top.items()},
            "other_count": int(freq.iloc[TOP_DIAGNOSES:].sum()),
            "other_codes": sorted(set(freq.index[TOP_DIAGNOSES:]) - {schema.MISSING}),
        }
    meds = sample[list(schema.MEDICATIONS)]
    steady_only = meds.ne("No").any(axis=1) & ~meds.isin(["Up", "Down"]).any(axis=1)
    return {
        "about": (
            f"Value counts of {len(sample)} rows of diabetic_data.csv (payer_code and readmitted: of the full "
            "published file); regenerate with `python -m airloop.usecases.readmission.synthetic SAMPLE.csv`."
        ),
        "categorical": categorical,
        "counts": counts,
        "diagnoses": diagnoses,
        "change_share_steady_only": round(float(sample.loc[steady_only, "change"].eq("Ch").mean()), 4),
    }


def write_marginals(sample_path: Path, out: Path = MARGINALS_PATH) -> Path:
    """Calibrate on the real sample CSV at ``sample_path`` and write the marginals JSON."""
    sample = pd.read_csv(sample_path, dtype=str, keep_default_na=False)
    out.write_text(json.dumps(calibrate(sample), indent=1) + "\n")
    return out


@lru_cache
def marginals() -> dict[str, Any]:
    """The committed calibration (read once)."""
    return json.loads(MARGINALS_PATH.read_text())


@lru_cache
def _distributions() -> dict[str, _Marginal]:
    """Every column's marginal as arrays, diagnoses with their "other codes" remainder spread evenly."""
    m = marginals()
    out: dict[str, _Marginal] = {}
    for column, freq in m["categorical"].items():
        values = [int(v) for v in freq] if column in schema.ADMIN_ID_COLUMNS else list(freq)
        out[column] = _Marginal(np.array(values, dtype=object), np.array(list(freq.values()), dtype=float))
    for column, freq in m["counts"].items():
        out[column] = _Marginal(np.array([int(v) for v in freq]), np.array(list(freq.values()), dtype=float))
    for column, diag in m["diagnoses"].items():
        other = diag["other_codes"]
        values = [*diag["top"], *other]
        probs = [*diag["top"].values(), *([diag["other_count"] / len(other)] * len(other) if other else [])]
        out[column] = _Marginal(np.array(values, dtype=object), np.array(probs, dtype=float))
    out["discharge_disposition_id"] = out["discharge_disposition_id"].reordered(list(_DISPOSITION_CARE_ORDER))
    out["insulin"] = out["insulin"].reordered(list(_INSULIN_ORDER))
    out["age"] = out["age"].reordered(list(schema.AGE_BUCKETS))
    # generate() writes "?" in diag_2 and diag_3 from number_diagnoses, so the codes themselves are never missing.
    out["diag_2"] = out["diag_2"].without(schema.MISSING)
    out["diag_3"] = out["diag_3"].without(schema.MISSING)
    return out


def _mix(*terms: tuple[float, np.ndarray], noise: np.ndarray) -> np.ndarray:
    """A standard normal latent: weighted standard normals plus independent noise making up the variance."""
    rest = 1.0 - sum(w * w for w, _ in terms)
    return sum((w * z for w, z in terms), np.sqrt(rest) * noise)


def _normal_scores(x: np.ndarray) -> np.ndarray:
    """Standard normal scores of ``x`` by rank (ties share a score)."""
    return ndtri((rankdata(x) - 0.5) / len(x))


def _patients(rng: np.random.Generator, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The patient index of each encounter (in time order) and each patient's number of encounters."""
    # 1 + negative binomial(0.35, 0.46): ~77% single-encounter patients, a long tail, ~0.7 patients per encounter.
    per_patient = 1 + rng.negative_binomial(0.35, 0.46, size=n_rows)
    total = np.cumsum(per_patient)
    n_patients = int(np.searchsorted(total, n_rows)) + 1
    per_patient = per_patient[:n_patients].copy()
    per_patient[-1] -= total[n_patients - 1] - n_rows
    patient_of_row = rng.permutation(np.repeat(np.arange(n_patients), per_patient))
    return patient_of_row, per_patient


def _drifted(latent: dict[str, np.ndarray], dist: dict[str, _Marginal], shift: float) -> dict[str, np.ndarray]:
    """Value indices of the covariate-drifting columns for a latent shift (0 = calibrated marginals)."""
    age = dist["age"].draw(ndtr(latent["age"] + shift))
    patient_age = dist["age"].draw(ndtr(latent["patient_age"] + shift))
    return {
        # Within one bucket of the patient's own, so a patient's encounters never span more than two buckets.
        "age": np.clip(age, patient_age - 1, patient_age + 1),
        "number_inpatient": dist["number_inpatient"].draw(ndtr(latent["number_inpatient"] + shift)),
        "insulin": dist["insulin"].draw(ndtr(latent["insulin"] + shift)),
    }


def _risk(
    f: dict[str, np.ndarray], dist: dict[str, _Marginal], diag_group_effect: np.ndarray, concept: float
) -> np.ndarray:
    """Latent readmission log-odds before noise; ``concept`` weakens number_inpatient, strengthens num_medications."""

    def value(column: str) -> np.ndarray:
        return dist[column].values[f[column]].astype(float)

    def effect(column: str, effects: dict[Any, float]) -> np.ndarray:
        return np.array([effects.get(v, 0.0) for v in dist[column].values])[f[column]]

    inpatient_weight = max(_WEIGHTS["number_inpatient"] * (1.0 - 0.8 * concept), -0.5)
    medication_weight = _WEIGHTS["num_medications"] + 0.4 * concept
    age = np.array([schema.AGE_BUCKETS.index(v) for v in dist["age"].values], dtype=float)[f["age"]]
    return (
        inpatient_weight * np.log1p(value("number_inpatient"))
        + _WEIGHTS["number_emergency"] * np.log1p(value("number_emergency"))
        + _WEIGHTS["number_outpatient"] * np.log1p(value("number_outpatient"))
        + _WEIGHTS["number_diagnoses"] * (value("number_diagnoses") - 7.0)
        + _WEIGHTS["time_in_hospital"] * (value("time_in_hospital") - 4.0)
        + medication_weight * (value("num_medications") - 16.0) / 8.0
        + _WEIGHTS["age"] * (age - 6.0)
        + _WEIGHTS["diabetesMed"] * f["diabetes_med"]
        + effect("discharge_disposition_id", _DISPOSITION_EFFECT)
        + effect("insulin", _INSULIN_EFFECT)
        + effect("A1Cresult", _A1C_EFFECT)
        + diag_group_effect[f["diag_1"]]
    )


def _check(n_rows: int, covariate_drift: float, concept_drift: float) -> None:
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    for name, value in (("covariate_drift", covariate_drift), ("concept_drift", concept_drift)):
        if not 0.0 <= value <= MAX_DRIFT:
            raise ValueError(f"{name} must be between 0 and {MAX_DRIFT}, got {value}")


@dataclass(frozen=True)
class _Encounters:
    """Drift-free draws of one frame: value indices per column plus what the drifting columns and the risk need."""

    patient: np.ndarray
    patient_numbers: np.ndarray
    encounter_ids: np.ndarray
    idx: dict[str, np.ndarray]
    latent: dict[str, np.ndarray]
    oral_used: np.ndarray
    oral_changed: np.ndarray
    change_u: np.ndarray
    risk_noise: np.ndarray


def _encounters(rng: np.random.Generator, n: int, dist: dict[str, _Marginal]) -> _Encounters:
    """Draw everything but the drift-dependent columns; the draws never depend on the drift knobs."""
    patient, per_patient = _patients(rng, n)
    k = len(per_patient)
    p_uniform = rng.random((4, k))
    p_normal = rng.standard_normal((2, k))
    z = rng.standard_normal((11, n))
    # Uniforms: the age jitter, one per independently drawn column, the "Ch" of a new medication, the risk noise.
    u = rng.random((len(_INDEPENDENT_COLUMNS) + 3, n))
    encounter_ids = 10_000 + np.cumsum(rng.geometric(1 / 4_000, size=n))
    patient_numbers = rng.permutation(100 + np.cumsum(rng.geometric(1 / 2_600, size=k)))

    # Frailer patients have more encounters; scored over encounters so the copula keeps calibrated marginals.
    log_visits = np.log(per_patient)
    frailty = 0.5 * (log_visits - log_visits.mean()) / (log_visits.std() or 1.0) + np.sqrt(0.75) * p_normal[0]
    random_effect = 0.4 * frailty + np.sqrt(0.84) * p_normal[1]
    fr, sev = _normal_scores(frailty[patient]), z[3]
    # Age belongs to the patient up to a one-sided jitter (encounters span up to ten years); reflecting at 0 and 1
    # keeps each encounter's quantile uniform, so the age marginal stays calibrated.
    age_u = np.abs(p_uniform[2][patient] + np.where(p_uniform[3] < 0.5, -0.03, 0.03)[patient] * u[0])
    age_z = ndtri(np.clip(np.where(age_u > 1.0, 2.0 - age_u, age_u), 1e-12, 1 - 1e-12))
    latent = {
        "age": age_z,
        "patient_age": ndtri(np.clip(p_uniform[2], 1e-12, 1 - 1e-12))[patient],
        "number_inpatient": _mix((0.55, fr), (0.15, age_z), noise=z[0]),
        "insulin": _mix((0.2, sev), noise=z[10]),
    }

    def copula(column: str, *terms: tuple[float, np.ndarray], noise: np.ndarray) -> np.ndarray:
        return dist[column].draw(ndtr(_mix(*terms, noise=noise)))

    idx = {
        "race": dist["race"].draw(p_uniform[0])[patient],
        "gender": dist["gender"].draw(p_uniform[1])[patient],
        "number_emergency": copula("number_emergency", (0.45, fr), noise=z[1]),
        "number_outpatient": copula("number_outpatient", (0.35, fr), noise=z[2]),
        "time_in_hospital": copula("time_in_hospital", (0.6, sev), (0.1, age_z), noise=z[4]),
        "num_lab_procedures": copula("num_lab_procedures", (0.35, sev), noise=z[5]),
        "num_procedures": copula("num_procedures", (0.2, sev), noise=z[6]),
        "num_medications": copula("num_medications", (0.55, sev), noise=z[7]),
        "number_diagnoses": copula("number_diagnoses", (0.45, age_z), (0.25, sev), noise=z[8]),
        "discharge_disposition_id": copula("discharge_disposition_id", (0.35, age_z), (0.35, sev), noise=z[9]),
    }
    for row, column in enumerate(_INDEPENDENT_COLUMNS, start=1):
        idx[column] = dist[column].draw(u[row])
    oral_used = np.zeros(n, dtype=bool)
    oral_changed = np.zeros(n, dtype=bool)
    for med in _ORAL_MEDICATIONS:
        values = dist[med].values
        oral_used |= idx[med] != list(values).index("No")
        oral_changed |= np.isin(idx[med], np.flatnonzero((values == "Up") | (values == "Down")))
    noise_u = u[-1]
    risk_noise = np.log(noise_u) - np.log1p(-noise_u) + 0.5 * random_effect[patient]
    return _Encounters(
        patient=patient,
        patient_numbers=patient_numbers,
        encounter_ids=encounter_ids,
        idx=idx,
        latent=latent,
        oral_used=oral_used,
        oral_changed=oral_changed,
        change_u=u[-2],
        risk_noise=risk_noise,
    )


def _features(enc: _Encounters, dist: dict[str, _Marginal], shift: float) -> dict[str, np.ndarray]:
    """Value indices of every feature column, the drifting ones at latent ``shift``, plus derived medication flags."""
    drifted = _drifted(enc.latent, dist, shift)
    insulin = dist["insulin"].values[drifted["insulin"]]
    used = enc.oral_used | (insulin != "No")
    changed = enc.oral_changed | (insulin == "Up") | (insulin == "Down")
    # "Ch" also marks a newly started medication, which the published file does not distinguish from "Steady".
    change = changed | (used & (enc.change_u < marginals()["change_share_steady_only"]))
    return enc.idx | drifted | {"diabetes_med": used.astype(float), "change": change}


def _readmitted(
    enc: _Encounters,
    observed: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    dist: dict[str, _Marginal],
    concept: float,
) -> np.ndarray:
    """NO / >30 / <30 from the latent risk, cut where ``reference`` features would give the published shares."""
    diag_groups = icd9_group(pd.Series(dist["diag_1"].values, dtype="str")).to_numpy()
    diag_group_effect = np.array([_DIAG_GROUP_EFFECT.get(g, 0.0) for g in diag_groups])
    risk = _risk(observed, dist, diag_group_effect, concept) + enc.risk_noise
    reference_risk = (
        risk if reference is observed else _risk(reference, dist, diag_group_effect, concept) + enc.risk_noise
    )
    dispositions = dist["discharge_disposition_id"].values[enc.idx["discharge_disposition_id"]].astype(int)
    expired = np.isin(dispositions, list(_EXPIRED_DISPOSITIONS))
    alive = reference_risk[~expired] if (~expired).any() else reference_risk
    target = dist["readmitted"]
    share = dict(zip(target.values, target.probs / target.probs.sum(), strict=True))
    scale = len(risk) / len(alive)
    quantiles = np.clip([1 - scale * (share[">30"] + share["<30"]), 1 - scale * share["<30"]], 0.0, 1.0)
    later, early = np.quantile(alive, quantiles)
    readmitted = np.where(risk > early, "<30", np.where(risk > later, ">30", "NO"))
    readmitted[expired] = "NO"
    return readmitted


def generate(n_rows: int, seed: int, covariate_drift: float = 0.0, concept_drift: float = 0.0) -> pd.DataFrame:
    """``n_rows`` raw encounters (columns ``schema.RAW_COLUMNS``); the same arguments give the same frame.

    Args:
        n_rows: number of encounters.
        seed: seed of ``numpy.random.default_rng``.
        covariate_drift: 0 (none) to 3; 1 is strong. Moves only ``DRIFTED_COLUMNS_COVARIATE`` (and so the
            readmission rate); the same seed gives the same encounters otherwise.
        concept_drift: 0 (none) to 3; changes how the features relate to ``readmitted``, not the features.
    """
    _check(n_rows, covariate_drift, concept_drift)
    dist = _distributions()
    enc = _encounters(np.random.default_rng(seed), n_rows, dist)
    observed = _features(enc, dist, shift=0.5 * covariate_drift)
    reference = _features(enc, dist, shift=0.0) if covariate_drift else observed
    readmitted = _readmitted(enc, observed, reference, dist, concept_drift)

    n_diagnoses = dist["number_diagnoses"].values[observed["number_diagnoses"]]
    columns: dict[str, Any] = {"encounter_id": enc.encounter_ids, "patient_nbr": enc.patient_numbers[enc.patient]}
    for column in schema.RAW_COLUMNS[2:]:
        if column in schema.INTEGER_COLUMNS:
            columns[column] = dist[column].values[observed[column]].astype("int64")
        elif column in ("diag_2", "diag_3"):
            # The file leaves diag_2 and diag_3 "?" exactly when there are fewer diagnoses than that.
            codes = dist[column].values[observed[column]]
            columns[column] = np.where(n_diagnoses < int(column[-1]), schema.MISSING, codes)
        elif column == "change":
            columns[column] = np.where(observed["change"], "Ch", "No")
        elif column == "diabetesMed":
            columns[column] = np.where(observed["diabetes_med"] > 0, "Yes", "No")
        elif column == "readmitted":
            columns[column] = readmitted
        else:
            columns[column] = dist[column].values[observed[column]]
        if column not in schema.INTEGER_COLUMNS:
            columns[column] = pd.Series(columns[column], dtype="str")
    return pd.DataFrame(columns, columns=list(schema.RAW_COLUMNS))


if __name__ == "__main__":
    print(write_marginals(Path(sys.argv[1])))
