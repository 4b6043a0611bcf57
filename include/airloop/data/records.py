"""Records as a model's spec describes them: the published rows (the spec's filters, its raw columns, the target)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from airloop.spec import ModelSpec


def prepare(spec: ModelSpec, raw: pd.DataFrame) -> pd.DataFrame:
    """The published rows: those the spec's filters keep, exactly as the source records them (its raw columns in
    order, missing markers kept), followed by the binary target ``spec.data.target.name``."""
    keep = pd.Series(True, index=raw.index)
    for row_filter in spec.data.filters:
        column = raw[row_filter.column]
        if row_filter.not_in:
            keep &= ~column.isin(row_filter.not_in)
        if row_filter.in_ is not None:
            keep &= column.isin(row_filter.in_)
    frame = raw.loc[keep, spec.data.raw_columns].reset_index(drop=True)
    target = spec.data.target
    frame[target.name] = frame[target.column].isin(target.positive).astype("int64")
    return frame


def outcome_value(spec: ModelSpec, outcome: int) -> Any:
    """The raw target column's value that stands for a binary ``outcome`` fed back later: the first positive value
    for 1, the first listed non-positive value (else "not " + the positive one) for 0."""
    target = spec.data.target
    if outcome:
        return target.positive[0]
    values = spec.data.column(target.column).values or []
    negatives = [v for v in values if v not in target.positive]
    return negatives[0] if negatives else f"not {target.positive[0]}"


def missing_value(spec: ModelSpec, column: str) -> Any:
    """What the source writes for a value it did not record: the first missing marker for text, else null."""
    kind = spec.data.column(column).type
    if kind in ("string", "category") and spec.data.missing_markers:
        return spec.data.missing_markers[0]
    return None
