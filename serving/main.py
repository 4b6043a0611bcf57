"""Build the FastAPI app: ``uvicorn --factory serving.main:create_app`` (settings from airloop's config)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from airloop.experiments.routing import RoutingConfig
from airloop.monitoring.prediction_log import error_log, feedback_log, prediction_log
from airloop.registry.client import connect, fail_fast
from airloop.registry.contract import SERVED_ALIASES
from airloop.settings import Settings, get_settings
from serving import routes
from serving.batcher import MicroBatcher
from serving.docs import serve_docs
from serving.model_holder import ModelHolder, score
from serving.openapi import describe_predict_body
from serving.schemas import envelope_model
from serving.state import AppState

log = logging.getLogger(__name__)


async def _poll(state: AppState) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(state.settings.serving.poll_interval_s)
        if await loop.run_in_executor(None, state.holder.refresh):
            log.info("now serving %s", state.holder.versions())


class MetricsMiddleware:
    """Counts requests and observes latency per route path (pure ASGI: no per-request task overhead)."""

    def __init__(self, app: Any, state_getter: Any) -> None:
        self.app, self.state_getter = app, state_getter

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            state = self.state_getter()
            if state is not None:
                # Paths no route matched share one label: a scan of random URLs must not grow the series.
                path = scope.get("path", "") if status["code"] != 404 else "<unmatched>"
                state.metrics.requests.labels(path, str(status["code"])).inc()
                state.metrics.latency.labels(path).observe(time.perf_counter() - started)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (the configured ones by default); models load in the lifespan."""
    settings = settings or get_settings()
    fail_fast()  # the poller comes back anyway: no long retry loops against an HTTP registry

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving = settings.serving
        holder = ModelHolder(
            lambda: connect(settings), settings.mlflow.model_name, RoutingConfig.from_yaml(serving.routing_file)
        )
        state = AppState(
            settings=settings,
            holder=holder,
            predictions=prediction_log(settings),
            feedback=feedback_log(settings),
            errors=error_log(settings),
            envelope=envelope_model(serving.max_batch_records),
        )
        await asyncio.get_running_loop().run_in_executor(None, holder.refresh)
        log.info("serving %s (registry error: %s)", holder.versions(), holder.registry_error)
        for variant in SERVED_ALIASES:
            batcher = MicroBatcher(
                score,
                serving.batch_max_size,
                serving.batch_max_wait_ms / 1000,
                state.executor,
                on_batch=state.metrics.batch_size.labels(variant).observe,
            )
            batcher.start()
            state.batchers[variant] = batcher
        state.predictions.start()
        state.feedback.start()
        state.errors.start()
        poller = asyncio.get_running_loop().create_task(_poll(state))
        app.state.airloop = state
        # The start-up heap (MLflow, scikit-learn, the models) is large and lives forever: keep the cyclic GC from
        # re-scanning it in every full collection, which otherwise shows up as 100+ ms pauses in the latency tail.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            poller.cancel()
            for batcher in state.batchers.values():
                await batcher.stop()
            for writer in (state.predictions, state.feedback, state.errors):
                try:  # one log failing to flush must not keep the other from flushing
                    writer.close()
                except Exception:
                    log.exception("closing the %s log failed; its unwritten rows are lost", writer.log_format.name)
            state.executor.shutdown(wait=True)
            log.info("prediction log flushed: %d rows written", state.predictions.written)

    app = FastAPI(
        title="airloop prediction service",
        version="1",
        description="Readmission risk from the MLflow registry's champion/challenger with sticky A/B routing.",
        lifespan=lifespan,
        docs_url=None,  # serve_docs below: Swagger UI and ReDoc from installed assets, not a CDN
        redoc_url=None,
        strict_content_type=False,  # no Content-Type counts as JSON, as on /v1/predict; other types get 415
    )
    app.include_router(routes.v1)
    app.include_router(routes.admin)
    app.include_router(routes.ops)
    serve_docs(app)
    describe_predict_body(app, routes.request_validator, settings.serving.max_batch_records)
    app.add_middleware(MetricsMiddleware, state_getter=lambda: getattr(app.state, "airloop", None))

    @app.exception_handler(routes.ApiError)
    async def api_error(request: Request, error: routes.ApiError) -> JSONResponse:
        state = getattr(app.state, "airloop", None)
        if state is not None:
            state.metrics.errors.labels(error.kind).inc()
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = error.errors()
        malformed = any(e.get("type") == "json_invalid" for e in errors)
        state = getattr(app.state, "airloop", None)
        if state is not None:
            state.metrics.errors.labels("malformed_json" if malformed else "invalid_input").inc()
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return JSONResponse({"detail": detail}, status_code=400 if malformed else 422)

    return app
