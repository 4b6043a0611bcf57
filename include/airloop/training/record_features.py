"""The contract of a model's feature step: raw records in (as the source has them), model features out.

Every registered model is ``Pipeline([("features", <RecordFeatures>), ("preprocess", ...), ("model", ...)])``. The
step is either the platform's declarative transform (``airloop.training.declarative``, from a spec's ``features``
section) or a model's own class named by its spec (``features.transformer``). Serving, batch scoring, training and
monitoring use only what is declared here, so they never know which model they hold.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

FEATURE_STEP = "features"


class RecordFeatures(TransformerMixin, BaseEstimator):
    """Raw records -> model features. Numeric features come out as float64 (no NaN unless the model's estimator
    takes NaN), categorical ones as strings ("missing" when not recorded)."""

    def feature_kinds(self) -> tuple[list[str], list[str]]:
        """The (numeric, categorical) feature names this step makes: known before it is fitted."""
        raise NotImplementedError

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        """Features of a frame of raw records: numeric columns first, then categorical ones."""
        raise NotImplementedError

    def transform_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Features of raw records given as dicts (the serving fast path): exactly the values of ``transform``."""
        raise NotImplementedError

    def feature_sources(self) -> dict[str, list[str]]:
        """The raw columns each feature is computed from (explanations add contributions back up to them); by
        default each feature comes from the raw column of its own name."""
        numeric, categorical = self.feature_kinds()
        return {name: [name] for name in [*numeric, *categorical]}

    def input_domains(self) -> dict[str, list[str]]:
        """Closed value sets of input fields a request must respect (a value outside cannot be scored)."""
        return {}

    def get_feature_names_out(self, input_features: Any = None) -> list[str]:
        """Names of the features this step produces."""
        numeric, categorical = self.feature_kinds()
        return [*numeric, *categorical]


def feature_step(pipeline: Any) -> RecordFeatures | None:
    """The fitted feature step at the head of a registered Pipeline (None for a model without one)."""
    steps = getattr(pipeline, "steps", None)
    if steps and isinstance(steps[0][1], RecordFeatures):
        return steps[0][1]
    return None
