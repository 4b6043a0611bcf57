"""Readmission's feature step: the encounter record as the hospital has it (the ``diabetic_data.csv`` columns minus
the target, "?" or null for missing, ICD-9 codes as strings, age buckets as "[70-80)") -> model features.

Named by ``models/readmission.yaml`` (``features.transformer``). It stores its transform spec when fitted, so each
model version keeps its own transform after the constants of ``transform`` change.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

from airloop.training.record_features import RecordFeatures
from airloop.usecases.readmission import transform as tf


class EncounterFeatures(RecordFeatures):
    """Raw encounter records -> model features, with the transform spec captured at fit time.

    Args:
        spec: the transform's data (age buckets, ICD-9 ranges, medications, feature lists); the current
            ``airloop.usecases.readmission.transform.default_spec()`` when None.
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

    def feature_sources(self) -> dict[str, list[str]]:
        """The raw columns of each feature: diagnosis groups from their code, utilisation from its three visit counts,
        the medication counts from every medication column, every other feature from the column of its name."""
        spec = getattr(self, "spec_", None) or self.spec or tf.default_spec()
        sources = {name: [name] for name in [*spec["numeric_features"], *spec["categorical_features"]]}
        sources.update({f"{column}_group": [column] for column in spec["diag_columns"]})
        sources["service_utilization"] = list(spec["utilization_columns"])
        sources["n_medication_changes"] = list(spec["medications"])
        sources["n_medications_used"] = list(spec["medications"])
        return sources

    def input_domains(self) -> dict[str, list[str]]:
        """Closed value sets of input fields that a request must respect (a value outside cannot be scored)."""
        return {"age": list(self.spec_["age_index"])}

    def get_feature_names_out(self, input_features: Any = None) -> list[str]:
        """Names of the features this step produces."""
        return list(self.feature_names_out_)
