"""The rows and Parquet schemas of the prediction, feedback and scoring-error logs, and the partition layout.

``PredictionRow`` / ``FeedbackRow`` / ``ErrorRow`` are what serving builds; ``PREDICTIONS`` / ``FEEDBACK`` / ``ERRORS``
say how each log stores them (columns, partitioning time). Every part carries ``SCHEMA_VERSION`` and the log's name in
its Parquet key-value metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

import pyarrow as pa

from airloop.errors import AirloopError

log = logging.getLogger(__name__)

# 1: predictions and feedback; 2: predictions carry ``latency_ms``, and the scoring-error log exists; 3: feedback
# carries its ``source`` (the serving key that sent it). An older part reads as before, with the new columns null.
SCHEMA_VERSION = 3
VERSION_KEY = b"airloop.schema_version"
LOG_KEY = b"airloop.log"
WRITER_KEY = b"airloop.writer"
RECORD = "record"
RECORD_PREFIX = "record."

TIMESTAMP = pa.timestamp("us", tz="UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US


class LogSchemaError(AirloopError):
    """A part was written with a schema this code cannot read (a newer version, or another log)."""


# --- rows and schemas -------------------------------------------------------------------------------------------


class PredictionRow(NamedTuple):
    """One scored record as serving logs it; a tuple, so building one per request costs next to nothing."""

    request_id: str
    predicted_at: float  # seconds since the epoch, as time.time() returns them
    experiment_id: str | None
    variant: str
    model_version: str
    entity_id: str | None
    probability: float
    predicted_class: int
    shadow: bool  # scored but not served: the challenger in shadow mode
    record: Mapping[str, Any]  # the raw input record as the client sent it (no entity_id); not copied: don't mutate
    # How long the model call that scored this record took (its micro-batch; in the model thread, so waiting behind the
    # other variant's call is not counted): the A/B evaluation compares variants on it.
    latency_ms: float | None = None


# The source prefix of an outcome the audited correction route wrote ("correction:<history id>"): the only outcome
# that replaces the first one a request got.
CORRECTION = "correction:"


class FeedbackRow(NamedTuple):
    """One observed outcome posted for an earlier prediction."""

    request_id: str
    outcome: int  # 1 = the positive class of the model's target (its spec's target.positive)
    received_at: float  # seconds since the epoch
    # Who sent it: the serving key's setting ("feedback_key", "api_key") or "open" (an open feedback scope).
    source: str | None = None


class ErrorRow(NamedTuple):
    """One model call that failed for a request: the records it should have scored got no prediction."""

    occurred_at: float  # seconds since the epoch
    experiment_id: str | None
    variant: str
    model_version: str
    records: int  # records of the request this variant failed to score
    shadow: bool  # the failure was a shadow score: the caller got the champion's answer
    error: str  # the exception's type and message, cut to 500 characters


def _log_metadata(name: str) -> dict[bytes, bytes]:
    return {LOG_KEY: name.encode(), VERSION_KEY: str(SCHEMA_VERSION).encode()}


# ``record`` is a struct whose fields are the record's keys; they are set per part from the rows written, so parts of
# different model signatures differ there and the reader unifies them.
PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("predicted_at", TIMESTAMP, nullable=False),
        pa.field("experiment_id", pa.string()),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("entity_id", pa.string()),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("predicted_class", pa.int8(), nullable=False),
        pa.field("shadow", pa.bool_(), nullable=False),
        pa.field(RECORD, pa.struct([])),
        pa.field("latency_ms", pa.float32()),
    ],
    metadata=_log_metadata("predictions"),
)

FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("outcome", pa.int8(), nullable=False),
        pa.field("received_at", TIMESTAMP, nullable=False),
        pa.field("source", pa.string()),
    ],
    metadata=_log_metadata("feedback"),
)

ERROR_SCHEMA = pa.schema(
    [
        pa.field("occurred_at", TIMESTAMP, nullable=False),
        pa.field("experiment_id", pa.string()),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("records", pa.int32(), nullable=False),
        pa.field("shadow", pa.bool_(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
    ],
    metadata=_log_metadata("errors"),
)

RowT = TypeVar("RowT", PredictionRow, FeedbackRow, ErrorRow)


@dataclass(frozen=True)
class LogFormat(Generic[RowT]):
    """What one log holds: its name, its columns (in the order of its row's fields) and the partitioning column."""

    name: str
    schema: pa.Schema
    time_column: str

    @property
    def time_index(self) -> int:
        """Position of the partitioning time in a row."""
        return self.schema.get_field_index(self.time_column)

    def with_record(self, record: pa.StructType) -> pa.Schema:
        """The schema with ``record`` holding exactly these fields."""
        index = self.schema.get_field_index(RECORD)
        if index < 0:
            return self.schema
        return self.schema.set(index, pa.field(RECORD, record))


PREDICTIONS: LogFormat[PredictionRow] = LogFormat("predictions", PREDICTION_SCHEMA, "predicted_at")
FEEDBACK: LogFormat[FeedbackRow] = LogFormat("feedback", FEEDBACK_SCHEMA, "received_at")
ERRORS: LogFormat[ErrorRow] = LogFormat("errors", ERROR_SCHEMA, "occurred_at")


def partition_of(moment: datetime) -> str:
    """The folder, relative to the log's root, that holds rows made at ``moment`` (``date=…/hour=…``)."""
    hour = datetime.fromtimestamp(to_us(moment, "moment") // HOUR_US * 3600, UTC)
    return f"date={hour:%Y-%m-%d}/hour={hour:%H}"


def to_us(moment: datetime, name: str) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(moment).__name__} {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name}={moment.isoformat()} has no timezone; pass an aware datetime (e.g. tzinfo=UTC)")
    return (moment - EPOCH) // timedelta(microseconds=1)


def merge_record_types(types: Iterable[pa.DataType], where: str) -> pa.StructType:
    """One struct holding every field of ``types``; a field whose types cannot be promoted becomes text."""
    merged: dict[str, pa.DataType] = {}
    as_text: set[str] = set()
    for struct in types:
        for field in struct:
            known = merged.get(field.name)
            if known is None or known == field.type:
                merged[field.name] = field.type
                continue
            if field.name in as_text:
                continue
            pair = [pa.schema([pa.field(field.name, t)]) for t in (known, field.type)]
            try:
                merged[field.name] = pa.unify_schemas(pair, promote_options="permissive").field(field.name).type
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                log.warning(
                    "record field %r is %s in some rows and %s in others (%s); kept as text",
                    field.name,
                    known,
                    field.type,
                    where,
                )
                merged[field.name] = pa.string()
                as_text.add(field.name)
    return pa.struct([pa.field(name, kind) for name, kind in merged.items()])
