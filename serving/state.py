"""What the app holds while it runs: one ``ModelState`` per hosted model (its settings, model holder and live
experiment, batchers, logs, feedback memory, ledger figures) and the ``AppState`` that finds them by name.
FastAPI-free."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from airloop import history
from airloop.ledger import Decision, Kind
from airloop.predlog import LogWriter
from airloop.registry.contract import SERVED_ALIASES, Alias
from airloop.settings import Settings
from serving.batcher import MicroBatcher
from serving.errors import ApiError
from serving.metrics import Metrics
from serving.model_holder import ModelHolder

log = logging.getLogger(__name__)

LEDGER_REFRESH_S = 60.0  # the ledger figures are read at most this often per model
LEDGER_UNREADABLE = "ledger_unreadable"  # the errors kind of a ledger read that failed
# The values the newest rows may hold, each exported as its own 0/1 series (a value outside these sets all to 0):
# ``airloop.monitoring.drift.Verdict``, and ``airloop.experiments.sequential.Action`` with the evaluation's ``HALT``.
# Named here, not imported: the service loads none of the drift and evaluation code (tests/serving pins the two).
DRIFT_VERDICTS = ("no_drift", "alert", "drift", "insufficient_data")
EVALUATION_ACTIONS = ("continue", "promote", "reject", "halt")


def _number(value: Any) -> float:
    """A payload figure as a float; NaN for one that is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


class LedgerFigures:
    """The newest drift verdict and A/B evaluation of one model as numbers for /metrics, read from the model's
    decision ledger through ``airloop.history.rows`` (the process's cached ``airloop.ledger.ledger``, the one
    /v1/history reads): the newest row of each kind, limited in SQL.

    Registered in the app's metrics registry, so each scrape calls ``collect``: when the last read started
    ``every_s`` or more ago and none is still running, it starts one on the figures' own thread and returns at once,
    so a slow or unreachable ledger never holds up a scrape or the event loop; the figures a read finds show from the
    next scrape on. The read sets the ``airloop_drift_*`` and ``airloop_evaluation_*`` gauges of ``Metrics``; one that
    fails leaves them as they were, counts ``airloop_errors_total{kind="ledger_unreadable"}`` and is logged once until
    a read succeeds again. A model without a verdict or an evaluation yet has no sample of that kind."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        metrics: Metrics,
        every_s: float = LEDGER_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.settings, self.metrics, self.every_s, self.clock = name, settings, metrics, every_s, clock
        self.started: float | None = None  # the clock when the last read started
        self.running: Future[bool] | None = None  # the last read
        self.failing = False
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._lock = threading.Lock()

    def collect(self) -> list:
        """At each scrape (``generate_latest``): start a read when one is due; exports nothing itself."""
        try:
            self.refresh_if_due()
        except Exception:  # nothing here may fail /metrics
            log.exception("%s: could not start reading the decision ledger for /metrics", self.name)
        return []

    def refresh_if_due(self) -> Future[bool] | None:
        """The read started now on the figures' thread, or None when the last one is recent or still running."""
        now = self.clock()
        with self._lock:
            if self._closed or (self.running is not None and not self.running.done()):
                return None
            if self.started is not None and now - self.started < self.every_s:
                return None
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"ledger-{self.name}")
            self.started = now
            self.running = self._executor.submit(self.read)
            return self.running

    def read(self) -> bool:
        """Read the newest verdict and evaluation and set the gauges; False when the ledger cannot be read."""
        try:
            drift = history.rows(self.settings, kind=Kind.DRIFT_VERDICT, limit=1)
            evaluation = history.rows(self.settings, kind=Kind.EVALUATION, limit=1)
            if drift:
                self._show_drift(drift[0])
            if evaluation:
                self._show_evaluation(evaluation[0])
        except Exception as error:
            self.metrics.errors.labels(LEDGER_UNREADABLE, self.name).inc()
            if not self.failing:
                log.warning(
                    "%s: the decision ledger cannot be read for /metrics; the drift and evaluation figures keep their"
                    " last values (%s: %s)", self.name, type(error).__name__, str(error)[:300],
                )  # fmt: skip
            self.failing = True
            return False
        if self.failing:
            log.info("%s: the decision ledger can be read again", self.name)
        self.failing = False
        return True

    def _show_drift(self, row: Decision) -> None:
        payload = row.payload if isinstance(row.payload, Mapping) else {}
        metrics, verdict = self.metrics, payload.get("verdict")
        metrics.drift_share.labels(self.name).set(_number(payload.get("drifted_share")))
        metrics.drift_rows.labels(self.name).set(_number(payload.get("rows")))
        for known in DRIFT_VERDICTS:
            metrics.drift_verdict.labels(self.name, known).set(1 if verdict == known else 0)
        metrics.drift_time.labels(self.name).set(row.decided_at.timestamp())

    def _show_evaluation(self, row: Decision) -> None:
        payload = row.payload if isinstance(row.payload, Mapping) else {}
        metrics, action = self.metrics, payload.get("action")
        for known in EVALUATION_ACTIONS:
            metrics.evaluation_action.labels(self.name, known).set(1 if action == known else 0)
        arms = payload.get("arms")
        for variant in SERVED_ALIASES:
            arm = arms.get(variant.value) if isinstance(arms, Mapping) else None
            labelled = arm.get("labelled") if isinstance(arm, Mapping) else None
            metrics.evaluation_labelled.labels(self.name, variant.value).set(_number(labelled))
        metrics.evaluation_time.labels(self.name).set(row.decided_at.timestamp())

    def close(self) -> None:
        """No more reads; a read still running is left to finish on its own."""
        with self._lock:
            self._closed = True
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)


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
    ledger_figures: LedgerFigures = field(init=False)  # read at scrapes: registered in the metrics' registry

    def __post_init__(self) -> None:
        self.ledger_figures = LedgerFigures(self.name, self.settings, self.metrics)
        self.metrics.registry.register(self.ledger_figures)

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
