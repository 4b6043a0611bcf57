"""What the app holds while it runs: settings, models, routing, batchers, logs, metrics."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fastapi import Request
from pydantic import BaseModel

from airloop.experiments.routing import RoutingConfig
from airloop.settings import Settings
from serving.batcher import MicroBatcher
from serving.metrics import Metrics
from serving.models import ModelHolder
from serving.predlog import ParquetLog


def load_routing(path: Path) -> RoutingConfig:
    """The routing config file (config/routing.yaml)."""
    raw = yaml.safe_load(Path(path).read_text())
    return RoutingConfig(experiment=str(raw["experiment"]), weights=dict(raw["weights"]), mode=raw.get("mode", "ab"))


@dataclass
class AppState:
    """Everything the routes share; one per app."""

    settings: Settings
    holder: ModelHolder
    routing: RoutingConfig
    predictions: ParquetLog
    feedback: ParquetLog
    metrics: Metrics = field(default_factory=Metrics)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="model"))
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    request_models: dict[tuple, tuple[type[BaseModel], Any]] = field(default_factory=dict)


async def get_state(request: Request) -> AppState:
    """FastAPI dependency: the app's state (async: a sync dependency would cost a thread hop per request)."""
    return request.app.state.airloop
