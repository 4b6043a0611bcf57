"""The buffered writer of a log: serving appends rows on the event loop, a background thread publishes Parquet parts.

A part is complete or absent: written to a temporary name and renamed on a local disk; on S3 an object is visible only
once its upload completes. The writer id plus a UUID in every part's name keep replicas sharing a root from ever
overwriting each other.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic

import pyarrow as pa

from airloop.errors import AirloopError
from airloop.predlog.schema import (
    ERRORS,
    FEEDBACK,
    HOUR_US,
    PREDICTIONS,
    RECORD,
    TIMESTAMP,
    WRITER_KEY,
    ErrorRow,
    FeedbackRow,
    LogFormat,
    PredictionRow,
    RowT,
    merge_record_types,
)
from airloop.storage import Storage

if TYPE_CHECKING:
    from airloop.settings import Settings

log = logging.getLogger(__name__)

# Rows converted per step in the writer thread: turning Python objects into Arrow holds the GIL, and the event loop
# serving requests must get it back quickly (a 1,000-row conversion in one piece showed up in the latency tail).
_SLICE = 128
# A value that does not fit its column (wrong type, out of range, not a mapping): the row is refused, not retried.
_BAD_VALUE = (pa.ArrowException, ValueError, TypeError, AttributeError, OverflowError)


class LogWriteError(AirloopError):
    """Storage refused a part of the log; its rows stay buffered for the next flush."""


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
            array = pa.array(times_us, TIMESTAMP)
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
    and writing happen in the writer thread. A part that storage refuses is written to the local ``spill`` folder
    instead (up to ``spill_max_bytes``), under the name it will have in storage, and every later flush first
    publishes the spilled parts, oldest first, then deletes them: a crash between the two publishes the same name
    again, never a second copy. Without room to spill, a failed write keeps its rows in memory (at most
    ``max_buffered_rows``; beyond that the oldest are dropped and counted in ``dropped``). A row whose values fit no
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
        max_buffered_rows: int = 100_000,
        writer_id: str | None = None,
        spill: Storage | None = None,
        spill_max_bytes: int = 1 << 30,
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
        self.spill = spill  # a local folder for parts storage refused (None: keep them in memory)
        self.spill_max_bytes = spill_max_bytes
        self.spilled = 0  # rows in spilled parts not yet published
        self.failing = False  # whether the last attempt to write to storage failed
        self._spilled_parts: dict[str, tuple[int, int]] = {}  # relative path -> (rows, bytes), oldest first
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
            written, failure = self._publish_spilled()
            with self._lock:
                rows, self._rows = self._rows, []
            kept: list[RowT] = []
            for hour, (times, group) in sorted(self._by_hour(rows).items()):
                table, parts = None, self._part_path(hour)
                try:
                    table, group = self._table(times, group)
                    if table.num_rows:
                        if failure is not None:  # storage just refused: do not wait for it again per hour
                            raise failure
                        self._write_part(parts, table)
                except Exception as error:  # storage down or a bug: spill the part, or keep the rows
                    failure = failure or error
                    # Under the name the write tried: had it reached storage after all, publishing the spilled
                    # part later replaces that object instead of adding a second copy.
                    if table is None or not table.num_rows or not self._spill_part(parts, table):
                        kept.extend(group)
                else:
                    written += table.num_rows
            self.failing = failure is not None
            with self._lock:
                self.written += written
                if kept:
                    self._rows[:0] = kept
                    if len(self._rows) > self.max_buffered_rows:
                        self._drop_oldest()
        if failure is not None:
            overflow = f"; {self.dropped} oldest rows dropped so far over max_buffered_rows" if self.dropped else ""
            spilled = f"; {self.spilled} rows wait in {self.spill.url()}" if self.spill is not None else ""
            raise LogWriteError(
                f"{len(kept)} {self.log_format.name} rows not written to {self.storage.url()} "
                f"({written} written{overflow}{spilled}): {type(failure).__name__}: {failure}"
            ) from failure
        return written

    def _spill_part(self, parts: tuple[str, str, str], table: pa.Table) -> bool:
        """Keep one part storage refused in the local spill folder, if it fits; whether it did."""
        if self.spill is None:
            return False
        used = sum(size for _, size in self._spilled_parts.values())
        estimate = table.nbytes  # Parquet is smaller than Arrow in memory: a safe bound before writing
        if used + estimate > self.spill_max_bytes:
            return False
        try:
            self.spill.write_table(self._stamped(table), *parts)
            size = os.path.getsize(self.spill.path(*parts))
        except Exception:  # a full or broken local disk: the rows stay in memory
            log.exception("spilling %d %s rows to %s failed", table.num_rows, self.log_format.name, self.spill.url())
            return False
        with self._lock:
            self._spilled_parts["/".join(parts)] = (table.num_rows, size)
            self.spilled += table.num_rows
        return True

    def _publish_spilled(self) -> tuple[int, Exception | None]:
        """Publish spilled parts to storage, oldest first, each under its own name, then delete it locally; stops at
        the first failure. Parts another process spilled here (a restarted pod) are published too."""
        if self.spill is None:
            return 0, None
        if not self._spilled_parts:
            self._adopt_spilled()
        import pyarrow.parquet as pq

        written = 0
        for relative, (rows, _) in list(self._spilled_parts.items()):
            parts = relative.split("/")
            try:
                table = pq.read_table(self.spill.path(*parts))
            except FileNotFoundError:  # another process sharing the folder published it: nothing left to do
                self._forget_spilled(relative, rows)
                continue
            except Exception:  # unreadable on local disk: it would block every later part, so it is set aside
                log.exception("spilled part %s cannot be read; leaving it and going on", self.spill.url(*parts))
                self._forget_spilled(relative, rows)
                continue
            try:
                self.storage.write_table(table, *parts)
            except Exception as error:
                return written, error
            try:
                self.spill.delete(*parts)
            except OSError:  # published: a part left behind is published again under its name, never twice
                log.warning("could not delete the published spilled part %s", self.spill.url(*parts))
            self._forget_spilled(relative, rows)
            written += rows
        return written, None

    def _spill_has_room(self) -> bool:
        used = sum(size for _, size in self._spilled_parts.values())
        return self.spill is not None and used < self.spill_max_bytes

    def _forget_spilled(self, relative: str, rows: int) -> None:
        with self._lock:
            if self._spilled_parts.pop(relative, None) is not None:
                self.spilled -= rows

    def _adopt_spilled(self) -> None:
        """Parts left in the spill folder by an earlier process (complete files only: writes there are atomic)."""
        import pyarrow.parquet as pq

        try:
            found = sorted(self.spill.walk_files())
        except OSError:
            log.exception("cannot list the spill folder %s", self.spill.url())
            return
        for relative in found:
            if not relative.endswith(".parquet"):
                continue
            try:
                rows = pq.read_metadata(self.spill.path(*relative.split("/"))).num_rows
            except Exception:
                log.warning("skipping unreadable spilled part %s", self.spill.url(relative))
                continue
            self._spilled_parts[relative] = (rows, os.path.getsize(self.spill.path(*relative.split("/"))))
            self.spilled += rows

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
            except Exception as error:  # LogWriteError, or a local disk error: the thread must go on
                failures += 1
                if failures == 1:
                    log.exception("writing the %s log failed; will retry", self.log_format.name)
                else:
                    log.warning("%s (attempt %d)", error, failures)
                # Back off so a dead store is not hammered. While the spill folder takes parts, a full buffer
                # (append wakes us) ends the wait at once, so rows go to disk instead of being dropped from memory;
                # once it takes none, only close() does.
                waiter = self._wake if self._spill_has_room() else self._stop
                waiter.wait(min(self.interval_s * 2**failures, 60.0))

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
            group = groups.get(at // HOUR_US)
            if group is None:
                group = groups[at // HOUR_US] = ([], [])
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
            merged = merge_record_types((p[record].type for p in pieces), f"{self.log_format.name} log flush")
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

    def _part_path(self, hour: int) -> tuple[str, str, str]:
        """A new part's path under the hour's folder: date, hour, a name of this writer no one else uses."""
        stamp = datetime.fromtimestamp(hour * 3600, UTC)
        return f"date={stamp:%Y-%m-%d}", f"hour={stamp:%H}", f"part-{self.writer_id}-{uuid.uuid4().hex}.parquet"

    def _stamped(self, table: pa.Table) -> pa.Table:
        return table.replace_schema_metadata({**self.log_format.schema.metadata, WRITER_KEY: self.writer_id.encode()})

    def _write_part(self, parts: tuple[str, str, str], table: pa.Table) -> None:
        """Publish one complete part at ``parts`` (``Storage.write_table``: all or nothing)."""
        self.storage.write_table(self._stamped(table), *parts)


# --- the configured logs -------------------------------------------------------------------------------------------


def _configured(settings: Settings, storage: Storage, log_format: LogFormat[RowT]) -> LogWriter[RowT]:
    serving = settings.serving
    spill_root = serving.log_spill_dir or settings.home / "log-spill"
    return LogWriter(
        storage,
        log_format,
        interval_s=serving.log_flush_interval_s,
        max_rows=serving.log_flush_rows,
        max_buffered_rows=max(serving.log_buffer_rows, serving.log_flush_rows),
        spill=Storage.from_url(spill_root / (settings.model or "default") / log_format.name),
        spill_max_bytes=serving.log_spill_bytes,
    )


def prediction_log(settings: Settings) -> LogWriter[PredictionRow]:
    """The writer of the configured prediction log (serving calls this; it starts it and closes it)."""
    return _configured(settings, settings.layout.predictions(), PREDICTIONS)


def feedback_log(settings: Settings) -> LogWriter[FeedbackRow]:
    """The writer of the configured feedback log."""
    return _configured(settings, settings.layout.feedback(), FEEDBACK)


def error_log(settings: Settings) -> LogWriter[ErrorRow]:
    """The writer of the configured scoring-error log."""
    return _configured(settings, settings.layout.errors(), ERRORS)
