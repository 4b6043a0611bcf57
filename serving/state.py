"""What the app holds while it runs: settings, models and the live experiment, batchers, logs, metrics."""

from __future__ import annotations

import random
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import Request
from pydantic import BaseModel

from airloop.monitoring.prediction_log import LogWriter
from airloop.settings import Settings
from serving.batcher import MicroBatcher
from serving.metrics import Metrics
from serving.model_holder import ModelHolder


@dataclass
class AppState:
    """Everything the routes share; one per app."""

    settings: Settings
    holder: ModelHolder
    predictions: LogWriter
    feedback: LogWriter
    errors: LogWriter
    metrics: Metrics = field(default_factory=Metrics)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="model"))
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    request_models: dict[tuple, type[BaseModel]] = field(default_factory=dict)
    envelope: type[BaseModel] | None = None  # the body shape when variants take different records
    feedback_seen: OrderedDict[str, None] = field(
        default_factory=OrderedDict
    )  # request ids with feedback, oldest first


async def get_state(request: Request) -> AppState:
    """FastAPI dependency: the app's state (async: a sync dependency would cost a thread hop per request)."""
    return request.app.state.airloop
