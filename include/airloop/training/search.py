"""The hyperparameter trials of one training run: a spec's fixed candidates, or seeded random draws from its search.

A search (``training.search`` of a spec) is ``{budget, space: {kind: {param: {low, high, log, integer, choices}}}}``:
``budget`` trials per kind, each parameter drawn uniformly from [low, high] (log-uniform with ``log``, rounded with
``integer``) or from its ``choices``. Each kind draws from its own stream of the training seed, so adding a kind or
a parameter to another kind never changes a kind's trials.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from airloop.spec.schema import SearchParam, SearchSpec

Params = dict[str, Any]


def _draw(param: SearchParam, rng: np.random.Generator) -> Any:
    if param.choices is not None:
        return param.choices[int(rng.integers(len(param.choices)))]
    assert param.low is not None and param.high is not None
    low, high = param.low, param.high
    if param.log:
        if low <= 0:
            raise ValueError(f"a log-scale range needs `low` above 0 (got {low})")
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = float(rng.uniform(low, high))
    if param.integer:
        lowest, highest = math.ceil(low), math.floor(high)
        if lowest > highest:
            raise ValueError(f"an integer range [{low}, {high}] holds no integer")
        return int(min(max(round(value), lowest), highest))
    return float(min(max(value, low), high))


def _kind_stream(seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(kind.encode())])


def trials(
    candidates: Mapping[str, list[Params]],
    search: SearchSpec | Mapping[str, Any] | None,
    seed: int,
) -> dict[str, list[Params]]:
    """The trials per candidate kind: ``budget`` seeded draws per kind of ``search`` when given, else ``candidates``.

    Args:
        candidates: fixed hyperparameters per kind (used as they are when there is no search).
        search: a random search (``SearchSpec`` or its dict form); None or empty for the fixed candidates.
        seed: the training seed; the same seed gives the same trials.

    Returns:
        ``{kind: [params, ...]}``, kinds in the order given.
    """
    if not search:
        return {kind: [dict(params) for params in listed] for kind, listed in candidates.items()}
    spec = search if isinstance(search, SearchSpec) else SearchSpec.model_validate(dict(search))
    out: dict[str, list[Params]] = {}
    for kind, space in spec.space.items():
        rng = _kind_stream(seed, kind)
        drawn = []
        for _ in range(spec.budget):
            params = {}
            for name, param in space.items():
                try:
                    params[name] = _draw(param, rng)
                except ValueError as error:
                    raise ValueError(f"training.search.space.{kind}.{name}: {error}") from None
            drawn.append(params)
        out[kind] = drawn
    return out
