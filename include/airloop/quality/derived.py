"""Great Expectations suites derived from a model spec: the raw records as the source has them, and the feature frame.

The schema (``data.columns``) says most of what a batch must satisfy: the ordered columns, a unique key, integer and
float types, not-null, value sets, ranges and patterns. A spec adds what the schema cannot say as GE expectations by
name (``quality.raw``/``quality.features``) or as an entry point returning expectations (``*_extra``). Only tasks
import this module (Great Expectations is heavy), never a DAG file while it is parsed.
"""

from __future__ import annotations

from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.expectations import Expectation

from airloop.settings import QualitySettings
from airloop.spec.loader import resolve
from airloop.spec.schema import ColumnSpec, ExpectationSpec, ModelSpec
from airloop.training.declarative import MISSING, POOLED, DeclarativeFeatures, as_level, declarative_spec


class UnknownExpectation(ValueError):
    """A spec names an expectation Great Expectations does not have, or gives it arguments it refuses."""


def _class_name(expectation_type: str) -> str:
    """``expect_column_values_to_be_between`` -> ``ExpectColumnValuesToBeBetween``."""
    return "".join(part.capitalize() for part in expectation_type.split("_"))


def expectation(section: str, entry: ExpectationSpec) -> Expectation:
    """The GE expectation a spec entry names (``type`` and ``kwargs``); ``section`` says where it was listed."""
    name = _class_name(entry.type)
    kind = getattr(gx.expectations, name, None)
    if not (isinstance(kind, type) and issubclass(kind, Expectation)) or kind is Expectation:
        raise UnknownExpectation(
            f"quality.{section}: Great Expectations has no expectation {entry.type!r} (no gx.expectations.{name})"
        )
    try:
        return kind(**entry.kwargs)
    except (TypeError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        first = str(error).splitlines()
        raise UnknownExpectation(
            f"quality.{section}: {entry.type} refuses its arguments {entry.kwargs!r}: {' '.join(first[:3])}"
        ) from error


def _extra(entry_point: str | None, quality: QualitySettings) -> list[Expectation]:
    return list(resolve(entry_point)(quality)) if entry_point else []


def _value_set(column: ColumnSpec, markers: list[str]) -> list[Any]:
    """A column's closed values as the raw frame holds them (text for string/category), markers when nullable."""
    assert column.values is not None
    if column.type in ("string", "category"):
        values: list[Any] = [str(v) for v in column.values]
        return [*values, *markers] if column.nullable else values
    return list(column.values)


def _null_is_missing(column: ColumnSpec, markers: list[str]) -> bool:
    """Whether a missing value of this column is a null: numbers always, text only when the spec has no markers."""
    return column.nullable and (column.type in ("integer", "float") or not markers)


def _common(spec: ModelSpec, quality: QualitySettings, columns: list[str]) -> list[Expectation]:
    return [
        gx.expectations.ExpectTableColumnsToMatchOrderedList(column_list=list(columns)),
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=quality.min_rows, max_value=quality.max_rows),
        gx.expectations.ExpectColumnValuesToBeUnique(column=spec.data.key),
    ]


def raw_expectations(spec: ModelSpec, quality: QualitySettings) -> list[Expectation]:
    """Expectations on raw records exactly as the source has them, derived from ``spec.data.columns``."""
    data, markers = spec.data, list(spec.data.missing_markers)
    out = _common(spec, quality, data.raw_columns)
    types = {"integer": "int64", "float": "float64"}
    out += [
        gx.expectations.ExpectColumnValuesToBeOfType(column=c.name, type_=types[c.type])
        for c in data.columns
        if c.type in types
    ]
    out += [
        gx.expectations.ExpectColumnValuesToNotBeNull(column=c.name)
        for c in data.columns
        if not _null_is_missing(c, markers)
    ]
    out += [
        gx.expectations.ExpectColumnValuesToBeInSet(column=c.name, value_set=_value_set(c, markers))
        for c in data.columns
        if c.values is not None
    ]
    out += [
        gx.expectations.ExpectColumnValuesToBeBetween(column=c.name, min_value=c.min, max_value=c.max)
        for c in data.columns
        if c.min is not None or c.max is not None
    ]
    out += [
        gx.expectations.ExpectColumnValuesToMatchRegex(column=c.name, regex=c.pattern)
        for c in data.columns
        if c.pattern is not None
    ]
    out += [expectation("raw", entry) for entry in spec.quality.raw]
    return out + _extra(spec.quality.raw_extra, quality)


def features_frame(spec: ModelSpec, published: pd.DataFrame) -> pd.DataFrame:
    """The frame the features suite checks: id columns, the declarative features fitted on these rows, the target."""
    step = DeclarativeFeatures(declarative_spec(spec)).fit(published)
    features = step.transform(published)
    ids, target = spec.data.id_columns, spec.data.target.name
    clash = sorted(set(features.columns) & {*ids, target})
    if clash:
        raise ValueError(f"model {spec.name!r}: features {clash} have the name of an id or the target column")
    parts = [published[ids], features, published[[target]].astype("int64")]
    return pd.concat([part.reset_index(drop=True) for part in parts], axis=1)


def _feature_domains(spec: ModelSpec) -> dict[str, list[str]]:
    """Categorical features whose every value the spec knows: listed values, the pooled level, "missing"."""
    declared = declarative_spec(spec)
    domains = {}
    for feature in declared["categorical"]:
        column = spec.data.column(feature["column"])
        if column.values is not None:
            levels = [as_level(v) for v in column.values]
            domains[column.name] = list(dict.fromkeys([*levels, POOLED, MISSING]))
    for group in declared["code_groups"]:
        name = group["name"] or f"{group['column']}_group"
        domains[name] = list(dict.fromkeys([*group["prefixes"], *group["ranges"], group["default"], MISSING]))
    return domains


def feature_expectations(spec: ModelSpec, quality: QualitySettings, columns: list[str]) -> list[Expectation]:
    """Expectations on the frame ``features_frame`` makes (its ``columns`` in order)."""
    target = spec.data.target.name
    out = _common(spec, quality, columns)
    out += [gx.expectations.ExpectColumnValuesToNotBeNull(column=c) for c in columns]
    out.append(gx.expectations.ExpectColumnValuesToBeInSet(column=target, value_set=[0, 1]))
    numeric, _ = DeclarativeFeatures(declarative_spec(spec)).feature_kinds()
    out += [gx.expectations.ExpectColumnValuesToBeOfType(column=c, type_="float64") for c in numeric if c in columns]
    out += [
        gx.expectations.ExpectColumnValuesToBeBetween(column=f.column, min_value=0, max_value=len(f.order) - 1)
        for f in spec.features.ordinal
        if f.column in columns
    ]
    out += [
        gx.expectations.ExpectColumnValuesToBeInSet(column=c, value_set=values)
        for c, values in _feature_domains(spec).items()
        if c in columns
    ]
    out += [expectation("features", entry) for entry in spec.quality.features]
    return out + _extra(spec.quality.features_extra, quality)
