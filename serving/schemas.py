"""Request and response bodies. The record model is built from the served model's MLflow signature."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

from airloop.experiments.routing import VARIANTS

# MLflow column types -> JSON types. Strict: "3" is not a number; a JSON int is accepted where a float is expected.
_TYPES: dict[str, Any] = {
    "double": StrictFloat,
    "float": StrictFloat,
    "long": StrictInt,
    "integer": StrictInt,
    "string": StrictStr,
    "boolean": bool,
}
ENTITY_ID = "entity_id"


def record_model(columns: list[tuple[str, str]], domains: dict[str, list[str]] | None = None) -> type[BaseModel]:
    """A strict pydantic model of one record: every signature column required, unknown fields and NaN refused.

    String fields accept null (missing) unless they have a closed domain (e.g. the age bucket), which must be one of
    its values.
    """
    domains = domains or {}
    fields: dict[str, Any] = {
        ENTITY_ID: (StrictStr | StrictInt | None, Field(None, description="sticky A/B key, e.g. patient_nbr")),
    }
    for name, kind in columns:
        if name in domains:
            fields[name] = (Literal[tuple(domains[name])], ...)
            continue
        annotation = _TYPES.get(kind, StrictStr)
        fields[name] = (annotation | None, ...) if annotation is StrictStr else (annotation, ...)
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    return create_model("Record", __config__=config, **fields)


def request_model(record: type[BaseModel], max_records: int) -> type[BaseModel]:
    """The /v1/predict body: ``records``, a list of 1..max_records records."""
    config = ConfigDict(extra="forbid")
    return create_model(
        "PredictRequest", __config__=config, records=(list[record], Field(..., min_length=1, max_length=max_records))
    )


class Prediction(BaseModel):
    """One record's answer."""

    request_id: str
    predicted_class: int = Field(description="1 = readmitted within 30 days (probability >= the model's threshold)")
    probability: float
    variant: str
    model_version: str


class PredictResponse(BaseModel):
    """Answers in the order of the request's records."""

    predictions: list[Prediction]


class Feedback(BaseModel):
    """The observed outcome of an earlier prediction."""

    model_config = ConfigDict(extra="forbid")

    request_id: StrictStr = Field(min_length=1, max_length=64)
    outcome: Literal[0, 1] = Field(description="1 when the patient was readmitted within 30 days")


class RoutingUpdate(BaseModel):
    """A new routing: variant weights, mode and (optionally) a new experiment salt."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[Literal[VARIANTS], float] = Field(min_length=1)
    mode: Literal["ab", "shadow"] = "ab"
    experiment: StrictStr | None = None


def envelope_model(max_records: int) -> type[BaseModel]:
    """The /v1/predict body with records left unvalidated (each is then checked against its variant's signature)."""
    return request_model(dict[str, Any], max_records)
