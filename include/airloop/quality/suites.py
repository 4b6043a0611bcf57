"""A model's two Great Expectations suites, derived from its spec: one for raw records as the source has them, one
for the feature frame training reads. The derivation lives in ``derived``; a spec adds expectations of its own (by GE
name, or a function of its code) and may name the function that makes its feature frame."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from great_expectations.expectations import Expectation

from airloop.settings import QualitySettings
from airloop.spec import ModelSpec, resolve

Stage = Literal["raw", "features"]
STAGES: tuple[Stage, ...] = ("raw", "features")


def suite_name(spec: ModelSpec, stage: Stage) -> str:
    """``<model>_raw`` or ``<model>_features``: the stored suite's name, one per model and stage."""
    if stage not in STAGES:
        raise ValueError(f"unknown suite stage {stage!r}; expected one of {STAGES}")
    return f"{spec.name}_{stage}"


def features_frame(spec: ModelSpec, published: pd.DataFrame) -> pd.DataFrame:
    """The frame the features suite checks, made from published rows: the spec's own function when it names one,
    else ids + the declarative features + the target."""
    if spec.quality.features_frame:
        return resolve(spec.quality.features_frame)(published)
    from airloop.quality import derived

    return derived.features_frame(spec, published)


def expectations(
    spec: ModelSpec, quality: QualitySettings, stage: Stage, columns: list[str] | None = None
) -> list[Expectation]:
    """The expectations of ``spec``'s ``stage`` suite (``columns``: those of the feature frame)."""
    from airloop.quality import derived

    if stage == "raw":
        return derived.raw_expectations(spec, quality)
    if spec.quality.features_frame:
        # The model makes its own feature frame: the platform checks what every frame has, the model the rest.
        return _own_frame(spec, quality)
    return derived.feature_expectations(spec, quality, list(columns or []))


def _own_frame(spec: ModelSpec, quality: QualitySettings) -> list[Expectation]:
    import great_expectations as gx

    from airloop.quality import derived

    out: list[Expectation] = [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=quality.min_rows, max_value=quality.max_rows),
        gx.expectations.ExpectColumnValuesToBeUnique(column=spec.data.key),
        gx.expectations.ExpectColumnValuesToBeInSet(column=spec.data.target.name, value_set=[0, 1]),
    ]
    out += [derived.expectation("features", entry) for entry in spec.quality.features]
    if spec.quality.features_extra:
        out += resolve(spec.quality.features_extra)(quality)
    return out
