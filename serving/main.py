"""Build the FastAPI app: ``uvicorn --factory serving.main:create_app`` (settings from airloop's config).

One process hosts every model it is configured for (``models.serve``, or every valid spec in ``models.folder``), each
with its own settings (``get_settings(name)``), model holder, poller, batchers, model thread, registry thread and logs:
a slow or broken model answers for itself only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Container
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from airloop import security
from airloop.experiments.routing import RoutingConfig
from airloop.predlog import error_log, feedback_log, prediction_log
from airloop.registry.client import connect, fail_fast
from airloop.registry.contract import SERVED_ALIASES
from airloop.settings import Settings, get_settings
from airloop.spec import Catalog, SpecError
from airloop.spec.loader import FOLDER_SPEC
from serving import routes
from serving.batcher import MicroBatcher
from serving.docs import serve_docs
from serving.errors import ApiError
from serving.metrics import Metrics
from serving.model_holder import ModelHolder, explain, score
from serving.openapi import DocumentedModel, describe_api
from serving.ratelimit import RateLimit, TokenBuckets
from serving.schemas import envelope_model
from serving.state import AppState, ModelState

log = logging.getLogger(__name__)
UNMATCHED = "<unmatched>"


def served_models(found: Catalog, serve: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """The models this service hosts (``serve``, or every valid spec of the catalog ``found``) and why each other
    spec is not hosted.

    Raises:
        SpecError: ``serve`` names a spec that is absent or invalid, or there is no model to serve.
    """
    names = sorted(found.specs) if serve is None else list(dict.fromkeys(serve))
    for name in names:
        found.get(name)  # an absent or broken spec named on purpose stops the start, with its file and key
    unhosted = {
        (path.parent.name if path.name == FOLDER_SPEC else path.stem): f"its spec is invalid: {error}"
        for path, error in found.errors.items()
    }
    unhosted |= {name: "not in models.serve of this service" for name in found.specs if name not in names}
    if not names:
        problem = f"no model to serve: no valid spec in {found.folder}"
        if unhosted:
            problem += " (" + "; ".join(f"{name}: {why}" for name, why in unhosted.items()) + ")"
        raise SpecError(found.folder, [problem])
    return names, unhosted


def _model_state(name: str, settings: Settings, metrics: Metrics) -> ModelState:
    serving = settings.serving
    holder = ModelHolder(
        lambda: connect(settings), settings.mlflow.model_name, RoutingConfig.from_yaml(serving.routing_file, name)
    )
    return ModelState(
        name=name,
        settings=settings,
        holder=holder,
        predictions=prediction_log(settings),
        feedback=feedback_log(settings),
        errors=error_log(settings),
        metrics=metrics,
        executor=ThreadPoolExecutor(1, thread_name_prefix=f"model-{name}"),
        registry_executor=ThreadPoolExecutor(1, thread_name_prefix=f"registry-{name}"),
        envelope=envelope_model(serving.max_batch_records),
    )


def _start(model: ModelState) -> None:
    serving = model.settings.serving
    for variant in SERVED_ALIASES:
        batcher = MicroBatcher(
            score,
            serving.batch_max_size,
            serving.batch_max_wait_ms / 1000,
            model.executor,
            on_batch=model.metrics.batch_size.labels(model.name, variant).observe,
            max_queued=serving.max_queued_records,
            explain_fn=explain,
        )
        batcher.start()
        model.batchers[variant] = batcher
        model.metrics.batch_queued.labels(model.name, variant).set_function(lambda batcher=batcher: batcher.queued)
    model.predictions.start()
    model.feedback.start()
    model.errors.start()


async def _stop(model: ModelState) -> None:
    model.ledger_figures.close()
    for batcher in model.batchers.values():
        await batcher.stop()
    for writer in (model.predictions, model.feedback, model.errors):
        try:  # one log failing to flush must not keep the others (of this model or another) from flushing
            writer.close()
        except Exception:
            log.exception("closing %s's %s log failed; its unwritten rows are lost", model.name, writer.log_format.name)
    model.executor.shutdown(wait=True)
    model.registry_executor.shutdown(wait=False, cancel_futures=True)  # a hung registry call must not hold the exit
    log.info("%s: prediction log flushed, %d rows written", model.name, model.predictions.written)


async def _poll(model: ModelState) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(model.settings.serving.poll_interval_s)
        try:
            if await loop.run_in_executor(model.registry_executor, model.holder.refresh):
                log.info("%s: now serving %s", model.name, model.holder.versions())
        except Exception:  # refresh() handles registry and load errors; anything else must not end the polling
            log.exception("%s: polling the registry failed; trying again in one interval", model.name)


def endpoint_label(scope: dict[str, Any], status: int, hosted: Container[str]) -> str:
    """The metrics' endpoint label: the template of the route that matched (a hosted model's name in place of
    ``{name}``; a static mount's prefix for any file below it), or ``<unmatched>`` for a request no route matched or a
    model not served here: a scan of random URLs, files or model names never grows the series."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is None or status == 404:
        return UNMATCHED
    if "{name}" in template:
        name = (scope.get("path_params") or {}).get("name")
        return template.replace("{name}", name) if name in hosted else UNMATCHED
    return template


class BodyLimit:
    """413 for a request body past its limit, before it is read (a declared Content-Length) or as soon as it passes
    it (a streamed body is counted chunk by chunk): a predict route allows its model's ``serving.max_body_bytes``,
    every other route ``serving.max_request_bytes``. Nothing larger than the limit is ever buffered."""

    def __init__(self, app: Any, limit_of: Callable[[str], int], on_refused: Callable[[], None]) -> None:
        self.app, self.limit_of, self.on_refused = app, limit_of, on_refused

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope.get("path", ""))
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
            await self._refuse(
                send, f"request body of {declared.decode()[:20]} bytes exceeds the limit of {limit} bytes"
            )
            return
        received, started, refused = 0, False, False

        async def counted() -> dict:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # answer 413 now; the app sees a client that went away and stops reading
                    refused = True
                    if not started:
                        await self._refuse(send, f"request body exceeds the limit of {limit} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: dict) -> None:
            nonlocal started
            if refused:  # the app's answer to a body it never got whole: the client has its 413 already
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)

    async def _refuse(self, send: Any, detail: str) -> None:
        self.on_refused()
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class RequestTimeout:
    """A request that is not over after ``timeout_s`` (a body sent a byte at a time, a stuck dependency) is ended, so it
    cannot hold one of the server's limited connection slots (``--limit-concurrency``) forever: 503 with
    ``Retry-After`` when nothing was answered yet, else its connection is dropped mid-answer."""

    def __init__(self, app: Any, timeout_s: float, on_timeout: Callable[[], None]) -> None:
        self.app, self.timeout_s, self.on_timeout = app, timeout_s, on_timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, watched), self.timeout_s)
        except TimeoutError:
            self.on_timeout()
            if started:
                raise  # the status is sent already: the server closes the connection
            body = json.dumps({"detail": f"request not completed within {self.timeout_s:g} s"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            extra = [(b"retry-after", b"1"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 503, "headers": [*headers, *extra]})
            await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    """Counts requests and observes latency per route path (pure ASGI: no per-request task overhead)."""

    def __init__(self, app: Any, state_getter: Callable[[], AppState | None]) -> None:
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
                path = endpoint_label(scope, status["code"], state.models)
                state.metrics.requests.labels(path, str(status["code"])).inc()
                state.metrics.latency.labels(path).observe(time.perf_counter() - started)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app hosting the models of ``settings`` (the configured ones by default): ``models.serve``, or every valid
    spec. Each model's settings are ``settings.for_model(name)`` (``settings`` itself for the model it is bound to,
    which is the default model of /v1/predict). Models load in the lifespan."""
    settings = settings or get_settings()
    found = settings.catalog
    names, unhosted = served_models(found, settings.models.serve)
    bound = {name: settings if name == settings.model else settings.for_model(name) for name in names}
    for model_settings in bound.values():
        security.check_serving(model_settings)  # before anything starts: a forgeable setup does not serve at all
    fail_fast()  # the poller comes back anyway: no long retry loops against an HTTP registry

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = Metrics()
        models = {name: _model_state(name, model_settings, metrics) for name, model_settings in bound.items()}
        state = AppState(models=models, default=settings.model, metrics=metrics, unhosted=unhosted)
        loop = asyncio.get_running_loop()
        # Every model's first registry check at once: a slow registry answer for one delays no other.
        await asyncio.gather(*(loop.run_in_executor(m.registry_executor, m.holder.refresh) for m in models.values()))
        for model in models.values():
            log.info(
                "%s: serving %s (registry error: %s)", model.name, model.holder.versions(), model.holder.registry_error
            )
            _start(model)
        pollers = [loop.create_task(_poll(model)) for model in models.values()]
        app.state.airloop = state
        # The start-up heap (MLflow, scikit-learn, the models) is large and lives forever: keep the cyclic GC from
        # re-scanning it in every full collection, which otherwise shows up as 100+ ms pauses in the latency tail.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for poller in pollers:
                poller.cancel()
            for model in models.values():
                await _stop(model)

    app = FastAPI(
        title="airloop prediction service",
        version="1",
        description=(
            f"Every model served here ({', '.join(names)}) from its MLflow registry champion/challenger with sticky "
            "A/B routing, under /v1/models/{name}/...; /v1/predict and the other unnamed routes are the default "
            f"model's ({settings.model})."
        ),
        lifespan=lifespan,
        docs_url=None,  # serve_docs below: Swagger UI and ReDoc from installed assets, not a CDN
        redoc_url=None,
        strict_content_type=False,  # no Content-Type counts as JSON, as on /v1/predict; other types get 415
    )
    app.include_router(routes.v1)
    app.include_router(routes.admin)
    app.include_router(routes.by_model)
    app.include_router(routes.ops)
    serve_docs(app)
    documented = {
        name: DocumentedModel(found.specs[name].description, s.serving.max_batch_records) for name, s in bound.items()
    }
    describe_api(app, documented, settings.model)
    app.add_middleware(MetricsMiddleware, state_getter=lambda: getattr(app.state, "airloop", None))

    def body_limit(path: str) -> int:
        if path.endswith("/predict"):
            name = path.split("/")[3] if path.startswith("/v1/models/") else settings.model
            if name in bound:
                return bound[name].serving.max_body_bytes
        return settings.serving.max_request_bytes

    def count_refused() -> None:
        state = getattr(app.state, "airloop", None)
        if state is not None:
            state.metrics.errors.labels("body_too_large", "").inc()

    # A body past its limit is refused before any route, dependency or metric label looks at it.
    app.add_middleware(BodyLimit, limit_of=body_limit, on_refused=count_refused)
    serving = settings.serving
    if serving.request_timeout_s is not None:

        def count_timeout() -> None:
            state = getattr(app.state, "airloop", None)
            if state is not None:
                state.metrics.errors.labels("request_timeout", "").inc()

        app.add_middleware(RequestTimeout, timeout_s=serving.request_timeout_s, on_timeout=count_timeout)
    if serving.rate_limit_per_s is not None:  # outermost: a limited client costs a dictionary lookup

        def count_limited() -> None:
            state = getattr(app.state, "airloop", None)
            if state is not None:
                state.metrics.errors.labels("rate_limited", "").inc()

        def key_name(presented: bytes) -> str | None:
            """Which configured key (of any hosted model) ``presented`` is: a setting's name, or None."""
            found = {security.key_source(s, presented) for s in bound.values()} - {"open"}
            return min(found) if found else None

        buckets = TokenBuckets(serving.rate_limit_per_s, serving.rate_limit_burst, serving.rate_limit_clients)
        app.add_middleware(
            RateLimit,
            buckets=buckets,
            key_name=key_name,
            on_limited=count_limited,
            hold_s=serving.rate_limit_hold_s,
            held_per_client=serving.rate_limit_held_per_client,
            held_max=serving.rate_limit_held,
        )

    def count_error(request: Request, kind: str) -> None:
        state = getattr(app.state, "airloop", None)
        if state is not None:
            state.metrics.errors.labels(kind, getattr(request.state, "model", "")).inc()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        count_error(request, error.kind)
        return JSONResponse({"detail": error.detail}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = error.errors()
        malformed = any(e.get("type") == "json_invalid" for e in errors)
        count_error(request, "malformed_json" if malformed else "invalid_input")
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return JSONResponse({"detail": detail}, status_code=400 if malformed else 422)

    return app
