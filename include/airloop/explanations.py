"""Why a model version scored a record as it did: signed contributions of the record's own fields, in log-odds.

``Explainer.of(pipeline, compiled)`` is built once per loaded model version (serving as it loads the version, batch
scoring once per job) from the registered Pipeline ``[feature step, ColumnTransformer,
estimator]``. For every record it gives the model's score in its link space (log-odds, ``decision_function``), a
base value and one contribution per *factor*, such that ``base_value + sum(contributions) == score`` (to rounding):

- **HistGradientBoosting**: exact Shapley values of the trees (TreeSHAP, the ``shap`` package's compiled
  TreeExplainer, path-dependent: the base value is the trees' expected score over the training rows they saw).
- **LogisticRegression**: the exact linear decomposition ``coef * (x - mean)`` on the model's input matrix, the
  mean being that of the training rows (stored on the estimator by :func:`remember_training_rows` when the version
  was trained; a version trained before that explains against the all-zero input: the standardised numbers' mean
  and no category, and says so in ``reference``).

Contributions of the estimator's input columns are summed back to what the client sent: every one-hot column of a
categorical feature to that feature, every feature to the raw column it is computed from (the feature step declares
it: ``RecordFeatures.feature_sources``). **A feature computed from several raw columns** (a sum such as readmission's
``service_utilization`` or churn's ``service_issues``, a count over medications) is a factor of its own, named by the
feature and listing its columns: its contribution is not split between them, because a tree's Shapley value of a sum
has no unique split, and an invented one would be a number nobody can check. Additivity holds either way.

A confidence band for the probability: logistic regression gives one (a 95% Laplace band: the coefficients'
posterior covariance ``(X'WX + I/C)^-1`` of the training rows, stored with the version, propagated to the record's
log-odds); gradient-boosted trees give none (``band`` is null with the reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from airloop.training.record_features import feature_step

LINK = "logit"
TOP_FACTORS = 5
BAND_LEVEL = 0.95
_Z = 1.959963984540054  # the standard normal's 97.5% quantile
REFERENCE_ATTRIBUTE = "airloop_reference_"  # training mean of the estimator's input matrix (logistic regression)
COVARIANCE_ATTRIBUTE = "airloop_covariance_"  # Laplace covariance of [intercept, coef] (logistic regression)
NO_TREE_BAND = "gradient-boosted trees give no interval for one record's probability"
NO_STORED_BAND = "this version was trained before bands were stored with logistic regression: retrain for one"


class ExplanationUnavailable(ValueError):
    """The model version's shape or estimator cannot be explained exactly; the message says which part."""


@dataclass(frozen=True)
class FactorSpec:
    """One factor: a raw column the record carries, or a feature computed from several of them."""

    name: str
    columns: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def derived(self) -> bool:
        """A feature built from several raw columns (reported under its own name)."""
        return len(self.columns) != 1


@dataclass
class Explainer:
    """The explanation of one loaded model version (see the module docstring)."""

    method: str
    reference: str
    factors: list[FactorSpec]
    grouping: np.ndarray  # estimator input column -> factor, 0/1 (width x factors)
    numeric: frozenset[str]
    step: Any
    preprocess: Any
    compiled: Any | None
    estimator: Any
    input_columns: list[str] | None = None
    tree: Any | None = None
    coef: np.ndarray | None = None
    reference_input: np.ndarray | None = None  # logistic regression: the input row contributions are measured from
    base: float = 0.0
    covariance: np.ndarray | None = None
    band_reason: str | None = None

    # Building ------------------------------------------------------------------------------------------------------

    @classmethod
    def of(cls, pipeline: Any, compiled: Any | None = None, input_columns: list[str] | None = None) -> Explainer:
        """The explainer of a fitted registered Pipeline; ExplanationUnavailable names what it cannot explain."""
        steps = getattr(pipeline, "steps", None)
        if not steps or len(steps) < 2:
            raise ExplanationUnavailable(f"not a Pipeline of preprocessing and an estimator: {type(pipeline).__name__}")
        step = feature_step(pipeline)
        middle = steps[1:-1] if step is not None else steps[:-1]
        if len(middle) != 1:
            raise ExplanationUnavailable(f"expected one preprocessing step, found {[n for n, _ in middle]}")
        preprocess, estimator = middle[0][1], steps[-1][1]
        numeric = step.feature_kinds()[0] if step is not None else []
        sources = step.feature_sources() if step is not None else {}
        columns = _input_features(preprocess)
        factors, index = _factors([c for c in dict.fromkeys(columns)], sources)
        grouping = np.zeros((len(columns), len(factors)))
        grouping[np.arange(len(columns)), [index[c] for c in columns]] = 1.0
        explainer = cls(
            method="",
            reference="",
            factors=factors,
            grouping=grouping,
            numeric=frozenset(numeric),
            step=step,
            preprocess=preprocess,
            compiled=compiled,
            estimator=estimator,
            input_columns=input_columns,
        )
        kind = type(estimator).__name__
        if kind == "HistGradientBoostingClassifier":
            explainer._tree_shap(estimator)
        elif kind == "LogisticRegression":
            explainer._linear(estimator, len(columns))
        else:
            raise ExplanationUnavailable(f"no exact explanation of a {kind} (known: HistGradientBoosting, logistic)")
        return explainer

    def _tree_shap(self, estimator: Any) -> None:
        import shap

        if getattr(estimator, "n_trees_per_iteration_", 1) != 1:
            raise ExplanationUnavailable("only binary HistGradientBoosting classifiers are explained")
        self.tree = shap.TreeExplainer(estimator, model_output="raw", feature_perturbation="tree_path_dependent")
        self.base = float(np.ravel(self.tree.expected_value)[0])
        self.method, self.reference = "tree_shap", "the trees' expected score over their training rows"
        self.band_reason = NO_TREE_BAND

    def _linear(self, estimator: Any, width: int) -> None:
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        if coef.shape != (1, width):
            raise ExplanationUnavailable(f"expected one row of {width} coefficients, got {coef.shape}")
        self.coef = coef[0]
        reference = getattr(estimator, REFERENCE_ATTRIBUTE, None)
        if reference is None:
            reference, self.reference = np.zeros(width), "the all-zero input (mean numbers, no category)"
        else:
            reference, self.reference = np.asarray(reference, dtype=np.float64), "the training rows' mean"
        self.base = float(np.ravel(estimator.intercept_)[0] + self.coef @ reference)
        self.reference_input = reference
        self.method = "linear"
        self.covariance = getattr(estimator, COVARIANCE_ATTRIBUTE, None)
        self.band_reason = None if self.covariance is not None else NO_STORED_BAND

    # Explaining ----------------------------------------------------------------------------------------------------

    def contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(per-factor contributions (rows x factors), score in log-odds per row) of the estimator's input rows."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if self.tree is not None:
            values = np.asarray(self.tree.shap_values(matrix, check_additivity=False), dtype=np.float64)
            values = values.reshape(len(matrix), -1)
        else:
            values = (matrix - self.reference_input) * self.coef
        per_factor = values @ self.grouping
        return per_factor, self.base + values.sum(axis=1)

    def band(self, matrix: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
        """(low, high) probability per row at ``BAND_LEVEL``, or None when the model gives none."""
        if self.covariance is None:
            return None
        design = np.hstack([np.ones((len(matrix), 1)), np.asarray(matrix, dtype=np.float64)])
        spread = _Z * np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", design, self.covariance, design), 0.0))
        return np.column_stack([_sigmoid(scores - spread), _sigmoid(scores + spread)])

    def explain_records(self, records: list[dict[str, Any]], top: int = TOP_FACTORS) -> list[dict[str, Any]]:
        """The explanation of each raw record (dicts as the client sent them), in order."""
        if not records:
            return []
        features = self.step.transform_records(records) if self.step is not None else records
        matrix = self._matrix_of_records(features)
        return self._answers(records, features, matrix, top)

    def explain_frame(self, frame: pd.DataFrame, top: int = TOP_FACTORS) -> list[dict[str, Any]]:
        """The explanation of each row of a frame of raw records (the batch path), in order."""
        if frame.empty:
            return []
        features = self.step.transform(frame) if self.step is not None else frame
        if self.compiled is not None:
            matrix = self.compiled.features_frame_matrix(features)
        else:
            matrix = _dense(self.preprocess.transform(features))
        records = _rows(frame)
        return self._answers(records, _rows(features), matrix, top)

    def _matrix_of_records(self, features: list[dict[str, Any]]) -> np.ndarray:
        if self.compiled is not None:
            return self.compiled.features_matrix(features)
        names = list(getattr(self.preprocess, "feature_names_in_", [])) or list(features[0])
        return _dense(self.preprocess.transform(pd.DataFrame.from_records(features, columns=names)))

    def _answers(
        self, records: list[dict[str, Any]], features: list[dict[str, Any]], matrix: np.ndarray, top: int
    ) -> list[dict[str, Any]]:
        per_factor, scores = self.contributions(matrix)
        bands = self.band(matrix, scores)
        top = max(0, min(top, len(self.factors)))
        ranked = np.argsort(-np.abs(per_factor), axis=1, kind="stable")[:, :top]
        totals = per_factor.sum(axis=1)
        shown = np.take_along_axis(per_factor, ranked, axis=1).sum(axis=1)
        answers = []
        for i, record in enumerate(records):
            row = per_factor[i]
            factors = [self._factor(self.factors[j], record, features[i], float(row[j])) for j in ranked[i]]
            answer: dict[str, Any] = {
                "method": self.method,
                "link": LINK,
                "base_value": self.base,
                "score": float(scores[i]),
                "factors": factors,
                "other_factors": float(totals[i] - shown[i]),
                "reference": self.reference,
            }
            if bands is None:
                answer["band"] = None
                answer["band_unavailable"] = self.band_reason
            else:
                answer["band"] = {"level": BAND_LEVEL, "low": float(bands[i, 0]), "high": float(bands[i, 1])}
            answers.append(answer)
        return answers

    def _factor(
        self, spec: FactorSpec, record: dict[str, Any], features: dict[str, Any], contribution: float
    ) -> dict[str, Any]:
        if spec.derived:
            value = _plain(features.get(spec.features[0])) if len(spec.features) == 1 else None
            shown = "" if value is None else f" = {_text(value)}"
            parts = " + ".join(spec.columns) if len(spec.columns) <= 4 else f"{len(spec.columns)} columns"
            label = f"{spec.name}{shown} (from {parts})"
        else:
            column = spec.columns[0]
            value = _plain(record.get(column))
            notes = [self._note(feature, value, features.get(feature)) for feature in spec.features]
            notes = [n for n in dict.fromkeys(notes) if n]
            label = f"{column} = {_text(value)}" + (f" ({', '.join(notes)})" if notes else "")
        return {
            "factor": spec.name,
            "columns": list(spec.columns),
            "value": value,
            "label": label,
            "contribution": contribution,
        }

    def _note(self, feature: str, raw: Any, value: Any) -> str:
        """What the model made of a raw value, when that is not the value itself (a group, a pooled level, an
        imputed number)."""
        value = _plain(value)
        if value is None:
            return ""
        if feature in self.numeric:
            return f"imputed {_text(value)}" if raw is None else ""
        return "" if str(value) == _text(raw) or (raw is None and value == "missing") else str(value)


def remember_training_rows(pipeline: Any, x_train: pd.DataFrame) -> None:
    """Store what a logistic regression's explanation needs from its training rows on its estimator: the mean of
    the model's input matrix (the reference of ``coef * (x - mean)``) and the Laplace covariance of its coefficients
    (the probability's band). Other estimators need nothing; a shape this module cannot explain is left alone."""
    steps = getattr(pipeline, "steps", None)
    if not steps or type(steps[-1][1]).__name__ != "LogisticRegression":
        return
    estimator = steps[-1][1]
    matrix = _dense(pipeline[:-1].transform(x_train)).astype(np.float64)
    design = np.hstack([np.ones((len(matrix), 1)), matrix])
    p = _sigmoid(estimator.decision_function(matrix))
    hessian = (design * (p * (1.0 - p))[:, None]).T @ design
    penalty = 1.0 / float(estimator.C) if getattr(estimator, "penalty", "l2") in ("l2", "deprecated") else 1e-8
    hessian[1:, 1:] += np.eye(matrix.shape[1]) * penalty
    setattr(estimator, REFERENCE_ATTRIBUTE, matrix.mean(axis=0))
    setattr(estimator, COVARIANCE_ATTRIBUTE, np.linalg.pinv(hessian, hermitian=True))


def _input_features(preprocess: Any) -> list[str]:
    """The model feature behind each column of the ColumnTransformer's output, in output order."""
    transformers = getattr(preprocess, "transformers_", None)
    indices = getattr(preprocess, "output_indices_", None)
    if transformers is None or indices is None:
        raise ExplanationUnavailable(f"preprocessing is not a fitted ColumnTransformer: {type(preprocess).__name__}")
    width = max((s.stop for s in indices.values()), default=0)
    owners: list[str | None] = [None] * width
    for name, transformer, columns in transformers:
        chosen = indices.get(name, slice(0, 0))
        size = chosen.stop - chosen.start
        if size == 0:
            continue
        columns = list(columns)
        if size == len(columns):
            owners[chosen] = columns
            continue
        last = transformer.steps[-1][1] if hasattr(transformer, "steps") else transformer
        sizes = getattr(last, "_n_features_outs", None)
        if sizes is None or int(sum(sizes)) != size or len(sizes) != len(columns):
            raise ExplanationUnavailable(f"cannot tell which feature each output column of {name!r} comes from")
        start = chosen.start
        for column, count in zip(columns, sizes, strict=True):
            owners[start : start + count] = [column] * count
            start += count
    if any(owner is None for owner in owners):
        raise ExplanationUnavailable("some output columns of the preprocessing come from no feature")
    return [str(owner) for owner in owners]


def _factors(features: list[str], sources: dict[str, list[str]]) -> tuple[list[FactorSpec], dict[str, int]]:
    """Factors from model features: features of one raw column merge under it; a multi-column feature stands alone."""
    by_name: dict[str, tuple[tuple[str, ...], list[str]]] = {}
    index: dict[str, str] = {}
    for feature in features:
        columns = tuple(sources.get(feature) or (feature,))
        name = columns[0] if len(columns) == 1 else feature
        key = name if len(columns) == 1 else f"\x00{feature}"  # a derived factor never merges with a raw column
        by_name.setdefault(key, (columns, []))[1].append(feature)
        index[feature] = key
    keys = list(by_name)
    factors = [FactorSpec(key.lstrip("\x00"), by_name[key][0], tuple(by_name[key][1])) for key in keys]
    position = {key: i for i, key in enumerate(keys)}
    return factors, {feature: position[key] for feature, key in index.items()}


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(values, dtype=np.float64)))


def _dense(matrix: Any) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float64)


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _plain(value: Any) -> Any:
    """A JSON scalar of a record's value (numpy scalars unwrapped, NaN as None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _text(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6g}"
    return str(value)
