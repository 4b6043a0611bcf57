"""The record -> features transform a spec's ``features`` section declares, for models with no code of their own.

``declarative_spec(model_spec)`` turns the section into plain JSON-able data (plus the missing markers);
``DeclarativeFeatures(spec)`` is the Pipeline's feature step built from it. Fitting learns only plain values (the
imputation value of each number, the kept levels of each category), so a fitted model version carries its whole
transform and never reads the YAML again.

Features, numeric ones first (float64, never NaN), then categorical ones (str):

- ``numeric``: the column as a number; missing -> its fitted median, mean or 0 (``impute``).
- ``ordinal``: the position of the value in ``order`` (0..); anything else is missing -> the fitted median.
- ``sums``: the sum of ``columns`` (a missing part adds 0).
- ``counts``: how many of ``columns`` hold one of ``values`` (or, with ``not_values``, anything else; a missing
  value never counts).
- ``categorical``: the value as a string; levels seen fewer than ``min_frequency`` times when fitted, and levels
  never seen, become ``other``; missing -> ``missing``.
- ``code_groups``: the group of a code: the first group one of whose ``prefixes`` starts it, else the first whose
  ``ranges`` ([low, high], inclusive) hold it as a number, else ``default``; missing -> ``missing``.

A raw value is missing when it is None, NaN or one of the missing markers. Values are compared as text, integral
numbers without decimals (``1``, ``1.0`` and ``"1"`` are the level ``"1"``, as a file read as text writes it).
``transform`` and ``transform_records`` call the same scalar functions, so the frame and the serving path agree.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pandas as pd

from airloop.spec.schema import ModelSpec
from airloop.training.record_features import RecordFeatures

DECLARATIVE_VERSION = 1
MISSING = "missing"
POOLED = "other"
SKOPS_TRUSTED_TYPE = "airloop.training.declarative.DeclarativeFeatures"
_SECTIONS = ("numeric", "categorical", "ordinal", "code_groups", "sums", "counts")


def declarative_spec(model_spec: ModelSpec) -> dict[str, Any]:
    """The ``features`` section of ``model_spec`` as plain data, with the missing markers: what the step stores."""
    if model_spec.features.transformer is not None:
        raise ValueError(
            f"model {model_spec.name!r} names its own feature transformer {model_spec.features.transformer!r}; "
            "declarative features need the `numeric`/`categorical`/... lists instead"
        )
    section = model_spec.features.model_dump(mode="json", include=set(_SECTIONS))
    return {
        "version": DECLARATIVE_VERSION,
        "missing_markers": list(model_spec.data.missing_markers),
        **{name: section[name] for name in _SECTIONS},
    }


def as_level(value: Any) -> str:
    """A raw value as a level: integral numbers without a decimal part, everything else as ``str``."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _missing(value: Any, markers: frozenset[str]) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, str) and value in markers


def _number(value: Any, markers: frozenset[str], column: str) -> float:
    """A raw value as a float (NaN when missing); a value that is not a number is an error naming the column."""
    if _missing(value, markers):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"feature column {column!r}: {value!r} is not a number") from None


def _level(value: Any, markers: frozenset[str]) -> str:
    return MISSING if _missing(value, markers) else as_level(value)


def _code_group(value: Any, markers: frozenset[str], group: dict[str, Any]) -> str:
    if _missing(value, markers):
        return MISSING
    text = as_level(value)
    for name, prefixes in group["prefixes"].items():
        if any(text.startswith(prefix) for prefix in prefixes):
            return name
    try:
        number = float(text)
    except ValueError:
        return group["default"]
    for name, ranges in group["ranges"].items():
        if any(low <= number <= high for low, high in ranges):
            return name
    return group["default"]


def _per_value(column: pd.Series, function: Any) -> np.ndarray:
    """``function`` of every value of ``column``, called once per distinct value: the scalar path's values, fast."""
    codes, distinct = pd.factorize(column, use_na_sentinel=False)
    values = distinct.tolist()
    if any(isinstance(value, bool | np.bool_) for value in values):  # factorize takes True for 1: map each value
        mapped = np.empty(len(column), dtype=object)
        mapped[:] = [function(value) for value in column.tolist()]
        return mapped
    mapped = np.empty(len(values), dtype=object)
    mapped[:] = [function(value) for value in values]
    return mapped[codes]


class DeclarativeFeatures(RecordFeatures):
    """Raw records -> model features, as a spec's ``features`` section declares (see the module docstring).

    Args:
        spec: what ``declarative_spec(model_spec)`` returns; required before fitting (None only so scikit-learn can
            clone the step).
    """

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.spec = spec

    # What is declared -------------------------------------------------------------------------------------------

    def _declared(self) -> dict[str, Any]:
        spec = getattr(self, "spec_", None) or self.spec
        if spec is None:
            raise ValueError("DeclarativeFeatures needs its spec: DeclarativeFeatures(declarative_spec(model_spec))")
        if spec.get("version") != DECLARATIVE_VERSION:
            raise ValueError(
                f"declarative features version {spec.get('version')!r} is not implemented "
                f"(this code: {DECLARATIVE_VERSION})"
            )
        return spec

    def feature_kinds(self) -> tuple[list[str], list[str]]:
        """The (numeric, categorical) feature names, known before fitting."""
        spec = self._declared()
        numeric = [f["column"] for f in spec["numeric"]] + [f["column"] for f in spec["ordinal"]]
        numeric += [f["name"] for f in spec["sums"]] + [f["name"] for f in spec["counts"]]
        categorical = [f["column"] for f in spec["categorical"]]
        categorical += [f["name"] or f"{f['column']}_group" for f in spec["code_groups"]]
        seen: set[str] = set()
        for name in [*numeric, *categorical]:
            if name in seen:
                raise ValueError(f"declarative features: two features are called {name!r}")
            seen.add(name)
        return numeric, categorical

    def feature_sources(self) -> dict[str, list[str]]:
        """The raw columns of each feature: its own column, or a sum's or count's ``columns``."""
        spec = self._declared()
        sources = {f["column"]: [f["column"]] for f in [*spec["numeric"], *spec["ordinal"], *spec["categorical"]]}
        sources.update({f["name"]: list(f["columns"]) for f in [*spec["sums"], *spec["counts"]]})
        sources.update({g["name"] or f"{g['column']}_group": [g["column"]] for g in spec["code_groups"]})
        return sources

    def category_domains(self) -> dict[str, list[str]]:
        """Every value a fitted categorical feature can take (kept levels, the pooled level, "missing")."""
        spec = self.spec_
        domains = {column: [*levels, POOLED, MISSING] for column, levels in self.levels_.items()}
        for group in spec["code_groups"]:
            name = group["name"] or f"{group['column']}_group"
            domains[name] = list(dict.fromkeys([*group["prefixes"], *group["ranges"], group["default"], MISSING]))
        return domains

    # Fitting ----------------------------------------------------------------------------------------------------

    def fit(self, x: pd.DataFrame, y: Any = None) -> DeclarativeFeatures:
        """Learn the imputation value of each number and the kept levels of each category from ``x``."""
        self.spec_ = copy.deepcopy(self._declared())
        numeric, categorical = self.feature_kinds()
        markers = frozenset(self.spec_["missing_markers"])
        self.impute_: dict[str, float] = {}
        for feature in self.spec_["numeric"]:
            self.impute_[feature["column"]] = _fill(self._numbers(x, feature["column"]), feature["impute"])
        for feature in self.spec_["ordinal"]:
            self.impute_[feature["column"]] = _fill(self._ordinals(x, feature), "median")
        self.levels_: dict[str, list[str]] = {}
        for feature in self.spec_["categorical"]:
            levels = pd.Series(_per_value(x[feature["column"]], lambda v: _level(v, markers))).value_counts()
            kept = levels[(levels >= feature["min_frequency"]) & (levels.index != MISSING)]
            self.levels_[feature["column"]] = sorted(str(level) for level in kept.index)
        self.feature_names_out_ = [*numeric, *categorical]
        return self

    def _numbers(self, x: pd.DataFrame, column: str) -> np.ndarray:
        values = x[column]
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            return values.to_numpy(dtype="float64", na_value=np.nan)
        markers = frozenset(self.spec_["missing_markers"])
        return _per_value(values, lambda v: _number(v, markers, column)).astype("float64")

    def _ordinals(self, x: pd.DataFrame, feature: dict[str, Any]) -> np.ndarray:
        position = {as_level(v): float(i) for i, v in enumerate(feature["order"])}
        markers = frozenset(self.spec_["missing_markers"])
        function = _ordinal_function(position, markers)
        return _per_value(x[feature["column"]], function).astype("float64")

    # Transforming -----------------------------------------------------------------------------------------------

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        """Features of a frame of raw records: numeric (float64) first, then categorical (str)."""
        spec, markers = self.spec_, frozenset(self.spec_["missing_markers"])
        columns: dict[str, Any] = {}
        for feature in spec["numeric"]:
            name = feature["column"]
            values = self._numbers(x, name)
            columns[name] = np.where(np.isnan(values), self.impute_[name], values)
        for feature in spec["ordinal"]:
            name = feature["column"]
            values = self._ordinals(x, feature)
            columns[name] = np.where(np.isnan(values), self.impute_[name], values)
        for feature in spec["sums"]:
            total = np.zeros(len(x))
            for column in feature["columns"]:
                values = self._numbers(x, column)
                total = total + np.where(np.isnan(values), 0.0, values)
            columns[feature["name"]] = total
        for feature in spec["counts"]:
            function = _count_function(feature, markers)
            hits = [_per_value(x[column], function).astype("float64") for column in feature["columns"]]
            columns[feature["name"]] = np.sum(hits, axis=0) if hits else np.zeros(len(x))
        for feature in spec["categorical"]:
            name = feature["column"]
            function = _category_function(self.levels_[name], markers)
            columns[name] = pd.array(_per_value(x[name], function), dtype="str")
        for group in spec["code_groups"]:
            name = group["name"] or f"{group['column']}_group"
            columns[name] = pd.array(
                _per_value(x[group["column"]], lambda v, g=group: _code_group(v, markers, g)), "str"
            )
        return pd.DataFrame({name: columns[name] for name in self.feature_names_out_}, index=x.index)

    def transform_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Features of raw records given as dicts (the serving path, no pandas): exactly the values of ``transform``."""
        spec, markers = self.spec_, frozenset(self.spec_["missing_markers"])
        numeric = [(f["column"], self.impute_[f["column"]]) for f in spec["numeric"]]
        ordinal = [
            (f["column"], _ordinal_function({as_level(v): float(i) for i, v in enumerate(f["order"])}, markers))
            for f in spec["ordinal"]
        ]
        counts = [(f["name"], f["columns"], _count_function(f, markers)) for f in spec["counts"]]
        categorical = [
            (f["column"], _category_function(self.levels_[f["column"]], markers)) for f in spec["categorical"]
        ]
        groups = [(g["name"] or f"{g['column']}_group", g) for g in spec["code_groups"]]
        out = []
        for record in records:
            features: dict[str, Any] = {}
            for name, fill in numeric:
                value = _number(record.get(name), markers, name)
                features[name] = fill if math.isnan(value) else value
            for name, function in ordinal:
                value = function(record.get(name))
                features[name] = self.impute_[name] if math.isnan(value) else value
            for feature in spec["sums"]:
                total = 0.0
                for column in feature["columns"]:
                    value = _number(record.get(column), markers, column)
                    total = total + (0.0 if math.isnan(value) else value)
                features[feature["name"]] = total
            for name, columns, function in counts:
                features[name] = float(sum(function(record.get(column)) for column in columns))
            for name, function in categorical:
                features[name] = function(record.get(name))
            for name, group in groups:
                features[name] = _code_group(record.get(group["column"]), markers, group)
            out.append({name: features[name] for name in self.feature_names_out_})
        return out

    def get_feature_names_out(self, input_features: Any = None) -> list[str]:
        """Names of the features this step produces."""
        numeric, categorical = self.feature_kinds()
        return [*numeric, *categorical]


def _fill(values: np.ndarray, impute: str) -> float:
    """The imputation value of a fitted number: its median, mean or 0 (0 when nothing was recorded)."""
    present = values[~np.isnan(values)]
    if impute == "zero" or present.size == 0:
        return 0.0
    if impute == "mean":
        return float(present.mean())
    if impute == "median":
        return float(np.median(present))
    raise ValueError(f"unknown imputation {impute!r} (expected median, mean or zero)")


def _ordinal_function(position: dict[str, float], markers: frozenset[str]) -> Any:
    def ordinal(value: Any) -> float:
        return math.nan if _missing(value, markers) else position.get(as_level(value), math.nan)

    return ordinal


def _count_function(feature: dict[str, Any], markers: frozenset[str]) -> Any:
    wanted = {as_level(v) for v in feature["values"]}
    unwanted = {as_level(v) for v in feature["not_values"]}

    def counted(value: Any) -> int:
        if _missing(value, markers):
            return 0
        text = as_level(value)
        return int((not wanted or text in wanted) and text not in unwanted)

    return counted


def _category_function(levels: list[str], markers: frozenset[str]) -> Any:
    kept = set(levels)

    def category(value: Any) -> str:
        level = _level(value, markers)
        return level if level == MISSING or level in kept else POOLED

    return category
