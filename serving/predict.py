"""One prediction request of one hosted model, FastAPI-free: validate the body, plan the variants, score, log, count.

The route reads the body and answers with what ``predict`` returns; everything between is here. Walk: validate against
the champion's signature -> ``airloop.experiments.routing.plan`` -> the variant's micro-batcher -> the loaded model ->
the model's prediction (or error) log -> the metrics.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pydantic import BaseModel, ValidationError

from airloop.experiments.routing import Plan, plan
from airloop.predlog import ErrorRow, PredictionRow, new_request_ids
from airloop.registry.contract import Alias
from serving.errors import ApiError
from serving.model_holder import LoadedModel
from serving.schemas import ENTITY_ID, request_model
from serving.state import ModelState


def parse_json(body: bytes) -> Any:
    """JSON or a 400 naming where it broke."""
    try:
        return json.loads(body)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer past Python's digit limit
        raise ApiError(400, f"malformed JSON: {error}", "malformed_json") from error
    except RecursionError as error:
        raise ApiError(400, "malformed JSON: nested too deeply", "malformed_json") from error


def request_validator(state: ModelState, model: LoadedModel) -> type[BaseModel]:
    """The predict body model of a variant's signature (built once per input key)."""
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
    state: ModelState, body: bytes, models: dict[str, LoadedModel]
) -> tuple[list[str | int | None], Plan, dict[str, list[dict[str, Any]]], bool]:
    """Validate a predict body, assign its records and give each variant its records, validated against that
    variant's own signature (one pass from the bytes when every loaded variant takes the same records); and whether
    the body asks for explanations."""
    max_records = state.settings.serving.max_batch_records
    champion = models[Alias.CHAMPION]
    experiment = state.holder.experiment
    if all(m.input_key == champion.input_key for m in models.values()):
        parsed = parse_body(request_validator(state, champion), body, max_records)
        records = [dict(r.__dict__) for r in parsed.records]  # flat records of plain values; cheaper than model_dump
        entity_ids = [r.pop(ENTITY_ID) for r in records]
        assigned = plan(experiment, entity_ids, set(models), state.rng, state.settings.loop.score_both)
        groups = {v: [records[i] for i in rows] for v, rows in assigned.groups.items()}
        return entity_ids, assigned, groups, parsed.explain
    envelope = parse_body(state.envelope, body, max_records)
    raw = envelope.records
    entity_ids = []
    for i, record in enumerate(raw):
        entity_id = record.get(ENTITY_ID)
        if entity_id is not None and (isinstance(entity_id, bool) or not isinstance(entity_id, str | int)):
            loc = ["body", "records", i, ENTITY_ID]
            detail = [{"loc": loc, "msg": "must be a string or an integer", "type": "type"}]
            raise ApiError(422, detail, "invalid_input")
        entity_ids.append(entity_id)
    assigned = plan(experiment, entity_ids, set(models), state.rng, state.settings.loop.score_both)
    per_variant: dict[str, list[dict[str, Any]]] = {}
    for variant, rows in assigned.groups.items():
        record_type, kept, valid = models[variant].record, [], []
        for i in rows:
            try:
                record = dict(record_type.model_validate(raw[i]).__dict__)
            except ValidationError as error:
                if not assigned.is_served(i, variant):  # a shadow score it cannot make is skipped, not an error
                    state.metrics.errors.labels("shadow_invalid_input", state.name).inc()
                    continue
                raise validation_error(error, max_records, ("records", i)) from error
            record.pop(ENTITY_ID)
            kept.append(i)
            valid.append(record)
        assigned.groups[variant] = kept
        per_variant[variant] = valid
    return entity_ids, assigned, per_variant, envelope.explain


async def predict(state: ModelState, body: bytes) -> dict[str, Any]:
    """The answer to a predict ``body`` (JSON bytes) by the model ``state`` hosts: ``{"predictions": [...]}``, one
    per record in order; every score (served or shadow) is in the model's prediction log and metrics.

    Raises:
        ApiError: 400/413/422 for the body, 503 when no champion of this model is loaded or when
            ``serving.max_queued_records`` already wait for a variant (with Retry-After).
        Exception: what the model raised when a variant that answers records failed (also in the error log).
    """
    models = state.holder.models
    if Alias.CHAMPION not in models:
        raise ApiError(503, state.not_ready_reason(), "not_ready")
    experiment = state.holder.experiment
    entity_ids, assigned, per_variant, explain = variant_records(state, body, models)
    order = [v for v in assigned.groups if assigned.groups[v]]
    full = [v for v in order if not state.batchers[v].has_room(len(per_variant[v]))]  # an empty queue takes any
    if full:  # checked for every variant before any is queued: nothing of this request is scored, nothing logged
        limit = state.settings.serving.max_queued_records
        raise ApiError(
            503, f"overloaded: {', '.join(full)} has its limit of {limit} records waiting (serving.max_queued_records);"
            " retry shortly", "overloaded",
            headers={"Retry-After": "1"},
        )  # fmt: skip
    # Explained in the model thread right after scoring, by the same version: only the records a variant serves.
    masks = {v: [assigned.is_served(i, v) for i in assigned.groups[v]] if explain else None for v in order}
    scored = await asyncio.gather(
        *(state.batchers[v].submit(per_variant[v], models[v], masks[v]) for v in order), return_exceptions=True
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
            results.append((None, model, None, None))
            continue
        # A shadow score that failed costs the caller nothing: answer with the champion, count it.
        state.metrics.errors.labels("shadow_scoring_failed", state.name).inc()
        assigned.groups[variant] = []
        results.append((None, model, None, None))
    if failed is not None:
        raise failed
    request_ids = new_request_ids(len(entity_ids), state.request_id_key)
    answers: list[dict[str, Any] | None] = [None] * len(entity_ids)
    rows = []
    for variant, (probabilities, model, latency_ms, explanations) in zip(order, results, strict=True):
        if probabilities is None:
            continue
        state.metrics.model_latency.labels(state.name, variant).observe(latency_ms / 1000)
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
                    "operating_point": model.operating_point,
                }
                if explanations is not None and explanations[j] is not None:
                    answers[i].update(explanations[j])
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
                state.metrics.predictions.labels(state.name, variant, model.version, role).inc(count)
    state.predictions.append(rows)
    return {"predictions": answers}
