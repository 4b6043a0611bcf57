"""The trials of a training run: the fixed candidates, or a seeded random search over a space with a budget."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def trials(candidates: dict[str, list[dict[str, Any]]], search: dict[str, Any] | None, seed: int) -> dict[str, list]:
    """Hyperparameters to try per candidate kind: ``search``'s ``budget`` seeded draws from its ``space`` per kind
    (log-uniform where ``log``, rounded where ``integer``, one of ``choices``), else ``candidates`` unchanged."""
    if not search:
        return {kind: [dict(p) for p in grid] for kind, grid in candidates.items()}
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, space in search["space"].items():
        draws = []
        for _ in range(int(search.get("budget", 4))):
            params: dict[str, Any] = {}
            for name, dist in sorted(space.items()):
                if dist.get("choices") is not None:
                    params[name] = dist["choices"][int(rng.integers(len(dist["choices"])))]
                    continue
                low, high = float(dist["low"]), float(dist["high"])
                log_scale = dist.get("log")
                value = math.exp(rng.uniform(math.log(low), math.log(high))) if log_scale else rng.uniform(low, high)
                params[name] = round(value) if dist.get("integer") else float(value)
            draws.append(params)
        out[kind] = draws
    return out
