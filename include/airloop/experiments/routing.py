"""A/B routing: weighted, sticky assignment of entities to model variants by a salted hash."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Literal

Mode = Literal["ab", "shadow"]


@dataclass(frozen=True)
class RoutingConfig:
    """An experiment: its salt (name), mode and variant weights (any non-negative numbers, normalised here)."""

    experiment: str
    weights: dict[str, float]
    mode: Mode = "ab"

    def __post_init__(self) -> None:
        total = sum(self.weights.values()) if self.weights else 0.0
        finite = all(math.isfinite(w) for w in self.weights.values()) and math.isfinite(total)
        if not self.weights or not finite or any(w < 0 for w in self.weights.values()) or total <= 0:
            raise ValueError(f"weights must be finite, non-negative, with a positive finite sum; got {self.weights}")
        if self.mode not in ("ab", "shadow"):
            raise ValueError(f"mode must be 'ab' or 'shadow', got {self.mode!r}")


def bucket(entity_id: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, entity_id): the same id always lands in the same place."""
    digest = hashlib.sha256(f"{salt}\x1f{entity_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose(weights: dict[str, float], point: float) -> str:
    """The variant whose cumulative-weight interval contains ``point`` (variants in a fixed, sorted order)."""
    names = sorted(weights)
    total = sum(weights[n] for n in names)
    edge = 0.0
    for name in names:
        edge += weights[name] / total
        if point < edge and weights[name] > 0:
            return name
    return next(n for n in reversed(names) if weights[n] > 0)


def assign(config: RoutingConfig, entity_id: str | int | None, available: set[str], rng: random.Random) -> str:
    """Pick the variant for one request among the ``available`` ones (sticky when ``entity_id`` is given)."""
    weights = {name: w for name, w in config.weights.items() if name in available and w > 0}
    if not weights:
        if not available:
            raise LookupError("no model variant is loaded")
        return "champion" if "champion" in available else sorted(available)[0]
    point = bucket(str(entity_id), config.experiment) if entity_id is not None else rng.random()
    return choose(weights, point)
