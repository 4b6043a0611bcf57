"""The prediction, feedback and scoring-error logs: one typed row schema each, a buffered writer and a time-window
reader.

Serving appends a ``PredictionRow`` per scored record (with the variant's scoring latency), a ``FeedbackRow`` per
posted outcome and an ``ErrorRow`` per failed model call to a ``LogWriter``; the drift and A/B evaluation DAGs read a
window back with ``read_predictions`` / ``read_feedback`` / ``read_errors`` and join outcomes with ``join_outcomes``.
Nothing outside this module builds a row, a path or a schema of these logs.

Layout below a log's root (one ``Storage`` per log)::

    date=YYYY-MM-DD/hour=HH/part-<writer id>-<uuid>.parquet

partitioned by when the prediction was made (feedback: received), not when it was flushed. A part is complete or
absent: written to a temporary name and renamed on a local disk; on S3 an object is visible only once its upload
completes. Readers take only ``part-*.parquet`` names, so a replica killed mid-write leaves at most a ``.part-*.tmp``
file that nobody reads, and the writer id plus a UUID in every name keep replicas sharing a root from ever overwriting
each other. Every part carries ``SCHEMA_VERSION`` and the log's name in its Parquet key-value metadata.

What the model saw: ``record`` keeps the raw record exactly as the client sent it, and the registered model version
carries its own feature transform, so ``record`` + ``model_version`` rebuild the model's input. Drift can therefore be
computed on the raw records (``raw_records``) or on the transformed features.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from airloop.errors import AirloopError
from airloop.storage import Storage

if TYPE_CHECKING:
    import pandas as pd

    from airloop.settings import Settings

log = logging.getLogger(__name__)

# 1: predictions and feedback; 2: predictions carry ``latency_ms``, and the scoring-error log exists. A version-1 part
# reads as before, with ``latency_ms`` null.
SCHEMA_VERSION = 2
VERSION_KEY = b"airloop.schema_version"
LOG_KEY = b"airloop.log"
WRITER_KEY = b"airloop.writer"
RECORD = "record"
RECORD_PREFIX = "record."
DEFAULT_BATCH_ROWS = 50_000

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US
# Rows converted per step in the writer thread: turning Python objects into Arrow holds the GIL, and the event loop
# serving requests must get it back quickly (a 1,000-row conversion in one piece showed up in the latency tail).
_SLICE = 128
_READ_THREADS = 4
_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_PART = re.compile(r"hour=(\d{2})/(part-[^/]+\.parquet)")
# A value that does not fit its column (wrong type, out of range, not a mapping): the row is refused, not retried.
_BAD_VALUE = (pa.ArrowException, ValueError, TypeError, AttributeError, OverflowError)


class LogWriteError(AirloopError):
    """Storage refused a part of the log; its rows stay buffered for the next flush."""


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


class FeedbackRow(NamedTuple):
    """One observed outcome posted for an earlier prediction."""

    request_id: str
    outcome: int  # 1 = readmitted within 30 days
    received_at: float  # seconds since the epoch


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
        pa.field("predicted_at", _TIMESTAMP, nullable=False),
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
        pa.field("received_at", _TIMESTAMP, nullable=False),
    ],
    metadata=_log_metadata("feedback"),
)

ERROR_SCHEMA = pa.schema(
    [
        pa.field("occurred_at", _TIMESTAMP, nullable=False),
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
    hour = datetime.fromtimestamp(_to_us(moment, "moment") // _HOUR_US * 3600, UTC)
    return f"date={hour:%Y-%m-%d}/hour={hour:%H}"


def _to_us(moment: datetime, name: str) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(moment).__name__} {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name}={moment.isoformat()} has no timezone; pass an aware datetime (e.g. tzinfo=UTC)")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _merge_record_types(types: Iterable[pa.DataType], where: str) -> pa.StructType:
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


# --- writing ----------------------------------------------------------------------------------------------------


def _record_array(records: Sequence[Mapping[str, Any] | None]) -> pa.Array:
    """The records as one struct array (fields in first-seen order); a field mixing types is kept as text."""
    try:
        array = pa.array(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _record_array_by_field(records)
    if pa.types.is_null(array.type):
        return pa.nulls(len(records), pa.struct([]))
    if not pa.types.is_struct(array.type):
        raise TypeError(f"record must be a mapping of field to value, got {array.type}")
    return array


def _record_array_by_field(records: Sequence[Mapping[str, Any] | None]) -> pa.Array:
    names: dict[str, None] = {}
    for record in records:
        if record is not None:
            names.update(dict.fromkeys(record))
    fields, children = [], []
    for name in names:
        values = [None if record is None else record.get(name) for record in records]
        try:
            child = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            kinds = sorted({type(v).__name__ for v in values if v is not None})
            log.warning("record field %r mixes %s in one flush; logged as text", name, "/".join(kinds))
            child = pa.array([None if v is None else str(v) for v in values], pa.string())
        fields.append(pa.field(name, child.type))
        children.append(child)
    if not fields:
        return pa.nulls(len(records), pa.struct([]))
    mask = pa.array([record is None for record in records])
    return pa.StructArray.from_arrays(children, fields=fields, mask=mask)


def _arrays(log_format: LogFormat, rows: Sequence[tuple], times_us: Sequence[int]) -> list[pa.Array]:
    """The rows as Arrow arrays in schema order; raises when a value does not fit its column."""
    arrays = []
    for field, values in zip(log_format.schema, zip(*rows, strict=True), strict=True):
        if field.name == log_format.time_column:
            array = pa.array(times_us, _TIMESTAMP)
        elif field.name == RECORD:
            array = _record_array(values)
        else:
            array = pa.array(values, field.type)
        if not field.nullable and array.null_count:
            raise ValueError(f"{field.name} is required but missing in {array.null_count} of {len(rows)} rows")
        arrays.append(array)
    return arrays


def _default_writer_id() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{socket.gethostname()}-{os.getpid()}")


class LogWriter(Generic[RowT]):
    """Buffers rows in memory; a background thread writes them as Parquet parts every ``interval_s`` or ``max_rows``.

    ``append`` only extends a list under a lock (no I/O, no Arrow), so serving calls it on the event loop; conversion
    and writing happen in the writer thread. A failed write keeps its rows for the next attempt (at most
    ``max_buffered_rows``; beyond that the oldest are dropped and counted in ``dropped``); a row whose values fit no
    column is logged and counted in ``refused`` instead of blocking every later flush. ``close`` writes the rest, so
    a graceful stop (SIGTERM) loses nothing; a SIGKILL loses at most the rows not yet flushed.
    """

    def __init__(
        self,
        storage: Storage,
        log_format: LogFormat[RowT],
        *,
        interval_s: float = 1.0,
        max_rows: int = 5000,
        max_buffered_rows: int = 1_000_000,
        writer_id: str | None = None,
    ) -> None:
        if interval_s <= 0 or max_rows < 1 or max_buffered_rows < max_rows:
            raise ValueError(
                f"need interval_s > 0 and 1 <= max_rows <= max_buffered_rows, got interval_s={interval_s}, "
                f"max_rows={max_rows}, max_buffered_rows={max_buffered_rows}"
            )
        self.storage = storage
        self.log_format = log_format
        self.interval_s = interval_s
        self.max_rows = max_rows
        self.max_buffered_rows = max_buffered_rows
        self.writer_id = writer_id or _default_writer_id()
        self.written = 0  # rows in parts on storage
        self.refused = 0  # rows with a value that fits no column (logged, never retried)
        self.dropped = 0  # oldest rows given up past max_buffered_rows while storage kept failing
        self._rows: list[RowT] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Rows buffered and not yet written."""
        return len(self._rows)

    def append(self, rows: Iterable[RowT]) -> None:
        """Queue rows for the next flush; cheap enough for the event loop (no I/O, no conversion)."""
        with self._lock:
            self._rows.extend(rows)
            size = len(self._rows)
            if size > self.max_buffered_rows:
                self._drop_oldest()
        if size >= self.max_rows and not self._wake.is_set():
            self._wake.set()

    def start(self) -> None:
        """Start the background writer (no-op when it runs already)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.log_format.name}-log-writer", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 30.0, attempts: int = 3) -> None:
        """Stop the background writer and write every row still buffered.

        Raises:
            LogWriteError: storage still refused the rows after ``attempts`` tries; they remain in ``pending``.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        for attempt in range(1, attempts + 1):
            try:
                self.flush()
                return
            except LogWriteError:
                if attempt == attempts:
                    raise
                time.sleep(0.5 * attempt)

    def __enter__(self) -> LogWriter[RowT]:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self) -> int:
        """Write every buffered row now, one part per hour the rows were made in; returns how many were written.

        Raises:
            LogWriteError: storage refused a part; its rows are back in the buffer (parts that succeeded stay written).
        """
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            written, kept, failure = 0, [], None
            for hour, (times, group) in sorted(self._by_hour(rows).items()):
                try:
                    table, group = self._table(times, group)
                    if table.num_rows:
                        self._write_part(hour, table)
                except Exception as error:  # storage down or a bug: keep the rows, the next flush tries again
                    kept.extend(group)
                    failure = failure or error
                else:
                    written += table.num_rows
            with self._lock:
                self.written += written
                if kept:
                    self._rows[:0] = kept
                    if len(self._rows) > self.max_buffered_rows:
                        self._drop_oldest()
        if failure is not None:
            overflow = f"; {self.dropped} oldest rows dropped so far over max_buffered_rows" if self.dropped else ""
            raise LogWriteError(
                f"{len(kept)} {self.log_format.name} rows not written to {self.storage.url()} "
                f"({written} written{overflow}): {type(failure).__name__}: {failure}"
            ) from failure
        return written

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break  # close() writes what is left
            try:
                self.flush()
                failures = 0
            except LogWriteError as error:
                failures += 1
                if failures == 1:
                    log.exception("writing the %s log failed; will retry", self.log_format.name)
                else:
                    log.warning("%s (attempt %d)", error, failures)
                # Back off so a full buffer against a dead store does not spin; close() still flushes at once.
                self._stop.wait(min(self.interval_s * 2**failures, 60.0))

    def _drop_oldest(self) -> None:
        """Keep the newest ``max_buffered_rows`` rows (buffer lock held; no logging here, it may be the event loop)."""
        excess = len(self._rows) - self.max_buffered_rows
        del self._rows[:excess]
        self.dropped += excess

    def _refuse(self, rows: Sequence[RowT], error: Exception) -> None:
        with self._lock:
            self.refused += len(rows)
        log.error(
            "dropped %d %s rows that do not fit the log's schema (first request_id=%r): %s: %s",
            len(rows),
            self.log_format.name,
            rows[0][0],
            type(error).__name__,
            error,
        )

    def _by_hour(self, rows: list[RowT]) -> dict[int, tuple[list[int], list[RowT]]]:
        """Rows grouped by the hour they were made in, with their times in microseconds."""
        index = self.log_format.time_index
        groups: dict[int, tuple[list[int], list[RowT]]] = {}
        for row in rows:
            try:
                at = round(row[index] * 1_000_000)
            except _BAD_VALUE as error:
                self._refuse([row], error)
                continue
            group = groups.get(at // _HOUR_US)
            if group is None:
                group = groups[at // _HOUR_US] = ([], [])
            group[0].append(at)
            group[1].append(row)
        return groups

    def _table(self, times: list[int], rows: list[RowT]) -> tuple[pa.Table, list[RowT]]:
        """One hour's rows as a table, and the rows in it: rows whose values fit no column are dropped and logged."""
        pieces: list[list[pa.Array]] = []
        accepted: list[RowT] = []
        for start in range(0, len(rows), _SLICE):
            chunk, chunk_times = rows[start : start + _SLICE], times[start : start + _SLICE]
            try:
                pieces.append(_arrays(self.log_format, chunk, chunk_times))
                accepted.extend(chunk)
            except _BAD_VALUE:
                for row, at in zip(chunk, chunk_times, strict=True):  # find the bad rows, keep the others
                    try:
                        pieces.append(_arrays(self.log_format, [row], [at]))
                        accepted.append(row)
                    except _BAD_VALUE as error:
                        self._refuse([row], error)
            time.sleep(0)  # hand the GIL back to the event loop between slices
        schema = self.log_format.schema
        record = schema.get_field_index(RECORD)
        if record >= 0 and pieces:
            merged = _merge_record_types((p[record].type for p in pieces), f"{self.log_format.name} log flush")
            for piece in pieces:
                # Unsafe on purpose: a value one variant sends as a 64-bit int where another's signature has a
                # double must not block the hour's part (it is stored as the nearest double).
                piece[record] = piece[record].cast(merged, safe=False)
            schema = self.log_format.with_record(merged)
        tables = [pa.Table.from_arrays(piece, schema=schema) for piece in pieces]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        if record >= 0 and schema.field(record).type.num_fields == 0:
            table = table.remove_column(record)  # Parquet cannot store a struct without fields; readers fill it
        return table, accepted

    def _write_part(self, hour: int, table: pa.Table) -> None:
        """Publish one complete part under the hour's folder (``Storage.write_table``: all or nothing)."""
        stamp = datetime.fromtimestamp(hour * 3600, UTC)
        name = f"part-{self.writer_id}-{uuid.uuid4().hex}.parquet"
        table = table.replace_schema_metadata({**self.log_format.schema.metadata, WRITER_KEY: self.writer_id.encode()})
        self.storage.write_table(table, f"date={stamp:%Y-%m-%d}", f"hour={stamp:%H}", name)


# --- reading ----------------------------------------------------------------------------------------------------


def read_predictions(
    storage: Storage,
    start: datetime,
    end: datetime,
    *,
    variant: str | None = None,
    experiment_id: str | None = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[pd.DataFrame]:
    """Predictions made in ``[start, end)`` as pandas DataFrames of at most ``batch_rows`` rows each, streamed.

    Args:
        storage: the prediction log's root.
        start: first instant included (an aware datetime).
        end: first instant excluded.
        variant: only rows of this variant ("champion", "challenger").
        experiment_id: only rows of this experiment.
        columns: log columns to return (``PREDICTION_SCHEMA`` names); all by default.
        batch_rows: rows per chunk.

    Returns:
        An iterator of DataFrames that all have the same columns and dtypes: the requested log columns, with
        ``record`` flattened to one ``record.<field>`` column per field seen anywhere in the window (missing ones
        null; a field whose type changed between parts is read as text). ``predicted_at`` is ``datetime64[us, UTC]``;
        integer and boolean columns use pandas' nullable dtypes. Chunks come hour by hour; rows are not sorted
        within an hour. Only complete parts are read; a damaged part is skipped with a warning naming it.

    Raises:
        LogSchemaError: a part was written by a newer schema version or belongs to another log.
    """
    equal = {k: v for k, v in (("variant", variant), ("experiment_id", experiment_id)) if v is not None}
    return _read(storage, PREDICTIONS, start, end, equal, columns, batch_rows)


def read_feedback(
    storage: Storage,
    start: datetime,
    end: datetime,
    *,
    columns: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[pd.DataFrame]:
    """Outcomes received in ``[start, end)`` as DataFrames of at most ``batch_rows`` rows (see ``read_predictions``)."""
    return _read(storage, FEEDBACK, start, end, {}, columns, batch_rows)


def read_errors(
    storage: Storage,
    start: datetime,
    end: datetime,
    *,
    experiment_id: str | None = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[pd.DataFrame]:
    """Failed model calls in ``[start, end)`` (see ``read_predictions``)."""
    equal = {"experiment_id": experiment_id} if experiment_id is not None else {}
    return _read(storage, ERRORS, start, end, equal, columns, batch_rows)


def load_errors(storage: Storage, start: datetime, end: datetime, *, experiment_id: str | None = None) -> pd.DataFrame:
    """Every failed model call of ``[start, end)`` in one DataFrame."""
    return _concat(read_errors(storage, start, end, experiment_id=experiment_id), ERRORS, None)


def load_predictions(
    storage: Storage,
    start: datetime,
    end: datetime,
    *,
    variant: str | None = None,
    experiment_id: str | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every prediction of ``[start, end)`` in one DataFrame, for small windows and tests (see ``read_predictions``)."""
    chunks = read_predictions(storage, start, end, variant=variant, experiment_id=experiment_id, columns=columns)
    return _concat(chunks, PREDICTIONS, columns)


def load_feedback(
    storage: Storage, start: datetime, end: datetime, *, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Every outcome received in ``[start, end)`` in one DataFrame."""
    return _concat(read_feedback(storage, start, end, columns=columns), FEEDBACK, columns)


def join_outcomes(predictions: pd.DataFrame, feedback: pd.DataFrame, *, labelled_only: bool = False) -> pd.DataFrame:
    """``predictions`` with ``outcome`` and ``received_at`` joined by request id, in the predictions' order.

    The latest feedback per request wins. Unlabelled predictions keep a null outcome unless ``labelled_only``. Both
    rows of a shadowed request (served and shadow) get its outcome. Outcomes arrive after predictions, so read the
    feedback from the predictions' start up to now, not just the predictions' window. ``predictions`` may be one
    chunk of ``read_predictions`` at a time.
    """
    latest = (
        feedback[["request_id", "outcome", "received_at"]]
        .sort_values("received_at", kind="stable")
        .drop_duplicates("request_id", keep="last")
    )
    how = "inner" if labelled_only else "left"
    joined = predictions.merge(latest, on="request_id", how=how, validate="many_to_one")
    joined["outcome"] = joined["outcome"].astype("Int8")
    return joined


def raw_records(predictions: pd.DataFrame) -> pd.DataFrame:
    """The raw input records of ``predictions``: one column per record field, named as the client sent it."""
    fields = [c for c in predictions.columns if c.startswith(RECORD_PREFIX)]
    return predictions[fields].rename(columns=lambda c: c[len(RECORD_PREFIX) :])


def _read(
    storage: Storage,
    log_format: LogFormat,
    start: datetime,
    end: datetime,
    equal: Mapping[str, str],
    columns: Sequence[str] | None,
    batch_rows: int,
) -> Iterator[pd.DataFrame]:
    """Check the arguments now (not at the first ``next``), then stream."""
    lo, hi = _to_us(start, "start"), _to_us(end, "end")
    if hi < lo:
        raise ValueError(f"window ends before it starts: start={start.isoformat()} end={end.isoformat()}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    wanted = _columns(log_format, columns)
    needed = [n for n in log_format.schema.names if n in {*wanted, log_format.time_column, *equal}]
    return _stream(storage, log_format, lo, hi, equal, wanted, needed, batch_rows)


def _columns(log_format: LogFormat, columns: Sequence[str] | None) -> list[str]:
    names = log_format.schema.names
    if columns is None:
        return list(names)
    if isinstance(columns, str):
        raise TypeError(f"columns must be a list of names, got the string {columns!r}")
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise ValueError(f"unknown {log_format.name} log columns {unknown}; it has {names}")
    return list(dict.fromkeys(columns))


def _stream(
    storage: Storage,
    log_format: LogFormat,
    lo: int,
    hi: int,
    equal: Mapping[str, str],
    wanted: list[str],
    needed: list[str],
    batch_rows: int,
) -> Iterator[pd.DataFrame]:
    paths = _parts_in_window(storage, lo, hi)
    record = pa.struct([])
    if RECORD in needed:  # one pass over the footers so every chunk has the same record columns and types
        paths, record = _record_type(storage, log_format, paths)
    schema = log_format.with_record(record)
    target = pa.schema([schema.field(n) for n in needed])
    first, stop = pa.scalar(lo, _TIMESTAMP), pa.scalar(hi, _TIMESTAMP)

    def keep(table: pa.Table) -> pa.Table:
        # Plain kernels, not an Expression: Table.filter(Expression) builds an Acero plan, ~2 ms per small part.
        times = table.column(log_format.time_column)
        mask = pc.and_(pc.greater_equal(times, first), pc.less(times, stop))
        for name, value in equal.items():
            mask = pc.and_(mask, pc.equal(table.column(name), value))
        return table.filter(mask)

    pending: list[pa.Table] = []
    size = 0
    for table in _prefetch(lambda path: _read_part(storage, log_format, path, needed), paths):
        if table is None:
            continue
        table = keep(_conform(table, target))
        if not table.num_rows:
            continue
        pending.append(table)
        size += table.num_rows
        while size >= batch_rows:
            merged = pa.concat_tables(pending)
            yield _frame(merged.slice(0, batch_rows), wanted)
            rest = merged.slice(batch_rows)
            pending, size = ([rest] if rest.num_rows else []), rest.num_rows
    if size:
        yield _frame(pa.concat_tables(pending), wanted)


def _parts_in_window(storage: Storage, lo: int, hi: int) -> list[str]:
    """Paths of the complete parts whose hour overlaps ``[lo, hi)``, in hour order; other files are ignored."""
    if hi <= lo:
        return []
    first, last = _day(lo), _day(hi - 1)
    found: list[tuple[int, str, str]] = []
    for name in storage.listdir():
        match = _DATE_DIR.fullmatch(name)
        if not match:
            continue
        try:
            day = date.fromisoformat(match[1])
        except ValueError:
            continue
        if not first <= day <= last:
            continue
        day_us = (day - _EPOCH.date()).days * _DAY_US
        base = storage.path(name)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        for info in storage.fs.get_file_info(selector):
            part = _PART.fullmatch(posixpath.relpath(info.path, base)) if info.type == pafs.FileType.File else None
            if part is None or int(part[1]) > 23:
                continue
            hour_us = day_us + int(part[1]) * _HOUR_US
            if hour_us < hi and hour_us + _HOUR_US > lo:
                found.append((hour_us, part[2], info.path))
    return [path for _, _, path in sorted(found)]


def _day(us: int) -> date:
    return (_EPOCH + timedelta(microseconds=us)).date()


def _record_type(storage: Storage, log_format: LogFormat, paths: list[str]) -> tuple[list[str], pa.StructType]:
    """The readable parts among ``paths`` and the union of their record fields."""

    def schema_of(path: str) -> pa.Schema | None:
        try:
            schema = pq.read_schema(path, filesystem=storage.fs)
        except Exception as error:
            if not _damaged(error):
                raise
            log.warning("skipping damaged %s log part %s: %s", log_format.name, storage.url_of(path), error)
            return None
        return schema if _is_part_of(log_format, schema.metadata, storage.url_of(path)) else None

    if not paths:
        return [], pa.struct([])
    with ThreadPoolExecutor(min(_READ_THREADS, len(paths))) as pool:
        schemas = list(pool.map(schema_of, paths))
    readable = [(p, s) for p, s in zip(paths, schemas, strict=True) if s is not None]
    types = [s.field(RECORD).type for _, s in readable if RECORD in s.names]
    where = f"{len(readable)} {log_format.name} log parts"
    return [p for p, _ in readable], _merge_record_types(types, where)


def _read_part(storage: Storage, log_format: LogFormat, path: str, columns: list[str]) -> pa.Table | None:
    """One part's ``columns`` (those it has); None when it is damaged or not a part of this log."""
    url = storage.url_of(path)
    try:
        with storage.fs.open_input_file(path) as source:
            parquet = pq.ParquetFile(source)
            if not _is_part_of(log_format, parquet.schema_arrow.metadata, url):
                return None
            return parquet.read(columns=[c for c in columns if c in parquet.schema_arrow.names])
    except Exception as error:
        if not _damaged(error):
            raise
        log.warning("skipping damaged %s log part %s: %s", log_format.name, url, error)
        return None


def _damaged(error: Exception) -> bool:
    """Whether a read failure means the part is damaged or gone (skip it), not that storage is unreachable (fail)."""
    if isinstance(error, FileNotFoundError | pa.ArrowInvalid):
        return True  # truncated, not Parquet, or removed between listing and reading
    if isinstance(error, OSError):  # Arrow's decoding errors carry no errno; network and permission errors do
        return error.errno is None and "AWS Error" not in str(error)
    return False


def _is_part_of(log_format: LogFormat, metadata: Mapping[bytes, bytes] | None, url: str) -> bool:
    """Whether a part belongs to this log in a version we read; raises when it is ours but unreadable."""
    metadata = metadata or {}
    name, version = metadata.get(LOG_KEY, b"").decode(), metadata.get(VERSION_KEY, b"").decode()
    if not version.isdigit():
        log.warning("skipping %s: no %s in its metadata, not written by the log writer", url, VERSION_KEY.decode())
        return False
    if name != log_format.name:
        raise LogSchemaError(f"{url} belongs to the {name!r} log, not the {log_format.name!r} log being read")
    if int(version) > SCHEMA_VERSION:
        raise LogSchemaError(f"{url} has log schema version {version}; this code reads up to {SCHEMA_VERSION}")
    return True


def _conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """``table`` with exactly ``target``'s columns and types (missing columns and record fields null)."""
    columns, present = [], set(table.column_names)
    for field in target:
        if field.name not in present:
            columns.append(pa.nulls(len(table), field.type))
            continue
        column = table.column(field.name)
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=target)


def _frame(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    return table.select(columns).flatten().to_pandas(types_mapper=_pandas_dtype)


def _pandas_dtype(kind: pa.DataType) -> Any:
    """Nullable pandas dtypes for integers and booleans, so a missing value never turns them into floats/objects."""
    import pandas as pd

    if pa.types.is_boolean(kind):
        return pd.BooleanDtype()
    if pa.types.is_integer(kind):
        return pd.api.types.pandas_dtype(str(kind).replace("int", "Int").replace("uInt", "UInt"))
    return None


def _concat(chunks: Iterator[pd.DataFrame], log_format: LogFormat, columns: Sequence[str] | None) -> pd.DataFrame:
    import pandas as pd

    frames = list(chunks)
    if frames:
        return pd.concat(frames, ignore_index=True)
    return _frame(log_format.schema.empty_table(), _columns(log_format, columns))


def _prefetch(read: Callable[[str], pa.Table | None], paths: list[str]) -> Iterator[pa.Table | None]:
    """``read(path)`` for each path in order, a few ahead in threads (object stores answer slowly, not serially)."""
    if not paths:
        return
    pool = ThreadPoolExecutor(min(_READ_THREADS, len(paths)))
    ahead: deque[Future[pa.Table | None]] = deque()
    try:
        for path in paths:
            ahead.append(pool.submit(read, path))
            if len(ahead) > 2 * _READ_THREADS:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- the configured logs -------------------------------------------------------------------------------------------


def prediction_log(settings: Settings) -> LogWriter[PredictionRow]:
    """The writer of the configured prediction log (serving calls this; it starts it and closes it)."""
    serving = settings.serving
    return LogWriter(
        settings.layout.predictions(),
        PREDICTIONS,
        interval_s=serving.log_flush_interval_s,
        max_rows=serving.log_flush_rows,
    )


def feedback_log(settings: Settings) -> LogWriter[FeedbackRow]:
    """The writer of the configured feedback log."""
    serving = settings.serving
    return LogWriter(
        settings.layout.feedback(), FEEDBACK, interval_s=serving.log_flush_interval_s, max_rows=serving.log_flush_rows
    )


def error_log(settings: Settings) -> LogWriter[ErrorRow]:
    """The writer of the configured scoring-error log."""
    serving = settings.serving
    return LogWriter(
        settings.layout.errors(), ERRORS, interval_s=serving.log_flush_interval_s, max_rows=serving.log_flush_rows
    )
