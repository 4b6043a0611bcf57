"""HTTP routes: /v1/predict, /v1/feedback, /v1/models, /v1/routing, /v1/reload, /health, /ready, /metrics."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from airloop.experiments.routing import RoutingConfig, assign
from serving.models import LoadedModel
from serving.schemas import ENTITY_ID, Feedback, PredictResponse, RoutingUpdate, record_model, request_model
from serving.state import AppState, get_state

v1 = APIRouter(prefix="/v1", tags=["predictions"])
admin = APIRouter(prefix="/v1", tags=["admin"])
ops = APIRouter(tags=["operations"])
State = Annotated[AppState, Depends(get_state)]


class ApiError(Exception):
    """A client-visible error: status code and FastAPI-style detail."""

    def __init__(self, status: int, detail: Any, kind: str) -> None:
        self.status, self.detail, self.kind = status, detail, kind


def require_api_key(state: State, x_api_key: Annotated[str | None, Header(description="admin API key")] = None) -> None:
    """Admin endpoints: 401 without a key, 403 with a wrong one (or when no key is configured)."""
    expected = state.settings.serving.api_key
    if not x_api_key:
        raise ApiError(401, "missing X-API-Key header", "unauthorized")
    if not expected or not secrets.compare_digest(x_api_key, expected):
        raise ApiError(403, "invalid API key", "forbidden")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (checked before and while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
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


def parse_json(body: bytes) -> Any:
    """JSON or a 400 naming where it broke."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"malformed JSON: {error}", "malformed_json") from error


def validator(state: AppState, champion: LoadedModel) -> type[BaseModel]:
    """The request model for the champion's signature (built once per signature)."""
    key = tuple(champion.columns)
    if key not in state.request_models:
        nullable = {name for name, kind in champion.columns if kind == "string"}
        record = record_model(champion.columns, nullable)
        state.request_models[key] = (request_model(record, state.settings.serving.max_batch_records), record)
    return state.request_models[key][0]


def validation_error(error: ValidationError, max_records: int) -> ApiError:
    """422 with one entry per bad field; 413 when the batch is over the limit."""
    details = [
        {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    if any(d["type"] == "too_long" and d["loc"] == ["body", "records"] for d in details):
        return ApiError(413, f"batch exceeds the limit of {max_records} records", "batch_too_large")
    return ApiError(422, details, "invalid_input")


@v1.post(
    "/predict",
    response_model=PredictResponse,
    summary="Score one or more encounters",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def predict(request: Request, state: State) -> JSONResponse:
    """Body: ``{"records": [{<feature>: value, ..., "entity_id": optional}]}``; answers in the same order."""
    serving = state.settings.serving
    body = await read_body(request, serving.max_body_bytes)
    models = state.holder.models
    champion = models.get("champion")
    if champion is None:
        raise ApiError(503, "no champion model is loaded yet", "not_ready")
    try:
        # Parsed and validated straight from the bytes by pydantic-core: no intermediate Python dicts.
        parsed = validator(state, champion).model_validate_json(body)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            parse_json(body)  # raises the 400 with the decoder's position
        raise validation_error(error, serving.max_batch_records) from error
    records = [dict(r.__dict__) for r in parsed.records]  # flat records of plain values; cheaper than model_dump
    entity_ids = [r.pop(ENTITY_ID) for r in records]
    routing = state.routing
    available = set(models)
    groups: dict[str, list[int]] = {}
    if routing.mode == "shadow":
        primary = ["champion"] * len(records)
        groups["champion"] = list(range(len(records)))
        if "challenger" in available:
            groups["challenger"] = list(range(len(records)))
    else:
        primary = [assign(routing, entity_id, available, state.rng) for entity_id in entity_ids]
        for i, variant in enumerate(primary):
            groups.setdefault(variant, []).append(i)
    order = list(groups)
    results = await asyncio.gather(*(state.batchers[v].submit([records[i] for i in groups[v]]) for v in order))
    now = time.time()
    request_ids = [uuid.uuid4().hex for _ in records]
    answers: list[dict[str, Any] | None] = [None] * len(records)
    rows = []
    for variant, (probabilities, model) in zip(order, results, strict=True):
        for i, p in zip(groups[variant], probabilities.tolist(), strict=True):
            served = primary[i] == variant
            predicted = int(p >= model.threshold)
            if served:
                answers[i] = {
                    "request_id": request_ids[i],
                    "predicted_class": predicted,
                    "probability": p,
                    "variant": variant,
                    "model_version": model.version,
                }
            rows.append(
                {
                    "request_id": request_ids[i],
                    "timestamp": now,
                    "entity_id": None if entity_ids[i] is None else str(entity_ids[i]),
                    "variant": variant,
                    "model_version": model.version,
                    "served": served,
                    "experiment": state.routing.experiment,
                    "probability": p,
                    "predicted_class": predicted,
                    **records[i],
                }
            )
        role = "shadow" if routing.mode == "shadow" and variant == "challenger" else "served"
        state.metrics.predictions.labels(variant, model.version, role).inc(len(groups[variant]))
    state.predictions.append(rows)
    # Already the documented shape (PredictResponse): skip FastAPI's re-validation of the response.
    return JSONResponse({"predictions": answers})


@v1.post("/feedback", status_code=202, summary="Record the observed outcome of a prediction")
async def feedback(body: Feedback, state: State) -> dict[str, Any]:
    """Store ``{request_id, outcome}`` beside the prediction log, for the A/B evaluation."""
    state.feedback.append([{"request_id": body.request_id, "outcome": body.outcome, "timestamp": time.time()}])
    return {"accepted": True, "request_id": body.request_id}


def routing_view(routing: RoutingConfig) -> dict[str, Any]:
    """The routing as JSON."""
    return {"experiment": routing.experiment, "mode": routing.mode, "weights": routing.weights}


@v1.get("/models", summary="Loaded models, aliases, versions and routing")
async def models(state: State) -> dict[str, Any]:
    """What is being served right now."""
    return {
        "model_name": state.holder.model_name,
        "models": {
            alias: {
                "version": m.version,
                "run_id": m.run_id,
                "threshold": m.threshold,
                "loaded_at": m.loaded_at,
                "fast_path": m.compiled is not None,
            }
            for alias, m in state.holder.models.items()
        },
        "routing": routing_view(state.routing),
        "registry_error": state.holder.registry_error,
    }


@admin.put("/routing", dependencies=[Depends(require_api_key)], summary="Change variant weights or mode live")
async def put_routing(body: RoutingUpdate, state: State) -> dict[str, Any]:
    """Replace the routing; assignments stay sticky for the same experiment name."""
    try:
        state.routing = RoutingConfig(
            experiment=body.experiment or state.routing.experiment, weights=dict(body.weights), mode=body.mode
        )
    except ValueError as error:
        detail = [{"loc": ["body", "weights"], "msg": str(error), "type": "value_error"}]
        raise ApiError(422, detail, "invalid_input") from error
    return routing_view(state.routing)


@admin.post("/reload", dependencies=[Depends(require_api_key)], summary="Check the registry aliases now")
async def reload(state: State) -> dict[str, Any]:
    """Poll the registry immediately instead of waiting for the interval."""
    changed = await asyncio.get_running_loop().run_in_executor(None, state.holder.refresh)
    return {"changed": changed, "versions": state.holder.versions(), "registry_error": state.holder.registry_error}


@ops.get("/health", summary="The process is up")
async def health() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@ops.get("/ready", summary="A champion is loaded; degraded when the registry cannot be reached")
async def ready(state: State) -> JSONResponse:
    """Readiness: 503 without a champion; 200 ``degraded`` with the reason while serving the last good models."""
    versions = state.holder.versions()
    if "champion" not in versions:
        reason = state.holder.registry_error or "no champion alias in the registry"
        return JSONResponse({"status": "not_ready", "reason": reason, "versions": versions}, status_code=503)
    if state.holder.registry_error:
        return JSONResponse({"status": "degraded", "reason": state.holder.registry_error, "versions": versions})
    return JSONResponse({"status": "ready", "versions": versions})


@ops.get("/metrics", summary="Prometheus metrics")
async def metrics(state: State) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
