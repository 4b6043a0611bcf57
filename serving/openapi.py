"""The OpenAPI document: /v1/predict's body described from the champion's MLflow signature, and the error bodies."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from airloop.registry.contract import Alias
from serving.schemas import ENTITY_ID, ErrorResponse
from serving.state import AppState

PREDICT_PATH = "/v1/predict"
PREDICT_REQUEST = "PredictRequest"
PREDICT_REQUEST_REF = {"$ref": f"#/components/schemas/{PREDICT_REQUEST}"}

_ERRORS = {
    400: "Malformed JSON: `detail` says where it broke",
    401: "No X-API-Key header",
    403: "Wrong API key, or no key configured on the server",
    413: "The body is over the byte limit or the batch over the record limit",
    404: "Unknown `request_id`: not one this service issued (each carries a check tag)",
    409: "Feedback for this `request_id` was already recorded",
    415: "The body is not declared as JSON: send `Content-Type: application/json`",
    422: "Missing, unknown or mistyped fields: `detail` has one entry per field, `loc` naming it",
    503: "Not ready: no champion model is loaded yet, or the registry cannot be reached (`detail` says which)",
}
# A placeholder of each JSON type for the example request (numbers are moved into their bounds, if any).
_PLACEHOLDERS: dict[str, Any] = {"number": 0.0, "integer": 0, "string": "string", "boolean": False}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these client errors, all with the ErrorResponse body."""
    return {status: {"model": ErrorResponse, "description": _ERRORS[status]} for status in statuses}


def example_value(schema: dict[str, Any]) -> Any:
    """A value a property schema accepts: its first enum value, else a placeholder of its first non-null type."""
    for option in schema.get("anyOf", [schema]):
        if "enum" in option:
            return option["enum"][0]
        kind = option.get("type")
        if kind in ("number", "integer"):
            return min(max(_PLACEHOLDERS[kind], option.get("minimum", -math.inf)), option.get("maximum", math.inf))
        if kind in _PLACEHOLDERS:
            return _PLACEHOLDERS[kind]
    return None


def predict_example(schemas: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """A one-record /v1/predict body that ``request`` (the JSON schema of the request model) accepts."""
    record = schemas[request["properties"]["records"]["items"]["$ref"].rsplit("/", 1)[1]]
    values = {name: example_value(schema) for name, schema in record["properties"].items()}
    return {"records": [{**values, ENTITY_ID: "patient-1"}]}


def _without_champion(max_records: int) -> dict[str, Any]:
    return {
        "title": PREDICT_REQUEST,
        "type": "object",
        "description": "The record's fields are described here once a champion model is loaded.",
        "properties": {
            "records": {"type": "array", "items": {"type": "object"}, "minItems": 1, "maxItems": max_records}
        },
        "required": ["records"],
        "additionalProperties": False,
    }


def describe_predict_body(
    app: FastAPI, request_model: Callable[[AppState, Any], type[BaseModel]], max_records: int
) -> None:
    """Make ``app.openapi()`` describe /v1/predict's body with ``request_model(state, champion)``, the model the route
    validates the champion's records with: fields, types, nullability, domains, the batch limit and an example."""
    documents: dict[type[BaseModel] | None, dict[str, Any]] = {}  # one per request model, i.e. per signature

    def openapi() -> dict[str, Any]:
        state = getattr(app.state, "airloop", None)
        champion = None if state is None else state.holder.models.get(Alias.CHAMPION)
        model = None if champion is None else request_model(state, champion)
        document = documents.get(model)
        if document is None:
            document = copy.deepcopy(FastAPI.openapi(app))  # FastAPI's own document, generated once
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            if model is None:
                schemas[PREDICT_REQUEST] = _without_champion(max_records)
            else:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(body.pop("$defs", {}))
                schemas[PREDICT_REQUEST] = {**body, "description": f"1 to {max_records} records, answered in order."}
                media = document["paths"][PREDICT_PATH]["post"]["requestBody"]["content"]["application/json"]
                media["example"] = predict_example(schemas, body)
            documents[model] = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
