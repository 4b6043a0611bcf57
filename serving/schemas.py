"""Request and response bodies. The record model is built from the served model's MLflow signature."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    create_model,
)

from airloop.experiments.routing import VARIANTS

# Finite numbers a model can take without overflowing in its preprocessing (a scaler squares nothing, but an
# unbounded double reaches inf after centring and scaling).
MAX_DOUBLE = 1e15


def _whole_number(low: int, high: int):
    def check(value: int | float) -> int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("must be a whole number")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return int(value)

    return check


def _integer(bits: int) -> Any:
    """A JSON integer of ``bits`` bits; 54.0 counts as 54 (JSON does not tell them apart), "54" and true do not."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return Annotated[
        StrictInt | StrictFloat,
        AfterValidator(_whole_number(low, high)),
        WithJsonSchema({"type": "integer", "minimum": low, "maximum": high}),
    ]


# MLflow column types -> JSON types. Strict: "3" is not a number; a JSON int is accepted where a float is expected.
_TYPES: dict[str, Any] = {
    "double": Annotated[StrictFloat, Field(ge=-MAX_DOUBLE, le=MAX_DOUBLE)],
    "float": Annotated[StrictFloat, Field(ge=-MAX_DOUBLE, le=MAX_DOUBLE)],
    "long": _integer(64),
    "integer": _integer(32),
    "string": StrictStr,
    "boolean": StrictBool,
}
ENTITY_ID = "entity_id"


def record_model(columns: list[tuple[str, str]], domains: dict[str, list[str]] | None = None) -> type[BaseModel]:
    """A strict pydantic model of one record: every signature column required, unknown fields and NaN refused.

    String and real-number fields accept null (missing) unless they have a closed domain (e.g. the age bucket), which
    must be one of its values; integer fields do not.
    """
    domains = domains or {}
    fields: dict[str, Any] = {
        ENTITY_ID: (
            StrictStr | StrictInt | None,
            Field(None, description="sticky A/B key: the record's entity (its spec's data.entity)"),
        ),
    }
    for name, kind in columns:
        if name in domains:
            fields[name] = (Literal[tuple(domains[name])], ...)
            continue
        annotation = _TYPES.get(kind, StrictStr)
        # Text and real numbers may be missing (null): the model's feature step says what missing means (a marker's
        # category, an imputed number). An integer column of the signature never held a missing value.
        nullable = annotation is StrictStr or kind in ("double", "float")
        fields[name] = (annotation | None, ...) if nullable else (annotation, ...)
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    return create_model("Record", __config__=config, **fields)


def request_model(record: type[BaseModel], max_records: int) -> type[BaseModel]:
    """The /v1/predict body: ``records``, a list of 1..max_records records, and ``explain`` (off unless sent)."""
    config = ConfigDict(extra="forbid")
    return create_model(
        "PredictRequest",
        __config__=config,
        records=(list[record], Field(..., min_length=1, max_length=max_records)),
        explain=(
            StrictBool,
            Field(False, description="true: each answer carries its top risk factors (`explanation`)"),
        ),
    )


class OperatingPoint(BaseModel):
    """How the version's threshold was chosen on its validation rows."""

    kind: Literal["f1", "recall", "alert_rate"] = Field(
        description="f1: F1-optimal; recall: catches `target` of the positives; alert_rate: flags at most `target`"
    )
    target: float | None = Field(description="the recall or alert rate asked for (None for f1)")
    threshold: float = Field(description="probability at or above which predicted_class is 1")


class Factor(BaseModel):
    """One factor of a score: a field of the record (or a feature built from several), what it added in log-odds."""

    factor: str = Field(description="the record's field, or a derived feature's name when built from several fields")
    columns: list[str] = Field(description="the record's fields it comes from")
    value: Any = Field(description="the field's value as sent (a derived feature: its computed value)")
    label: str = Field(description='readable, e.g. "diag_1 = 428 (circulatory)"')
    contribution: float = Field(description="signed, in log-odds: > 0 raised the risk")


class Band(BaseModel):
    """An interval for the probability."""

    level: float
    low: float
    high: float


class Explanation(BaseModel):
    """Why this version gave this score: ``base_value + sum(factors' contribution) + other_factors == score``
    (log-odds), and ``probability == 1 / (1 + exp(-score))``."""

    method: Literal["tree_shap", "linear"]
    link: Literal["logit"]
    base_value: float = Field(description="the score of the reference record, in log-odds")
    score: float = Field(description="the model's score of this record, in log-odds")
    factors: list[Factor] = Field(description="the largest contributions first (by size)")
    other_factors: float = Field(description="the contributions of every factor not listed, summed")
    reference: str = Field(description="what base_value is the score of")
    band: Band | None = Field(description="an interval for the probability; null when the model gives none")
    band_unavailable: str | None = Field(None, description="why there is no band")


class Prediction(BaseModel):
    """One record's answer."""

    request_id: str
    predicted_class: int = Field(description="1 = the model's positive class (probability >= its threshold)")
    probability: float
    variant: str
    model_version: str
    operating_point: OperatingPoint | None = Field(None, description="the operating point predicted_class is at")
    explanation: Explanation | None = Field(None, description="with `explain: true`: the record's risk factors")
    explanation_unavailable: str | None = Field(None, description="why this version cannot explain its score")


class PredictResponse(BaseModel):
    """Answers in the order of the request's records."""

    predictions: list[Prediction]


class Feedback(BaseModel):
    """The observed outcome of an earlier prediction."""

    model_config = ConfigDict(extra="forbid")

    request_id: StrictStr = Field(min_length=1, max_length=64)
    outcome: Literal[0, 1] = Field(description="1 when the positive class was observed (e.g. readmitted in 30 days)")


class FeedbackCorrection(BaseModel):
    """A corrected outcome of an earlier prediction, and why: recorded in the decision history."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal[0, 1] = Field(description="the outcome that was in fact observed")
    reason: StrictStr = Field(min_length=3, max_length=500, description="why the first outcome was wrong")


class RoutingUpdate(BaseModel):
    """A new routing: variant weights, mode and (optionally) a new experiment salt."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[Literal[VARIANTS], Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(min_length=1)
    mode: Literal["ab", "shadow"] | None = Field(None, description="kept as it is when not given")
    experiment: StrictStr | None = None


def envelope_model(max_records: int) -> type[BaseModel]:
    """The /v1/predict body with records left unvalidated (each is then checked against its variant's signature)."""
    return request_model(dict[str, Any], max_records)


# Responses of the other endpoints, and the error bodies every endpoint may answer with.


class FeedbackAccepted(BaseModel):
    """The feedback was queued for the feedback log."""

    accepted: bool
    request_id: str


class FeedbackCorrected(BaseModel):
    """The correction is in the decision history and queued for the feedback log."""

    corrected: bool
    request_id: str
    history_id: int


class LoadedVersion(BaseModel):
    """One loaded model version."""

    version: str
    run_id: str | None
    threshold: float = Field(description="probability at or above which predicted_class is 1")
    operating_point: OperatingPoint | None = Field(None, description="how the threshold was chosen")
    loaded_at: float = Field(description="Unix time the version was loaded")
    fast_path: bool = Field(description="scored by the compiled pipeline instead of scikit-learn")


class Routing(BaseModel):
    """How requests are split between the variants."""

    experiment: str
    mode: Literal["ab", "shadow"]
    weights: dict[str, float]


class ModelView(BaseModel):
    """What one hosted model serves right now."""

    model_name: str = Field(description="the registered model")
    models: dict[str, LoadedVersion] = Field(description="by alias: champion, challenger")
    routing: Routing
    registry_error: str | None = Field(description="why the last registry check failed, if it did")


class ModelReadiness(BaseModel):
    """One hosted model: ``ready``, ``degraded`` (serving its last good versions) or ``not_ready`` (its routes 503)."""

    status: Literal["ready", "degraded", "not_ready"]
    reason: str | None = None
    versions: dict[str, str] = Field(description="alias -> loaded version")


class ModelsView(BaseModel):
    """Every hosted model with its versions and readiness; the other fields are the default model's, as
    ``GET /v1/models/{default}`` shows them (null and empty when the default model is not served here)."""

    model_name: str | None = Field(description="the default model's registered model")
    models: dict[str, LoadedVersion] = Field(description="the default model's versions by alias")
    routing: Routing | None
    registry_error: str | None = Field(description="why the default model's last registry check failed, if it did")
    default: str | None = Field(description="the model of /v1/predict and the other routes that name none")
    hosted: dict[str, ModelReadiness] = Field(description="every model served here, by name")


class ServedState(BaseModel):
    """What served at one moment, and the history row that set it."""

    at: str
    aliases: dict[str, str] = Field(description="alias -> version, e.g. champion -> 3")
    routing: dict[str, Any] = Field(description="the live experiment: id, mode, weights")
    decision_id: int
    decision_kind: str
    decided_by: str
    decided_at: str


class HistoryRow(BaseModel):
    """One decision of the loop: drift verdict, retrain, experiment, evaluation, promotion, rejection, rollback."""

    id: int
    kind: str
    subject: str | None
    decided_by: str
    decided_at: str
    outcome: str | None
    outcome_detail: str | None
    summary: str
    payload: dict[str, Any]


class HistoryView(BaseModel):
    """The state at a time and the decisions made by then, newest first."""

    at: str
    state: ServedState | None = Field(description="null before the first recorded change")
    decisions: list[HistoryRow]


class ReloadResult(BaseModel):
    """The outcome of an immediate registry check."""

    changed: bool
    versions: dict[str, str] = Field(description="alias -> loaded version")
    registry_error: str | None


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness: ``ready`` (every model), ``degraded`` (some model is not ready or serves its last good versions: the
    reason names it) or ``not_ready`` (503: no model has a champion)."""

    status: Literal["ready", "degraded", "not_ready"]
    reason: str | None = None
    versions: dict[str, str] = Field(description="the default model's alias -> loaded version")
    models: dict[str, ModelReadiness] = Field(description="each hosted model's readiness")


class FieldError(BaseModel):
    """One rejected field: where it is in the request, and why."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """A client error: a message, or one entry per rejected field."""

    detail: str | list[FieldError]
