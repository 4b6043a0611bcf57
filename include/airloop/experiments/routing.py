"""The experiment and its assignment policy: weighted, sticky assignment of entities to model variants by a salted
hash, and the plan of which variant scores which record (A/B or shadow)."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from airloop.registry.contract import SERVED_ALIASES, Alias

Mode = Literal["ab", "shadow"]
MODES: tuple[str, ...] = ("ab", "shadow")
#: The variants of an experiment are the served registry aliases.
VARIANTS: tuple[str, ...] = tuple(str(a) for a in SERVED_ALIASES)


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
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'ab' or 'shadow', got {self.mode!r}")
        unknown = set(self.weights) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)}; the variants are {list(VARIANTS)}")
        if not self.experiment:
            raise ValueError("the experiment id must not be empty")

    @property
    def variants(self) -> list[str]:
        """The variants with a weight, in a fixed order."""
        return sorted(self.weights)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what the registry stores and the API shows)."""
        return {"experiment": self.experiment, "mode": self.mode, "weights": dict(self.weights)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RoutingConfig:
        """Parse the JSON-able form; ValueError naming what is wrong."""
        try:
            weights = {str(k): float(v) for k, v in dict(raw["weights"]).items()}
            return cls(experiment=str(raw["experiment"]), weights=weights, mode=raw.get("mode", "ab"))
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not an experiment definition ({error!r}): {raw!r}") from error

    @classmethod
    def from_yaml(cls, path: Path, model: str = "") -> RoutingConfig:
        """The initial default experiment of a routing file (config/routing.yaml); ``{model}`` in its experiment id
        becomes the model's name, so two models never share a salt."""
        import yaml

        document = yaml.safe_load(Path(path).read_text())
        if isinstance(document, dict) and isinstance(document.get("experiment"), str):
            document["experiment"] = document["experiment"].replace("{model}", model or "model")
        return cls.from_dict(document)


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
        return Alias.CHAMPION if Alias.CHAMPION in available else sorted(available)[0]
    point = bucket(str(entity_id), config.experiment) if entity_id is not None else rng.random()
    return choose(weights, point)


@dataclass
class Plan:
    """Which variant answers each record, and which records each variant scores (shadow scores are not served)."""

    served: list[str]
    groups: dict[str, list[int]] = field(default_factory=dict)

    def is_served(self, index: int, variant: str) -> bool:
        """Whether ``variant``'s score of record ``index`` is the answer (else it is a shadow score)."""
        return self.served[index] == variant


def plan(
    config: RoutingConfig,
    entity_ids: list[str | int | None],
    available: set[str],
    rng: random.Random,
    score_both: bool = False,
) -> Plan:
    """Assign a batch: in ``ab`` mode each record goes to its (sticky) variant; in ``shadow`` mode the champion
    answers every record and the challenger, when loaded, scores every record too. ``score_both`` (``ab`` mode): the
    variant that does not answer a record scores it as well, unserved, so the evaluation can pair the two scores of
    the same record (``loop.score_both``)."""
    if config.mode == "shadow":
        everyone = list(range(len(entity_ids)))
        result = Plan([Alias.CHAMPION] * len(entity_ids), {Alias.CHAMPION: everyone})
        if Alias.CHALLENGER in available:
            result.groups[Alias.CHALLENGER] = list(everyone)
        return result
    served = [assign(config, entity_id, available, rng) for entity_id in entity_ids]
    result = Plan(served)
    for i, variant in enumerate(served):
        result.groups.setdefault(variant, []).append(i)
    if score_both and {Alias.CHAMPION, Alias.CHALLENGER} <= available:
        for variant in (Alias.CHAMPION, Alias.CHALLENGER):
            result.groups[variant] = list(range(len(entity_ids)))
    return result


def default_routing(settings: Any) -> RoutingConfig:
    """The initial experiment of the settings' model: the routing file (``serving.routing_file``) with ``{model}`` in
    its id made the model's name, so two models never share a salt. The one place that reads it."""
    return RoutingConfig.from_yaml(settings.serving.routing_file, settings.model or "")
