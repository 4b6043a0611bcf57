"""What the app holds while it runs: one ``ModelState`` per hosted model (its settings, model holder and live
experiment, batchers, logs, feedback memory) and the ``AppState`` that finds them by name. FastAPI-free."""

from __future__ import annotations

import random
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from airloop.predlog import LogWriter
from airloop.registry.contract import Alias
from airloop.settings import Settings
from serving.batcher import MicroBatcher
from serving.errors import ApiError
from serving.metrics import Metrics
from serving.model_holder import ModelHolder


@dataclass
class ModelState:
    """Everything one hosted model's routes share; nothing here is shared with another model but the metrics."""

    name: str
    settings: Settings  # get_settings(name): its spec's sections over the platform defaults
    holder: ModelHolder
    predictions: LogWriter
    feedback: LogWriter
    errors: LogWriter
    metrics: Metrics
    # The model's own thread: a slow model never holds up another's scoring.
    executor: ThreadPoolExecutor
    # Registry calls (polls, reloads, routing changes) of this model only: one that hangs queues nothing of another's.
    registry_executor: ThreadPoolExecutor
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    request_models: dict[tuple, type[BaseModel]] = field(default_factory=dict)
    envelope: type[BaseModel] | None = None  # the body shape when variants take different records
    feedback_seen: OrderedDict[str, None] = field(
        default_factory=OrderedDict
    )  # request ids with feedback, oldest first

    @property
    def request_id_key(self) -> str:
        """The key this model's request ids are signed with: ``serving.request_id_key`` bound to the model's name, so
        an id another model issued is refused (404) by this model's ``/feedback`` instead of landing in its log."""
        return f"{self.settings.serving.request_id_key or ''}\x1f{self.name}"

    @property
    def logs(self) -> tuple[LogWriter, ...]:
        return (self.predictions, self.feedback, self.errors)

    def observe_logs(self) -> None:
        """Each log's pending, spilled, dropped and refused rows and whether it is failing, into the metrics."""
        for writer in self.logs:
            name = writer.log_format.name
            for state, rows in (("pending", writer.pending), ("spilled", writer.spilled), ("dropped", writer.dropped),
                                ("refused", writer.refused)):  # fmt: skip
                self.metrics.log_rows.labels(self.name, name, state).set(rows)
            self.metrics.log_failing.labels(self.name, name).set(1 if writer.failing else 0)

    def readiness(self) -> dict[str, Any]:
        """``ready``, ``degraded`` (serving its last good versions, or its logs cannot be written) or ``not_ready``
        (no champion), with the reason."""
        versions = self.holder.versions()
        if Alias.CHAMPION not in versions:
            return {"status": "not_ready", "reason": self.not_ready_reason(), "versions": versions}
        if self.holder.registry_error:
            return {"status": "degraded", "reason": self.holder.registry_error, "versions": versions}
        failing = [w for w in self.logs if w.failing]
        if failing:
            waiting = ", ".join(
                f"{w.log_format.name}: {w.pending} in memory, {w.spilled} on local disk" for w in failing
            )
            reason = f"the {self.name} logs cannot be written to storage ({waiting})"
            return {"status": "degraded", "reason": reason, "versions": versions}
        return {"status": "ready", "versions": versions}

    def not_ready_reason(self) -> str:
        """Why no champion of this model is loaded."""
        if self.holder.registry_error:
            return self.holder.registry_error
        if self.holder.last_check is None:
            return f"no champion of {self.name} is loaded yet"
        return f"the registry has no champion alias for {self.name}"


@dataclass
class AppState:
    """The hosted models by name, the default model (the one of /v1/predict and the other unnamed routes) and the
    metrics they share."""

    models: dict[str, ModelState]
    default: str | None
    metrics: Metrics
    unhosted: dict[str, str] = field(default_factory=dict)  # a model name -> why this service does not host it

    def model(self, name: str | None) -> ModelState:
        """The hosted model ``name`` (the default model when None); 404 naming it and the hosted ones otherwise."""
        wanted = self.default if name is None else name
        found = self.models.get(wanted) if wanted is not None else None
        if found is not None:
            return found
        hosted = ", ".join(self.models) or "none"
        if name is None:
            reason = f"the default model {wanted!r} is not served here" if wanted else "no default model is set"
            raise ApiError(404, f"{reason} (models: {hosted}): use /v1/models/{{name}}/...", "unknown_model")
        why = self.unhosted.get(name)
        detail = f"no model {name[:64]!r} is served here (models: {hosted})" + (f"; {name}: {why}" if why else "")
        raise ApiError(404, detail, "unknown_model")
