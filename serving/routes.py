"""HTTP routes: /v1/predict, /v1/feedback, /v1/models, /v1/history, /v1/routing, /v1/reload, /health, /ready,
/metrics."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from airloop import history, security
from airloop.experiments.routing import Plan, RoutingConfig, plan
from airloop.ledger import Kind
from airloop.monitoring.prediction_log import ErrorRow, FeedbackRow, PredictionRow
from airloop.monitoring.request_ids import is_issued, new_request_ids
from airloop.registry.contract import Alias
from airloop.security import Scope
from serving.model_holder import LoadedModel
from serving.openapi import PREDICT_REQUEST_REF, error_responses
from serving.schemas import (
    ENTITY_ID,
    Feedback,
    FeedbackAccepted,
    Health,
    HistoryView,
    ModelsView,
    PredictResponse,
    Readiness,
    ReloadResult,
    Routing,
    RoutingUpdate,
    request_model,
)
from serving.state import AppState, get_state

log = logging.getLogger(__name__)

v1 = APIRouter(prefix="/v1", tags=["predictions"])
admin = APIRouter(prefix="/v1", tags=["admin"])
ops = APIRouter(tags=["operations"])
State = Annotated[AppState, Depends(get_state)]


class ApiError(Exception):
    """A client-visible error: status code and FastAPI-style detail."""

    def __init__(self, status: int, detail: Any, kind: str) -> None:
        self.status, self.detail, self.kind = status, detail, kind


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the admin API key (serving.api_key)")


def require_scope(scope: Scope, endpoint: str):
    """Admin endpoints: 401 without a key, 403 with an unknown one (or when none is configured) or with a key that
    lacks ``scope`` (``airloop.security.SERVING_KEYS``)."""

    async def check(state: State, x_api_key: Annotated[str | None, Security(api_key_header)]) -> None:
        if not x_api_key:
            raise ApiError(401, "missing X-API-Key header", "unauthorized")
        # The header holds whatever octets the client sent (latin-1 text here): compared as bytes.
        granted = security.key_scopes(state.settings, x_api_key.encode("latin-1"))
        if not granted:
            raise ApiError(403, "invalid API key", "forbidden")
        if scope not in granted:
            needed = " or ".join(security.keys_granting(scope))
            raise ApiError(403, f"this API key lacks the {scope} scope that {endpoint} needs ({needed})", "forbidden")

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


def parse_json(body: bytes) -> Any:
    """JSON or a 400 naming where it broke."""
    try:
        return json.loads(body)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer past Python's digit limit
        raise ApiError(400, f"malformed JSON: {error}", "malformed_json") from error
    except RecursionError as error:
        raise ApiError(400, "malformed JSON: nested too deeply", "malformed_json") from error


def request_validator(state: AppState, model: LoadedModel) -> type[BaseModel]:
    """The /v1/predict body model of a variant's signature (built once per input key)."""
    key = model.input_key
    validator = state.request_models.get(key)
    if validator is None:
        validator = state.request_models[key] = request_model(model.record, state.settings.serving.max_batch_records)
    return validator


def validation_error(error: ValidationError, max_records: int, prefix: tuple = ()) -> ApiError:
    """422 with one entry per bad field; 413 when the batch is over the limit."""
    details = [
        {"loc": ["body", *prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    if any(d["type"] == "too_long" and d["loc"] == ["body", "records"] for d in details):
        return ApiError(413, f"batch exceeds the limit of {max_records} records", "batch_too_large")
    return ApiError(422, details, "invalid_input")


def parse_body(validator: type[BaseModel], body: bytes, max_records: int) -> Any:
    """The body validated straight from the bytes by pydantic-core (no intermediate Python objects)."""
    try:
        return validator.model_validate_json(body)
    except ValidationError as error:
        invalid = [e for e in error.errors() if e["type"] == "json_invalid"]
        if invalid:
            parse_json(body)  # raises the 400 with the decoder's position when the standard decoder refuses it too
            raise ApiError(400, f"malformed JSON: {invalid[0]['msg']}", "malformed_json") from error
        raise validation_error(error, max_records) from error


def variant_records(
    state: AppState, body: bytes, models: dict[str, LoadedModel]
) -> tuple[list[str | int | None], Plan, dict[str, list[dict[str, Any]]]]:
    """Validate a /v1/predict body, assign its records and give each variant its records, validated against that
    variant's own signature (one pass from the bytes when every loaded variant takes the same records)."""
    max_records = state.settings.serving.max_batch_records
    champion = models[Alias.CHAMPION]
    experiment = state.holder.experiment
    if all(m.input_key == champion.input_key for m in models.values()):
        parsed = parse_body(request_validator(state, champion), body, max_records)
        records = [dict(r.__dict__) for r in parsed.records]  # flat records of plain values; cheaper than model_dump
        entity_ids = [r.pop(ENTITY_ID) for r in records]
        assigned = plan(experiment, entity_ids, set(models), state.rng)
        return entity_ids, assigned, {v: [records[i] for i in rows] for v, rows in assigned.groups.items()}
    raw = parse_body(state.envelope, body, max_records).records
    entity_ids = []
    for i, record in enumerate(raw):
        entity_id = record.get(ENTITY_ID)
        if entity_id is not None and (isinstance(entity_id, bool) or not isinstance(entity_id, str | int)):
            loc = ["body", "records", i, ENTITY_ID]
            detail = [{"loc": loc, "msg": "must be a string or an integer", "type": "type"}]
            raise ApiError(422, detail, "invalid_input")
        entity_ids.append(entity_id)
    assigned = plan(experiment, entity_ids, set(models), state.rng)
    per_variant: dict[str, list[dict[str, Any]]] = {}
    for variant, rows in assigned.groups.items():
        record_type, kept, valid = models[variant].record, [], []
        for i in rows:
            try:
                record = dict(record_type.model_validate(raw[i]).__dict__)
            except ValidationError as error:
                if not assigned.is_served(i, variant):  # a shadow score it cannot make is skipped, not an error
                    state.metrics.errors.labels("shadow_invalid_input").inc()
                    continue
                raise validation_error(error, max_records, ("records", i)) from error
            record.pop(ENTITY_ID)
            kept.append(i)
            valid.append(record)
        assigned.groups[variant] = kept
        per_variant[variant] = valid
    return entity_ids, assigned, per_variant


@v1.post(
    "/predict",
    response_model=PredictResponse,
    responses=error_responses(400, 413, 415, 422, 503),
    summary="Score one or more encounters",
    # The body is validated from the raw bytes by a model of the champion's signature, which FastAPI cannot see:
    # serving.openapi describes it under this name.
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": PREDICT_REQUEST_REF}}}},
)
async def predict(request: Request, state: State) -> JSONResponse:
    """Body: ``{"records": [{<field>: value, ..., "entity_id": optional}]}``; answers in the same order."""
    body = await read_body(request, state.settings.serving.max_body_bytes)
    models = state.holder.models
    if Alias.CHAMPION not in models:
        reason = state.holder.registry_error or "no champion model is loaded yet"
        raise ApiError(503, reason, "not_ready")
    experiment = state.holder.experiment
    entity_ids, assigned, per_variant = variant_records(state, body, models)
    order = [v for v in assigned.groups if assigned.groups[v]]
    scored = await asyncio.gather(
        *(state.batchers[v].submit(per_variant[v], models[v]) for v in order), return_exceptions=True
    )
    now = time.time()
    results, failed = [], None
    for variant, result in zip(order, scored, strict=True):
        if not isinstance(result, BaseException):
            results.append(result)
            continue
        served = any(assigned.is_served(i, variant) for i in assigned.groups[variant])
        # Every failed model call is logged for the A/B evaluation's error-rate guardrail.
        error = f"{type(result).__name__}: {result}"[:500]
        model = models[variant]
        count = len(assigned.groups[variant])
        state.errors.append([ErrorRow(now, experiment.experiment, variant, model.version, count, not served, error)])
        if served:
            failed = failed or result  # the answer itself failed: a server error, not the client's
            results.append((None, model, None))
            continue
        # A shadow score that failed costs the caller nothing: answer with the champion, count it.
        state.metrics.errors.labels("shadow_scoring_failed").inc()
        assigned.groups[variant] = []
        results.append((None, model, None))
    if failed is not None:
        raise failed
    request_ids = new_request_ids(len(entity_ids), state.settings.serving.request_id_key)
    answers: list[dict[str, Any] | None] = [None] * len(entity_ids)
    rows = []
    for variant, (probabilities, model, latency_ms) in zip(order, results, strict=True):
        if probabilities is None:
            continue
        records = per_variant[variant]
        for j, (i, p) in enumerate(zip(assigned.groups[variant], probabilities.tolist(), strict=True)):
            served = assigned.is_served(i, variant)
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
                PredictionRow(
                    request_id=request_ids[i],
                    predicted_at=now,
                    experiment_id=experiment.experiment,
                    variant=variant,
                    model_version=model.version,
                    entity_id=None if entity_ids[i] is None else str(entity_ids[i]),
                    probability=p,
                    predicted_class=predicted,
                    shadow=not served,
                    record=records[j],
                    latency_ms=latency_ms,
                )
            )
        served_count = sum(1 for i in assigned.groups[variant] if assigned.is_served(i, variant))
        for role, count in (("served", served_count), ("shadow", len(assigned.groups[variant]) - served_count)):
            if count:
                state.metrics.predictions.labels(variant, model.version, role).inc(count)
    state.predictions.append(rows)
    # Already the documented shape (PredictResponse): skip FastAPI's re-validation of the response.
    return JSONResponse({"predictions": answers})


@v1.post(
    "/feedback",
    status_code=202,
    response_model=FeedbackAccepted,
    responses=error_responses(400, 404, 409, 415, 422),
    dependencies=[Depends(require_json)],
    summary="Record the observed outcome of a prediction",
)
async def feedback(body: Feedback, state: State) -> dict[str, Any]:
    """Store ``{request_id, outcome}`` beside the prediction log, for the A/B evaluation: once per request id.

    An id this service never issued gets 404 (ids carry a check tag any replica can verify); a second outcome for the
    same id at this replica gets 409 (readers keep the latest outcome of an id should one reach another replica)."""
    if not is_issued(body.request_id, state.settings.serving.request_id_key):
        raise ApiError(404, f"unknown request_id {body.request_id[:64]!r}: not one this service issued", "not_found")
    seen = state.feedback_seen
    if body.request_id in seen:
        raise ApiError(409, f"feedback for request_id {body.request_id!r} was already recorded", "duplicate")
    row = FeedbackRow(request_id=body.request_id, outcome=body.outcome, received_at=time.time())
    state.feedback.append([row])
    seen[body.request_id] = None
    while len(seen) > state.settings.serving.feedback_memory:
        seen.popitem(last=False)
    return {"accepted": True, "request_id": body.request_id}


@v1.get("/models", response_model=ModelsView, summary="Loaded models, aliases, versions and routing")
async def models(state: State) -> dict[str, Any]:
    """What is being served right now."""
    return {
        "model_name": state.holder.model_name,
        "models": {
            str(alias): {
                "version": m.version,
                "run_id": m.run_id,
                "threshold": m.threshold,
                "loaded_at": m.loaded_at,
                "fast_path": m.compiled is not None,
            }
            for alias, m in state.holder.models.items()
        },
        "routing": state.holder.experiment.to_dict(),
        "registry_error": state.holder.registry_error,
    }


@admin.put(
    "/routing",
    response_model=Routing,
    responses=error_responses(400, 401, 403, 415, 422, 503),
    dependencies=[Depends(require_scope(Scope.ROUTING, "PUT /v1/routing")), Depends(require_json)],
    summary="Change variant weights or mode live",
)
async def put_routing(body: RoutingUpdate, state: State) -> dict[str, Any]:
    """Change the live experiment for every replica (mode and experiment id are kept when not given); assignments stay
    sticky for the same experiment id. Needs a key with the routing scope: the admin key (serving.api_key)."""
    current = state.holder.experiment
    changes = {"weights": dict(body.weights), "mode": body.mode, "experiment": body.experiment}
    try:  # refuse an invalid experiment before anything is written
        RoutingConfig(
            experiment=body.experiment or current.experiment, weights=changes["weights"], mode=body.mode or current.mode
        )
    except ValueError as error:
        detail = [{"loc": ["body", "weights"], "msg": str(error), "type": "value_error"}]
        raise ApiError(422, detail, "invalid_input") from error
    update = functools.partial(state.holder.update_experiment, "api:PUT /v1/routing", **changes)
    try:
        config = await asyncio.get_running_loop().run_in_executor(None, update)
    except Exception as error:  # the registry holds the live experiment: without it nothing changes anywhere
        raise ApiError(503, f"the registry could not record the routing: {error}", "registry_unavailable") from error
    note = functools.partial(
        history.record, state.settings, Kind.ROUTING_CHANGED, "api:PUT /v1/routing", {"action": "route"}, outcome="done"
    )
    try:
        await asyncio.get_running_loop().run_in_executor(None, note)
    except Exception:  # the change is live; a history store that is down must not turn it into an error
        log.exception("routing changed to %s but the decision history could not record it", config.to_dict())
    return config.to_dict()


@v1.get(
    "/history",
    response_model=HistoryView,
    responses=error_responses(422, 503),
    summary="What served at a time, and the decisions up to it",
)
async def get_history(
    state: State,
    at: Annotated[
        str | None,
        Query(
            description="RFC 3339 time, e.g. 2026-11-25T10:00:00Z (UTC if no offset); now when omitted",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Which version was champion, with which routing, at ``at``; and the decisions made by then, newest first."""
    moment = datetime.now(UTC) if at is None else parse_time(at)

    def read() -> dict[str, Any]:
        served = history.state_at(state.settings, moment)
        rows = history.rows(state.settings, at=moment, limit=limit)
        return {
            "at": moment.astimezone(UTC).isoformat(),
            "state": served.to_dict() if served else None,
            "decisions": [history_row(r) for r in rows],
        }

    try:
        return await asyncio.get_running_loop().run_in_executor(None, read)
    except Exception as error:
        raise ApiError(503, f"the decision history cannot be read: {error}", "history_unavailable") from error


RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)?$", re.ASCII)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (UTC when it has no offset; a leap second read as :59); 422 naming ``at`` otherwise."""
    found = RFC3339.match(text)
    try:
        if found is None:
            raise ValueError("not RFC 3339")
        day, minutes, seconds, fraction, offset = found.groups()
        offset = "+00:00" if offset in (None, "Z", "z") else offset
        moment = datetime.fromisoformat(f"{day}T{minutes}:{min(int(seconds), 59):02d}{(fraction or '')[:7]}{offset}")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
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


@admin.post(
    "/reload",
    response_model=ReloadResult,
    responses=error_responses(401, 403),
    dependencies=[Depends(require_scope(Scope.RELOAD, "POST /v1/reload"))],
    summary="Check the registry aliases now",
)
async def reload(state: State) -> dict[str, Any]:
    """Poll the registry immediately instead of waiting for the interval. Needs a key with the reload scope: the
    admin key or the reload key (serving.reload_key)."""
    changed = await asyncio.get_running_loop().run_in_executor(None, state.holder.refresh)
    return {"changed": changed, "versions": state.holder.versions(), "registry_error": state.holder.registry_error}


@ops.get("/health", response_model=Health, summary="The process is up")
async def health() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@ops.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "No champion is loaded"}},
    summary="A champion is loaded; degraded when the registry cannot be reached",
)
async def ready(state: State) -> JSONResponse:
    """Readiness: 503 without a champion; 200 ``degraded`` with the reason while serving the last good models."""
    versions = state.holder.versions()
    if Alias.CHAMPION not in versions:
        reason = state.holder.registry_error or "no champion alias in the registry"
        return JSONResponse({"status": "not_ready", "reason": reason, "versions": versions}, status_code=503)
    if state.holder.registry_error:
        return JSONResponse({"status": "degraded", "reason": state.holder.registry_error, "versions": versions})
    return JSONResponse({"status": "ready", "versions": versions})


@ops.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(state: State) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
