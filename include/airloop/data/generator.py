"""Synthetic raw records derived from a model spec's schema: any spec gets a learnable stream with drift knobs.

A model whose spec names no ``data.generator`` of its own gets its synthetic data here, from ``data.columns`` alone:

- **Columns** follow their schema: a closed ``values`` set is drawn with ``weights`` (default equal), a number from
  a normal with ``mean``/``std`` (defaults: the middle of [min, max] and a sixth of it) clipped to [min, max]
  (integers rounded). ``nullable`` columns are missing for ``missing_share`` of rows: the first of
  ``data.missing_markers`` in string/category columns (None without markers), NaN in float columns. Integer columns
  are never missing (int64 has no missing value). A free string column (no ``values``) gets ten skewed levels
  ``<name>_1``..``<name>_10`` and carries no effect; a ``pattern`` is not generated from. A string ``event_time``
  column gets ISO dates over a year.
- **Identity**: the ``key`` is unique (1..n, or ``<key>-<n>`` strings); the ``entity`` repeats (1 + Poisson(0.5)
  records each, ~1.5 on average), its records scattered through the frame.
- **Target**: a latent risk sums ``effect`` x standardised value over the columns with an effect (a listed value
  scores from -1 for the first to +1 for the last; missing scores 0), plus logistic noise. The target column gets a
  ``target.positive`` value where the latent is above an intercept that reproduces the positive share of its
  ``weights`` (solved once per spec on a fixed reference sample, so it is a property of the spec, not the batch).
- **Covariate drift** (0..3) moves the columns with an effect: numbers by 0.5 x drift x std, listed values tilted
  toward the later levels; the positive share moves with them, as it would.
- **Concept drift** (0..3) leaves every feature column as the undrifted frame of the same seed has it and changes
  the relation: effects are scaled by 1 - 2 x drift / 3 (weaker, gone at 1.5, reversed at 3); the intercept is
  solved again so the positive share stays.

Every column draws from its own seeded stream, so the same arguments give the same frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd

from airloop.spec.schema import ColumnSpec, DataSpec, ModelSpec

MAX_DRIFT = 3.0
EXTRA_RECORDS_PER_ENTITY = 0.5  # Poisson mean of records beyond the first: ~1.5 records per entity
COVARIATE_SHIFT = 0.5  # a number moves by this many standard deviations per unit of covariate drift
CATEGORY_TILT = 0.5  # log-odds tilt per unit of covariate drift between the first and last listed value
REFERENCE_ROWS = 20_000  # rows of the undrifted reference sample the intercept is solved on
REFERENCE_SEED = 20_260_101
EVENT_TIME_START = date(2025, 1, 1)  # string event times are ISO dates over the year from here
# Stream ids beyond the columns' indexes: the target's noise and outcome choice, the entities' layout.
_TARGET_STREAM = 1_000_001
_ENTITY_STREAM = 1_000_002


@dataclass(frozen=True)
class _Number:
    mean: float
    std: float
    low: float
    high: float


def _number(column: ColumnSpec) -> _Number:
    """Mean, spread and clip bounds of a numeric column, with the documented defaults."""
    low = -math.inf if column.min is None else column.min
    high = math.inf if column.max is None else column.max
    bounded = column.min is not None and column.max is not None
    std = column.std if column.std is not None else ((high - low) / 6 if bounded and high > low else 1.0)
    if column.mean is not None:
        mean = column.mean
    elif bounded:
        mean = (low + high) / 2
    elif column.min is not None:
        mean = low + 3 * std
    elif column.max is not None:
        mean = high - 3 * std
    else:
        mean = 0.0
    if column.type == "integer":
        low, high = math.ceil(low), math.floor(high)
    return _Number(mean, std, low, high)


def _level_scores(n_levels: int) -> np.ndarray:
    """Scores of listed values, first to last, spread evenly from -1 to +1 (0 for a single value)."""
    return np.linspace(-1.0, 1.0, n_levels) if n_levels > 1 else np.zeros(1)


def _shares(column: ColumnSpec, covariate_drift: float) -> np.ndarray:
    """Draw probabilities of a column's listed values, tilted toward later ones by covariate drift."""
    assert column.values is not None
    weights = np.asarray(column.weights if column.weights is not None else [1.0] * len(column.values), dtype=float)
    if weights.sum() <= 0:
        raise ValueError(f"column {column.name!r}: `weights` sum to zero")
    if covariate_drift and column.effect:
        weights = weights * np.exp(CATEGORY_TILT * covariate_drift * _level_scores(len(weights)))
    return weights / weights.sum()


def _stream(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _draw(
    column: ColumnSpec, n_rows: int, rng: np.random.Generator, covariate_drift: float
) -> tuple[np.ndarray, np.ndarray]:
    """(values, score): a column's values and each row's standardised value for the latent risk."""
    if column.values is not None:
        codes = rng.choice(len(column.values), size=n_rows, p=_shares(column, covariate_drift))
        score = _level_scores(len(column.values))[codes]
        if column.type in ("string", "category"):
            values = np.array([str(v) for v in column.values], dtype=object)[codes]
        else:
            values = np.asarray(column.values, dtype="float64" if column.type == "float" else "int64")[codes]
        return values, score
    if column.type in ("integer", "float"):
        number = _number(column)
        shift = COVARIATE_SHIFT * covariate_drift * number.std if column.effect else 0.0
        values = np.clip(rng.normal(number.mean + shift, number.std, n_rows), number.low, number.high)
        if column.type == "integer":
            values = np.rint(values).astype("int64")
        return values, (values - number.mean) / number.std
    # A free string column: a few distinct values with skewed shares.
    levels = np.array([f"{column.name}_{i}" for i in range(1, 11)], dtype=object)
    codes = rng.choice(len(levels), size=n_rows, p=_zipf(len(levels)))
    return levels[codes], np.zeros(n_rows)


def _zipf(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()


def _event_times(n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """ISO dates over a year, for a string ``event_time`` column."""
    offsets = rng.integers(0, 365, size=n_rows)
    days = np.array([(EVENT_TIME_START + timedelta(days=int(d))).isoformat() for d in range(365)], dtype=object)
    return days[offsets]


def _entities(n_rows: int, seed: int) -> np.ndarray:
    """Entity numbers 0.. of each row: 1 + Poisson(0.5) records per entity, scattered through the frame."""
    rng = _stream(seed, _ENTITY_STREAM)
    counts = 1 + rng.poisson(EXTRA_RECORDS_PER_ENTITY, size=n_rows)  # enough entities for n_rows records
    owners = np.repeat(np.arange(n_rows), counts)[:n_rows]
    return rng.permutation(owners)


def _identity(column: ColumnSpec, numbers: np.ndarray) -> np.ndarray:
    """Ids 1.. (from the column's ``min`` when higher) as int64, or ``<name>-<id>`` strings."""
    start = max(1, math.ceil(column.min)) if column.min is not None else 1
    ids = numbers.astype("int64") + start
    if column.type in ("integer", "float"):
        return ids.astype("float64") if column.type == "float" else ids
    return np.array([f"{column.name}-{i}" for i in ids.tolist()], dtype=object)


def _features(
    data: DataSpec, n_rows: int, seed: int, covariate_drift: float
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """Every column but the target: (values by column, rows x effect-columns scores, effect by column)."""
    columns: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    marker = data.missing_markers[0] if data.missing_markers else None
    for index, column in enumerate(data.columns):
        if column.name == data.target.column:
            continue
        rng = _stream(seed, index)
        if column.name == data.key:
            columns[column.name] = _identity(column, np.arange(n_rows))
            continue
        if column.name == data.entity:
            columns[column.name] = _identity(column, _entities(n_rows, seed))
            continue
        if column.name == data.event_time and column.type == "string" and column.values is None:
            columns[column.name] = _event_times(n_rows, rng)
            continue
        values, score = _draw(column, n_rows, rng, covariate_drift)
        if column.nullable and column.missing_share and column.type != "integer":
            missing = rng.random(n_rows) < column.missing_share
            if column.type == "float":
                values = np.where(missing, np.nan, values)
            else:
                values = values.copy()
                values[missing] = marker
            score = np.where(missing, 0.0, score)
        columns[column.name] = values
        if column.effect:
            scores[column.name] = score
    effects = {c.name: c.effect for c in data.columns if c.name in scores}
    return columns, np.column_stack([scores[c] for c in effects]) if effects else np.zeros((n_rows, 0)), effects


def _concept_factor(concept_drift: float) -> float:
    """How much of each effect is left: 1 undrifted, 0 at drift 1.5, -1 (reversed) at drift 3."""
    return 1.0 - 2.0 * concept_drift / MAX_DRIFT


def _positive_share(data: DataSpec) -> float:
    """The share of positive target values its ``weights`` give."""
    target = data.column(data.target.column)
    if target.values is None:
        raise ValueError(f"target column {target.name!r} needs `values` for a generated target")
    weights = target.weights if target.weights is not None else [1.0] * len(target.values)
    positive = {str(v) for v in data.target.positive}
    share = sum(w for v, w in zip(target.values, weights, strict=True) if str(v) in positive) / sum(weights)
    if not 0 < share < 1:
        raise ValueError(
            f"target column {target.name!r}: the weights of the positive values {sorted(positive)} give a positive "
            f"share of {share:.3f}; a generated target needs one strictly between 0 and 1"
        )
    return share


@lru_cache(maxsize=64)
def _intercept(data_json: str, factor: float) -> float:
    """The cut of the latent risk that gives the target's positive share on the undrifted reference sample."""
    data = DataSpec.model_validate_json(data_json)
    share = _positive_share(data)
    _, scores, effects = _features(data, REFERENCE_ROWS, REFERENCE_SEED, 0.0)
    signal = scores @ (factor * np.array(list(effects.values()))) if effects else np.zeros(REFERENCE_ROWS)
    low, high = float(signal.min()) - 40.0, float(signal.max()) + 40.0
    for _ in range(100):  # bisection on the mean positive probability, which falls as the cut rises
        middle = (low + high) / 2
        if (1.0 / (1.0 + np.exp(middle - signal))).mean() > share:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _target(spec: ModelSpec, n_rows: int, seed: int, latent: np.ndarray, cut: float) -> np.ndarray:
    """Target values: a positive value (by weight) where the latent risk beats the cut, else a negative one."""
    rng = _stream(seed, _TARGET_STREAM)
    positive_rows = latent + rng.logistic(size=n_rows) > cut
    column = spec.data.column(spec.data.target.column)
    assert column.values is not None
    weights = np.asarray(column.weights if column.weights is not None else [1.0] * len(column.values), dtype=float)
    labels = np.array([str(v) for v in column.values], dtype=object)
    positive = np.isin(labels, [str(v) for v in spec.data.target.positive])
    out = np.empty(n_rows, dtype=object)
    for rows, chosen in ((positive_rows, positive), (~positive_rows, ~positive)):
        shares = weights[chosen] / weights[chosen].sum()
        out[rows] = labels[chosen][rng.choice(int(chosen.sum()), size=int(rows.sum()), p=shares)]
    return out


def _check(n_rows: int, covariate_drift: float, concept_drift: float) -> None:
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 1:
        raise ValueError(f"n_rows must be a positive integer (got {n_rows!r})")
    for name, value in (("covariate_drift", covariate_drift), ("concept_drift", concept_drift)):
        if not (isinstance(value, int | float) and 0.0 <= value <= MAX_DRIFT):
            raise ValueError(f"{name} must be between 0 and {MAX_DRIFT:g} (got {value!r})")


def _frame_column(column: ColumnSpec, values: np.ndarray) -> pd.Series | np.ndarray:
    if column.type in ("string", "category"):
        # pandas' str dtype would turn None into NaN: a column holding None (no missing markers) stays object.
        return pd.Series(values, dtype=object if np.equal(values, None).any() else "str")
    return values


def generate(
    spec: ModelSpec, n_rows: int, seed: int, covariate_drift: float = 0.0, concept_drift: float = 0.0
) -> pd.DataFrame:
    """Synthetic raw records of ``spec`` in the form its source loader produces (see the module docstring).

    Args:
        spec: the model spec whose ``data.columns`` describe the stream.
        n_rows: rows to generate (at least 1).
        seed: the same seed (and arguments) gives the same frame.
        covariate_drift: 0 (none) to 3: moves the columns that carry an effect.
        concept_drift: 0 (none) to 3: weakens then reverses the effects; feature columns unchanged.

    Returns:
        A frame with exactly ``spec.data.raw_columns``, in order.
    """
    _check(n_rows, covariate_drift, concept_drift)
    n_rows = int(n_rows)
    _positive_share(spec.data)  # a spec whose target cannot be generated fails before any work
    columns, scores, effects = _features(spec.data, n_rows, seed, float(covariate_drift))
    factor = _concept_factor(float(concept_drift))
    latent = scores @ (factor * np.array(list(effects.values()))) if effects else np.zeros(n_rows)
    columns[spec.data.target.column] = _target(
        spec, n_rows, seed, latent, _intercept(spec.data.model_dump_json(by_alias=True), factor)
    )
    return pd.DataFrame(
        {c.name: _frame_column(c, columns[c.name]) for c in spec.data.columns},
        index=pd.RangeIndex(n_rows),
    )
