"""HTTP routes. Each hosted model has /v1/models/{name}/predict, /feedback, /history, /routing, /reload and
GET /v1/models/{name}; /v1/predict and the other unnamed routes are the default model's (``models.default``).
GET /v1/models lists every hosted model; /health, /ready and /metrics are the process's.

A route parses, calls one function and answers: scoring is ``serving.predict.predict``, FastAPI-free."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect

from airloop import history, operations, security, times
from airloop.experiments.routing import RoutingConfig
from airloop.predlog import CORRECTION, FeedbackRow, is_issued
from airloop.security import Scope
from serving import predict as scoring
from serving.errors import ApiError
from serving.openapi import PREDICT_REQUEST_REF, error_responses
from serving.schemas import (
    Feedback,
    FeedbackAccepted,
    FeedbackCorrected,
    FeedbackCorrection,
    Health,
    HistoryView,
    ModelsView,
    ModelView,
    PredictResponse,
    Readiness,
    ReloadResult,
    Routing,
    RoutingUpdate,
)
from serving.state import AppState, ModelState

log = logging.getLogger(__name__)

v1 = APIRouter(prefix="/v1", tags=["predictions"])  # the default model's, as before models were specs
admin = APIRouter(prefix="/v1", tags=["admin"])  # the default model's admin routes
by_model = APIRouter(prefix="/v1/models/{name}")  # every hosted model's; serving.openapi gives each model its tag
ops = APIRouter(tags=["operations"])


async def get_app(request: Request) -> AppState:
    """FastAPI dependency: the app's state (async: a sync dependency would cost a thread hop per request)."""
    return request.app.state.airloop


async def get_model(request: Request) -> ModelState:
    """FastAPI dependency: the model a request addresses, ``{name}`` of /v1/models/{name}/... or else the default
    model; 404 naming it and the hosted ones when it is not served here."""
    model = request.app.state.airloop.model(request.path_params.get("name"))
    request.state.model = model.name  # the errors metric's model label
    return model


App = Annotated[AppState, Depends(get_app)]
Model = Annotated[ModelState, Depends(get_model)]

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="a serving key with the endpoint's scope (serving.*_key)"
)


def require_scope(scope: Scope, endpoint: str):
    """Endpoints behind a key: 401 without one (unless ``serving.open_scopes`` holds ``scope``), 403 with an unknown
    key or one that lacks ``scope`` (``airloop.security.SERVING_KEYS``). Keys are the addressed model's settings'.
    Sets ``request.state.key_source``: which key it was ("feedback_key", ...), or "open"."""

    async def check(request: Request, model: Model, x_api_key: Annotated[str | None, Security(api_key_header)]) -> None:
        serving = model.settings.serving
        if not x_api_key:
            if scope in serving.open_scopes:
                request.state.key_source = "open"
                return
            team = model.settings.security.team
            where, needed = endpoint.replace("{name}", model.name), " or ".join(security.keys_granting(scope, team))
            raise ApiError(401, f"missing X-API-Key header: {where} needs a key with the {scope} scope ({needed})",
                           "unauthorized")  # fmt: skip
        # The header holds whatever octets the client sent (latin-1 text here): compared as bytes.
        presented = x_api_key.encode("latin-1")
        granted = security.key_scopes(model.settings, presented)
        if not granted:
            raise ApiError(403, "invalid API key", "forbidden")
        if scope not in granted:
            needed = " or ".join(security.keys_granting(scope, model.settings.security.team))
            where = endpoint.replace("{name}", model.name)
            raise ApiError(403, f"this API key lacks the {scope} scope that {where} needs ({needed})", "forbidden")
        request.state.key_source = security.key_source(model.settings, presented)

    return check


async def require_json(request: Request) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``application/*+json``); none counts as JSON."""
    declared = request.headers.get("content-type")
    if declared is None or declared == "application/json":
        return
    media = declared.partition(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise ApiError(415, f"content type {media[:80]!r} is not JSON: send application/json", "unsupported_media_type")


async def read_body(request: Request, limit: int) -> bytes:
    """The JSON request body: 415 for another content type, 413 past ``limit`` bytes (checked before and while
    reading)."""
    await require_json(request)
    declared = request.headers.get("content-length", "")
    # Plain ASCII digits only ("²".isdigit() is true, int("²") fails), and few enough for int(): the body is counted
    # as it streams in anyway.
    if declared.isascii() and declared.isdigit() and len(declared) < 20 and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes", "body_too_large")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "body_too_large")
            chunks.append(chunk)
    except ClientDisconnect as error:  # the caller is gone; count it, don't log a server error
        raise ApiError(400, "client disconnected before sending the whole body", "client_disconnect") from error
    return b"".join(chunks)


PREDICT = {
    "response_model": PredictResponse,
    "responses": error_responses(400, 401, 403, 404, 413, 415, 422, 503),
    # The body is validated from the raw bytes by a model of the champion's signature, which FastAPI cannot see:
    # serving.openapi describes it, per model.
    "openapi_extra": {
        "requestBody": {"required": True, "content": {"application/json": {"schema": PREDICT_REQUEST_REF}}}
    },
}


@v1.post(
    "/predict",
    summary="Score one or more records with the default model",
    dependencies=[Depends(require_scope(Scope.PREDICT, "POST /v1/predict"))],
    **PREDICT,
)
@by_model.post(
    "/predict",
    summary="Score one or more records",
    dependencies=[Depends(require_scope(Scope.PREDICT, "POST /v1/models/{name}/predict"))],
    **PREDICT,
)
async def predict(request: Request, model: Model) -> JSONResponse:
    """Body: ``{"records": [{<field>: value, ..., "entity_id": optional}]}``; answers in the same order."""
    body = await read_body(request, model.settings.serving.max_body_bytes)
    # Already the documented shape (PredictResponse): skip FastAPI's re-validation of the response.
    return JSONResponse(await scoring.predict(model, body))


FEEDBACK = {
    "status_code": 202,
    "response_model": FeedbackAccepted,
    "responses": error_responses(400, 401, 403, 404, 409, 415, 422),
}


@v1.post(
    "/feedback",
    summary="Record the observed outcome of a default-model prediction",
    dependencies=[Depends(require_scope(Scope.FEEDBACK, "POST /v1/feedback")), Depends(require_json)],
    **FEEDBACK,
)
@by_model.post(
    "/feedback",
    summary="Record the observed outcome of a prediction",
    dependencies=[Depends(require_scope(Scope.FEEDBACK, "POST /v1/models/{name}/feedback")), Depends(require_json)],
    **FEEDBACK,
)
async def feedback(request: Request, body: Feedback, model: Model) -> dict[str, Any]:
    """Store ``{request_id, outcome}`` beside the model's prediction log, for the A/B evaluation: once per request id,
    with the key it came with (a key with the feedback scope: the system that knows outcomes, not the predict client).

    An id this service never issued gets 404 (ids carry a check tag any replica can verify); a second outcome for the
    same id at this replica gets 409 (readers keep the first outcome of an id should another reach another replica);
    PUT /feedback/{request_id} corrects one, audited."""
    if not is_issued(body.request_id, model.request_id_key):
        raise ApiError(404, f"unknown request_id {body.request_id[:64]!r}: not one this service issued", "not_found")
    seen = model.feedback_seen
    if body.request_id in seen:
        raise ApiError(409, f"feedback for request_id {body.request_id!r} was already recorded", "duplicate")
    source = request.state.key_source
    model.feedback.append([FeedbackRow(body.request_id, body.outcome, time.time(), source)])
    seen[body.request_id] = None
    while len(seen) > model.settings.serving.feedback_memory:
        seen.popitem(last=False)
    return {"accepted": True, "request_id": body.request_id}


CORRECT = {
    "response_model": FeedbackCorrected,
    "responses": error_responses(400, 401, 403, 404, 415, 422, 503),
}


@v1.put(
    "/feedback/{request_id}",
    summary="Correct the recorded outcome of a default-model prediction (audited)",
    dependencies=[Depends(require_scope(Scope.CORRECTION, "PUT /v1/feedback/{request_id}")), Depends(require_json)],
    **CORRECT,
)
@by_model.put(
    "/feedback/{request_id}",
    summary="Correct the recorded outcome of a prediction (audited)",
    dependencies=[
        Depends(require_scope(Scope.CORRECTION, "PUT /v1/models/{name}/feedback/{request_id}")),
        Depends(require_json),
    ],
    **CORRECT,
)
async def correct_feedback(
    request: Request, request_id: Annotated[str, Path(max_length=64)], body: FeedbackCorrection, model: Model
) -> dict[str, Any]:
    """Replace the outcome of ``request_id``: the only way an outcome changes once recorded (a second POST gets 409,
    and readers keep the first outcome of an id over any later plain one). Needs the correction scope (the admin
    key); the decision history records the new outcome, the reason and which key asked."""
    if not is_issued(request_id, model.request_id_key):
        raise ApiError(404, f"unknown request_id {request_id[:64]!r}: not one this service issued", "not_found")
    actor = f"api:{request.state.key_source}"
    record = functools.partial(operations.correct_outcome, model.settings, request_id, body.outcome, body.reason, actor)
    try:
        row = await asyncio.get_running_loop().run_in_executor(model.registry_executor, record)
    except Exception as error:  # no history row, no correction: the audit comes first
        raise ApiError(
            503, f"the decision history cannot record the correction: {error}", "history_unavailable"
        ) from error
    model.feedback.append([FeedbackRow(request_id, body.outcome, time.time(), f"{CORRECTION}{row.id}")])
    return {"corrected": True, "request_id": request_id, "history_id": row.id}


def model_view(model: ModelState) -> dict[str, Any]:
    """What one hosted model serves right now (ModelView)."""
    holder = model.holder
    return {
        "model_name": holder.model_name,
        "models": {
            str(alias): {
                "version": m.version,
                "run_id": m.run_id,
                "threshold": m.threshold,
                "operating_point": m.operating_point,
                "loaded_at": m.loaded_at,
                "fast_path": m.compiled is not None,
            }
            for alias, m in holder.models.items()
        },
        "routing": holder.experiment.to_dict(),
        "registry_error": holder.registry_error,
    }


@v1.get("/models", response_model=ModelsView, summary="Every model served here; the default model's details")
async def models(state: App) -> dict[str, Any]:
    """Each hosted model with its loaded versions and readiness; ``model_name``, ``models``, ``routing`` and
    ``registry_error`` are the default model's (as before models were specs)."""
    default = state.models.get(state.default) if state.default else None
    view = (
        model_view(default)
        if default is not None
        else {"model_name": None, "models": {}, "routing": None, "registry_error": None}
    )
    return {**view, "default": state.default, "hosted": {n: m.readiness() for n, m in state.models.items()}}


@by_model.get("", response_model=ModelView, responses=error_responses(404), summary="Loaded versions and routing")
async def model_detail(model: Model) -> dict[str, Any]:
    """What this model serves right now: versions by alias, the live experiment, the last registry error."""
    return model_view(model)


ROUTING = {
    "response_model": Routing,
    "responses": error_responses(400, 401, 403, 404, 415, 422, 503),
}


@admin.put(
    "/routing",
    dependencies=[Depends(require_scope(Scope.ROUTING, "PUT /v1/routing")), Depends(require_json)],
    summary="Change the default model's variant weights or mode live",
    **ROUTING,
)
@by_model.put(
    "/routing",
    dependencies=[Depends(require_scope(Scope.ROUTING, "PUT /v1/models/{name}/routing")), Depends(require_json)],
    summary="Change variant weights or mode live",
    **ROUTING,
)
async def put_routing(request: Request, body: RoutingUpdate, model: Model) -> dict[str, Any]:
    """Change the model's live experiment for every replica (mode and experiment id are kept when not given);
    assignments stay sticky for the same experiment id. Needs a key with the routing scope: the admin key
    (serving.api_key)."""
    current = model.holder.experiment
    changes = {"weights": dict(body.weights), "mode": body.mode, "experiment": body.experiment}
    try:  # refuse an invalid experiment before anything is written
        RoutingConfig(
            experiment=body.experiment or current.experiment, weights=changes["weights"], mode=body.mode or current.mode
        )
    except ValueError as error:
        detail = [{"loc": ["body", "weights"], "msg": str(error), "type": "value_error"}]
        raise ApiError(422, detail, "invalid_input") from error
    actor = f"api:{request.method} {request.url.path}"  # a hosted model's path: bounded
    # Through the model holder, so this replica uses the change at once; on the model's registry thread, history
    # included: it reads the registry state it records.
    change = functools.partial(operations.route, model.settings, actor, **changes, apply=model.holder.update_experiment)
    try:
        config = await asyncio.get_running_loop().run_in_executor(model.registry_executor, change)
    except operations.RoutingNotRecorded as error:  # the change is live: a history store that is down is no error
        log.exception("%s routing changed to %s but the decision history could not record it", model.name, error.config)
        config = error.config
    except Exception as error:  # the registry holds the live experiment: without it nothing changes anywhere
        raise ApiError(503, f"the registry could not record the routing: {error}", "registry_unavailable") from error
    return config.to_dict()


HISTORY = {"response_model": HistoryView, "responses": error_responses(401, 403, 404, 422, 503)}


@v1.get(
    "/history",
    summary="What the default model served at a time, and the decisions up to it",
    dependencies=[Depends(require_scope(Scope.HISTORY, "GET /v1/history"))],
    **HISTORY,
)
@by_model.get(
    "/history",
    summary="What served at a time, and the decisions up to it",
    dependencies=[Depends(require_scope(Scope.HISTORY, "GET /v1/models/{name}/history"))],
    **HISTORY,
)
async def get_history(
    model: Model,
    at: Annotated[
        str | None,
        Query(
            description="RFC 3339 time, e.g. 2026-11-25T10:00:00Z (UTC if no offset); now when omitted",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Which version was champion, with which routing, at ``at``; and the model's decisions made by then, newest
    first."""
    moment = datetime.now(UTC) if at is None else parse_at(at)

    def read() -> dict[str, Any]:
        served = history.state_at(model.settings, moment)
        rows = history.rows(model.settings, at=moment, limit=limit)
        return {
            "at": moment.astimezone(UTC).isoformat(),
            "state": served.to_dict() if served else None,
            "decisions": [history_row(r) for r in rows],
        }

    try:
        return await asyncio.get_running_loop().run_in_executor(None, read)
    except Exception as error:
        raise ApiError(503, f"the decision history cannot be read: {error}", "history_unavailable") from error


def parse_at(text: str) -> datetime:
    """An RFC 3339 time (``airloop.times.parse_time``, strict); 422 naming ``at`` otherwise."""
    try:
        return times.parse_time(text, "at", strict=True)
    except ValueError as error:
        detail = [{"loc": ["query", "at"], "msg": f"not an RFC 3339 time: {text[:64]!r}", "type": "value_error"}]
        raise ApiError(422, detail, "invalid_input") from error


def history_row(row: Any) -> dict[str, Any]:
    """One ledger row as the API shows it."""
    return {
        "id": row.id,
        "kind": row.kind,
        "subject": row.subject,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at.isoformat(),
        "outcome": row.outcome,
        "outcome_detail": row.outcome_detail,
        "summary": history.summary(row),
        "payload": row.payload,
    }


RELOAD = {"response_model": ReloadResult, "responses": error_responses(401, 403, 404)}


@admin.post(
    "/reload",
    dependencies=[Depends(require_scope(Scope.RELOAD, "POST /v1/reload"))],
    summary="Check the default model's registry aliases now",
    **RELOAD,
)
@by_model.post(
    "/reload",
    dependencies=[Depends(require_scope(Scope.RELOAD, "POST /v1/models/{name}/reload"))],
    summary="Check the registry aliases now",
    **RELOAD,
)
async def reload(model: Model) -> dict[str, Any]:
    """Poll the model's registered model immediately instead of waiting for the interval (on its own registry
    thread: another model's slow registry never delays it). Needs a key with the reload scope: the admin key or the
    reload key (serving.reload_key)."""
    changed = await asyncio.get_running_loop().run_in_executor(model.registry_executor, model.holder.refresh)
    return {"changed": changed, "versions": model.holder.versions(), "registry_error": model.holder.registry_error}


@ops.get("/health", response_model=Health, summary="The process is up")
async def health() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@ops.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "No hosted model has a champion loaded"}},
    summary="Every hosted model has a champion; degraded names the models that do not or cannot reach the registry",
)
async def ready(state: App) -> JSONResponse:
    """Readiness: 503 while no hosted model has a champion; 200 ``degraded`` naming each model that has none (its own
    routes answer 503) or serves its last good versions because the registry cannot be reached."""
    models = {name: model.readiness() for name, model in state.models.items()}
    versions = models[state.default]["versions"] if state.default in models else {}
    body: dict[str, Any] = {"status": "ready", "versions": versions, "models": models}
    unwell = {name: found for name, found in models.items() if found["status"] != "ready"}
    if unwell:
        body["reason"] = "; ".join(f"{name}: {found['reason']}" for name, found in unwell.items())
        body["status"] = "degraded"
        if all(found["status"] == "not_ready" for found in models.values()):
            return JSONResponse({**body, "status": "not_ready"}, status_code=503)
    return JSONResponse(body)


@ops.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(state: App) -> Response:
    """Prometheus text format."""
    for model in state.models.values():
        model.observe_logs()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
