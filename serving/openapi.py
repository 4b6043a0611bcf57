"""The OpenAPI document: one section (tag) per hosted model, each model's predict body described from its champion's
MLflow signature with an example, /v1/predict's from the default model's, and the error bodies.

The routes of /v1/models/{name}/... are declared once; the document shows them once per hosted model, under that
model's own path and tag, so /docs reads as one API per model.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from airloop.registry.contract import Alias
from serving.predict import request_validator
from serving.schemas import ENTITY_ID, ErrorResponse
from serving.state import AppState

PREDICT_PATH = "/v1/predict"
MODEL_PATH = "/v1/models/{name}"
PREDICT_REQUEST = "PredictRequest"
PREDICT_REQUEST_REF = {"$ref": f"#/components/schemas/{PREDICT_REQUEST}"}

_ERRORS = {
    400: "Malformed JSON: `detail` says where it broke",
    401: "No X-API-Key header",
    403: "Wrong API key, or no key configured on the server",
    413: "The body is over the byte limit or the batch over the record limit",
    404: "Unknown model (`detail` names the models served here), or an unknown `request_id` (each carries a check tag)",
    409: "Feedback for this `request_id` was already recorded",
    415: "The body is not declared as JSON: send `Content-Type: application/json`",
    422: "Missing, unknown or mistyped fields: `detail` has one entry per field, `loc` naming it",
    503: "Not ready: no champion of this model is loaded yet, or the registry cannot be reached (`detail` says which)",
}
# A placeholder of each JSON type for the example request (numbers are moved into their bounds, if any).
_PLACEHOLDERS: dict[str, Any] = {"number": 0.0, "integer": 0, "string": "string", "boolean": False}


@dataclass(frozen=True)
class DocumentedModel:
    """What the document says of a hosted model before (and whether or not) its champion is loaded."""

    description: str
    max_records: int


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
    """A one-record predict body that ``request`` (the JSON schema of the request model) accepts."""
    record = schemas[request["properties"]["records"]["items"]["$ref"].rsplit("/", 1)[1]]
    values = {name: example_value(schema) for name, schema in record["properties"].items()}
    return {"records": [{**values, ENTITY_ID: "entity-1"}]}


def _without_champion(max_records: int, title: str) -> dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "description": "The record's fields are described here once a champion model is loaded.",
        "properties": {
            "records": {"type": "array", "items": {"type": "object"}, "minItems": 1, "maxItems": max_records},
            "explain": {"type": "boolean", "default": False},
        },
        "required": ["records"],
        "additionalProperties": False,
    }


def _describe_body(
    document: dict[str, Any], path: str, model: type[BaseModel] | None, max_records: int, suffix: str
) -> None:
    """The predict body of ``path`` as ``PredictRequest<suffix>`` (its records' schemas suffixed alike)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    name = PREDICT_REQUEST + suffix
    media = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    media["schema"] = {"$ref": f"#/components/schemas/{name}"}
    if model is None:
        schemas[name] = _without_champion(max_records, name)
        return
    body = model.model_json_schema(ref_template="#/components/schemas/{model}" + suffix)
    schemas.update({key + suffix: value for key, value in body.pop("$defs", {}).items()})
    schemas[name] = {**body, "title": name, "description": f"1 to {max_records} records, answered in order."}
    media["example"] = predict_example(schemas, body)


def _per_model(document: dict[str, Any], hosted: dict[str, DocumentedModel], default: str | None) -> None:
    """Replace each /v1/models/{name}/... path by one path per hosted model, tagged with the model's name."""
    paths = document["paths"]
    templated = {path: paths.pop(path) for path in list(paths) if path.startswith(MODEL_PATH)}
    tags = []
    for name, model in hosted.items():
        for path, operations in templated.items():
            concrete = paths[path.replace("{name}", name)] = copy.deepcopy(operations)
            for operation in concrete.values():
                operation["tags"] = [name]
                operation["operationId"] = operation["operationId"].replace("__name__", f"_{name}_")
        also = " The default model: also at /v1/predict, /v1/feedback, /v1/history, /v1/routing, /v1/reload."
        tags.append({"name": name, "description": model.description + (also if name == default else "")})
    document["tags"] = tags


def champion_body(state: AppState, name: str) -> type[BaseModel] | None:
    """The model that validates the records of model ``name``'s loaded champion (None before one is loaded)."""
    model = state.models[name]
    champion = model.holder.models.get(Alias.CHAMPION)
    return None if champion is None else request_validator(model, champion)


def describe_api(app: FastAPI, hosted: dict[str, DocumentedModel], default: str | None) -> None:
    """Make ``app.openapi()`` show every hosted model's routes under its own tag, each predict body described from
    that model's champion (the model its route validates champion records with): fields, types, nullability, domains,
    the batch limit and an example; /v1/predict's from the default model's."""
    documents: dict[tuple, dict[str, Any]] = {}  # one per combination of request models, i.e. of signatures

    def openapi() -> dict[str, Any]:
        state = getattr(app.state, "airloop", None)
        bodies = {name: None if state is None else champion_body(state, name) for name in hosted}
        key = tuple(bodies.items())
        document = documents.get(key)
        if document is None:
            document = copy.deepcopy(FastAPI.openapi(app))  # FastAPI's own document, generated once
            _per_model(document, hosted, default)
            for name, model in hosted.items():
                _describe_body(document, f"/v1/models/{name}/predict", bodies[name], model.max_records, f"_{name}")
            if default in hosted:
                _describe_body(document, PREDICT_PATH, bodies[default], hosted[default].max_records, "")
            else:
                first = next(iter(hosted.values()), None)
                limit = first.max_records if first is not None else 1
                document["components"]["schemas"][PREDICT_REQUEST] = _without_champion(limit, PREDICT_REQUEST)
            documents[key] = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
