"""Model inputs and scikit-learn Pipelines: ColumnTransformer preprocessing plus one classifier per candidate kind."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from airloop.data.transform import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET

INPUT_COLUMNS: tuple[str, ...] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
KINDS = ("hist_gradient_boosting", "logistic_regression")

# MLflow 3.17 stores scikit-learn models with skops, which refuses types it does not know unless trusted here.
# OneHotEncoder keeps its output dtype as a numpy.dtype object, which skops does not trust by default either.
SKOPS_TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", "numpy.dtype"]


def pip_requirements() -> list[str]:
    """The exact versions a logged model needs (saves MLflow's slow requirement inference, and is more precise)."""
    from importlib.metadata import version

    return [f"{dist}=={version(dist)}" for dist in ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")]


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a model sees, in a fixed order: numbers as float64, categories as str (missing -> "missing")."""
    inputs = frame.loc[:, list(INPUT_COLUMNS)].copy()
    inputs[list(NUMERIC_FEATURES)] = inputs[list(NUMERIC_FEATURES)].astype("float64")
    for column in CATEGORICAL_FEATURES:
        inputs[column] = inputs[column].astype(object).where(inputs[column].notna(), "missing").astype(str)
    return inputs


def target(frame: pd.DataFrame) -> pd.Series:
    """The binary target (readmitted within 30 days)."""
    return frame[TARGET].astype("int64")


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
    """A preprocessing + classifier Pipeline for one candidate kind and its hyperparameters."""
    numeric = list(NUMERIC_FEATURES)
    categorical = list(CATEGORICAL_FEATURES)
    if kind == "hist_gradient_boosting":
        preprocess = ColumnTransformer([("num", "passthrough", numeric), ("cat", _categories(), categorical)])
        model = HistGradientBoostingClassifier(random_state=seed, early_stopping=True, **params)
    elif kind == "logistic_regression":
        preprocess = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", _categories(), categorical)])
        model = LogisticRegression(max_iter=2000, **params)
    else:
        raise ValueError(f"unknown candidate kind {kind!r}; known: {KINDS}")
    return Pipeline([("preprocess", preprocess), ("model", model)])
