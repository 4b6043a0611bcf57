"""What a model takes and how it is built: the raw encounter record in, the feature transform inside the Pipeline.

A registered model is ``Pipeline([encounter, preprocess, model])``. ``EncounterFeatures`` turns the record as the
hospital has it (the ``diabetic_data.csv`` columns minus the target, "?" or null for missing, ICD-9 codes as strings,
age buckets as "[70-80)") into model features; it stores its transform spec when fitted, so each model version keeps
its own transform. Serving, batch scoring and training all feed it the same records.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from airloop import schema
from airloop.data import transform as tf
from airloop.training.record_features import RecordFeatures, feature_step

#: The model's input: every published column but the target, in the file's order.
INPUT_COLUMNS: tuple[str, ...] = tuple(c for c in schema.RAW_COLUMNS if c != "readmitted")
KINDS = ("hist_gradient_boosting", "logistic_regression")

# MLflow 3.17 stores scikit-learn models with skops, which refuses types it does not know unless trusted here.
# OneHotEncoder keeps its output dtype as a numpy.dtype object, which skops does not trust by default either.
SKOPS_TRUSTED_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "numpy.dtype",
    "airloop.training.features.EncounterFeatures",
]


class EncounterFeatures(RecordFeatures):
    """Raw encounter records -> model features, with the transform spec captured at fit time.

    Args:
        spec: the transform's data (age buckets, ICD-9 ranges, medications, feature lists); the current
            ``airloop.data.transform.default_spec()`` when None.
    """

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.spec = spec

    def fit(self, x: Any, y: Any = None) -> EncounterFeatures:
        """Capture the spec (nothing is learned from the data)."""
        self.spec_ = copy.deepcopy(self.spec) if self.spec is not None else tf.default_spec()
        if self.spec_["version"] != tf.TRANSFORM_VERSION:
            raise ValueError(
                f"transform spec version {self.spec_['version']} is not implemented (this code: {tf.TRANSFORM_VERSION})"
            )
        self.feature_names_out_ = [*self.spec_["numeric_features"], *self.spec_["categorical_features"]]
        return self

    def feature_kinds(self) -> tuple[list[str], list[str]]:
        """The (numeric, categorical) features of the spec."""
        spec = getattr(self, "spec_", None) or self.spec or tf.default_spec()
        return list(spec["numeric_features"]), list(spec["categorical_features"])

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        """Features of a frame of raw records."""
        return tf.features_from_frame(x, self.spec_)

    def transform_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Features of raw records given as dicts (the serving fast path): the same values as ``transform``."""
        return tf.features_from_records(records, self.spec_)

    def input_domains(self) -> dict[str, list[str]]:
        """Closed value sets of input fields that a request must respect (a value outside cannot be scored)."""
        return {"age": list(self.spec_["age_index"])}

    def get_feature_names_out(self, input_features: Any = None) -> list[str]:
        """Names of the features this step produces."""
        return list(self.feature_names_out_)


def pip_requirements() -> list[str]:
    """The exact versions a logged model needs (saves MLflow's slow requirement inference, and is more precise)."""
    from importlib.metadata import version

    pins = [f"{dist}=={version(dist)}" for dist in ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")]
    return [*pins, f"airloop=={version('airloop')}"]


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The records a model takes, from a published dataset frame: the raw columns minus the target, in order."""
    return frame.loc[:, list(INPUT_COLUMNS)]


def target(frame: pd.DataFrame) -> pd.Series:
    """The binary target (readmitted within 30 days)."""
    return frame[tf.TARGET].astype("int64")


def _categories() -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            (
                "onehot",
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=False),
            ),
        ]
    )


def make_pipeline(kind: str, params: dict[str, Any], seed: int) -> Pipeline:
    """The encounter transform + preprocessing + classifier Pipeline for one candidate kind and its hyperparameters."""
    numeric = list(tf.NUMERIC_FEATURES)
    categorical = list(tf.CATEGORICAL_FEATURES)
    if kind == "hist_gradient_boosting":
        preprocess = ColumnTransformer([("num", "passthrough", numeric), ("cat", _categories(), categorical)])
        model = HistGradientBoostingClassifier(random_state=seed, early_stopping=True, **params)
    elif kind == "logistic_regression":
        preprocess = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", _categories(), categorical)])
        model = LogisticRegression(max_iter=2000, **params)
    else:
        raise ValueError(f"unknown candidate kind {kind!r}; known: {KINDS}")
    return Pipeline([("encounter", EncounterFeatures()), ("preprocess", preprocess), ("model", model)])


encounter_step = feature_step


def reference_profile_of(
    pipeline: Pipeline, x_train: pd.DataFrame, test_proba: Any, test_metrics: dict[str, float]
) -> dict[str, Any]:
    """The reference profile training stores with a model (``baseline/baseline_stats.json``): the features its own
    encounter transform makes of its training rows, with its test-set probabilities and metrics."""
    from airloop.monitoring.baseline import reference_profile

    seen = encounter_step(pipeline).transform(x_train)
    return reference_profile(
        seen,
        list(tf.NUMERIC_FEATURES),
        list(tf.CATEGORICAL_FEATURES),
        predictions=test_proba,
        test_metrics=test_metrics,
    )
