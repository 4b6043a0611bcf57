"""What a model takes and how it is built: the raw record in, the model's feature step inside the Pipeline.

A registered model is ``Pipeline([("features", <feature step>), ("preprocess", ...), ("model", ...)])``. The feature
step turns the record as the source has it (the spec's raw columns minus the target) into model features: the
platform's declarative transform of the spec's ``features`` section, or the model's own class named by
``features.transformer``. It is fitted into every model version, so a version keeps its own transform. Serving,
batch scoring and training all feed it the same records.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from airloop.spec import ModelSpec, resolve
from airloop.training.record_features import FEATURE_STEP, RecordFeatures, feature_step

KINDS = ("hist_gradient_boosting", "logistic_regression")

# MLflow 3.17 stores scikit-learn models with skops, which refuses types it does not know unless trusted here.
# OneHotEncoder keeps its output dtype as a numpy.dtype object, which skops does not trust by default either. The
# feature step's own class is added per model (``skops_trusted_types``).
SKOPS_TRUSTED_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "numpy.dtype",
]

__all__ = ["FEATURE_STEP", "KINDS", "feature_step", "make_pipeline", "model_inputs", "target"]


def new_feature_step(spec: ModelSpec) -> RecordFeatures:
    """An unfitted feature step for ``spec``: its own transformer class, or the declarative one of its features."""
    if spec.features.transformer:
        step = resolve(spec.features.transformer)()
        if not isinstance(step, RecordFeatures):
            raise TypeError(f"{spec.features.transformer} is not an airloop RecordFeatures (feature step contract)")
        return step
    from airloop.training.declarative import DeclarativeFeatures, declarative_spec

    return DeclarativeFeatures(declarative_spec(spec))


def skops_trusted_types(pipeline: Any) -> list[str]:
    """The types MLflow's skops format must trust to save and load ``pipeline``: the base ones + its feature step."""
    step = feature_step(pipeline)
    own = [f"{type(step).__module__}.{type(step).__qualname__}"] if step is not None else []
    return [*SKOPS_TRUSTED_TYPES, *own]


def pip_requirements() -> list[str]:
    """The exact versions a logged model needs (saves MLflow's slow requirement inference, and is more precise)."""
    from importlib.metadata import version

    pins = [f"{dist}=={version(dist)}" for dist in ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")]
    return [*pins, f"airloop=={version('airloop')}"]


def model_inputs(spec: ModelSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The records a model takes, from a published dataset frame: the raw columns minus the target, in order."""
    return frame.loc[:, spec.data.input_columns]


def target(spec: ModelSpec, frame: pd.DataFrame) -> pd.Series:
    """The binary target of a published dataset frame."""
    return frame[spec.data.target.name].astype("int64")


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


def make_pipeline(spec: ModelSpec, kind: str, params: dict[str, Any], seed: int) -> Pipeline:
    """The model's feature step + preprocessing + classifier Pipeline for one candidate kind and its hyperparameters."""
    step = new_feature_step(spec)
    numeric, categorical = step.feature_kinds()
    if kind == "hist_gradient_boosting":
        preprocess = ColumnTransformer([("num", "passthrough", numeric), ("cat", _categories(), categorical)])
        model = HistGradientBoostingClassifier(random_state=seed, early_stopping=True, **params)
    elif kind == "logistic_regression":
        preprocess = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", _categories(), categorical)])
        model = LogisticRegression(max_iter=2000, **params)
    else:
        raise ValueError(f"unknown candidate kind {kind!r}; known: {KINDS}")
    return Pipeline([(FEATURE_STEP, step), ("preprocess", preprocess), ("model", model)])


def reference_profile_of(
    pipeline: Pipeline,
    x_train: pd.DataFrame,
    test_proba: Any,
    test_metrics: dict[str, float],
    importance: dict[str, float] | None = None,
    y_test: Any = None,
    x_test: pd.DataFrame | None = None,
    segments: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """The reference profile training stores with a model (``baseline/baseline_stats.json``): the features its own
    feature step makes of its training rows, with its test-set probabilities, metrics, outcome counts and the
    features' importance (:func:`feature_importance`)."""
    from airloop.monitoring.baseline import reference_profile

    step = feature_step(pipeline)
    numeric, categorical = step.feature_kinds()
    counts = None
    if y_test is not None:
        positives = int(pd.Series(y_test).sum())
        counts = {"positives": positives, "negatives": len(y_test) - positives}
    profile = reference_profile(
        step.transform(x_train),
        numeric,
        categorical,
        predictions=test_proba,
        test_metrics=test_metrics,
        importance=importance,
        test_counts=counts,
    )
    if segments and x_test is not None and y_test is not None:
        from airloop.monitoring.segments import reference_segments

        profile["segments"] = reference_segments(
            step.transform(x_test),
            profile,
            list(segments),
            pd.Series(y_test).to_numpy(dtype=float),
            pd.Series(test_proba).to_numpy(dtype=float),
        )
    return profile


def feature_importance(pipeline: Pipeline, x: pd.DataFrame, y: Any, seed: int, repeats: int = 2) -> dict[str, float]:
    """Permutation importance (ROC AUC drop) of each *model feature*: the feature step's output is permuted column by
    column and fed to the rest of the pipeline, so the names are those the reference profile and drift use."""
    from sklearn.inspection import permutation_importance

    step = feature_step(pipeline)
    if step is None:  # no feature step: the inputs are the features
        features, rest = x, pipeline
    else:
        features, rest = step.transform(x), pipeline[1:]
    result = permutation_importance(rest, features, y, scoring="roc_auc", n_repeats=repeats, random_state=seed)
    return {str(c): float(m) for c, m in zip(features.columns, result.importances_mean, strict=True)}
