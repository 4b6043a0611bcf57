"""Time-window readers of the logs, and the outcome join.

Readers take only complete ``part-*.parquet`` names below ``date=YYYY-MM-DD/hour=HH/``, so a replica killed mid-write
leaves at most a ``.part-*.tmp`` file that nobody reads; a damaged part is skipped with a warning naming it.
"""

from __future__ import annotations

import logging
import posixpath
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from airloop.predlog.compact import COMPACT_PREFIX, choose_live, held_by
from airloop.predlog.schema import (
    CORRECTION,
    DAY_US,
    EPOCH,
    ERRORS,
    FEEDBACK,
    HOUR_US,
    LOG_KEY,
    PREDICTIONS,
    RECORD,
    RECORD_PREFIX,
    SCHEMA_VERSION,
    TIMESTAMP,
    VERSION_KEY,
    LogFormat,
    LogSchemaError,
    merge_record_types,
    to_us,
)
from airloop.storage import Storage

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.dataset as ds

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 50_000
# What the load_* functions ask of the stream: one chunk, converted to pandas once by Arrow (no pandas concat).
_WHOLE_WINDOW = 2**62
_READ_THREADS = 4
_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_PART = re.compile(r"(hour=(\d{2}))/((?:part|compact)-[^/]+\.parquet)")
# Footers one read keeps from reading them to reading the rows. A parsed footer takes ~64 KiB plus ~4x its size in
# the file (measured: 90 KB for a part's 7 KB footer, 1 MB for a compacted hour's 280 KB), so the thousands of parts
# of uncompacted hours would hold gigabytes: past this estimate the others read theirs again with their rows.
_KEPT_FOOTERS_BYTES = 128 * 2**20
_FOOTER_FIXED_BYTES = 64 * 2**10
_GONE = ("NO_SUCH_KEY", "RESOURCE_NOT_FOUND")  # S3's answer to a GET of an object removed since it was listed


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
    chunks = read_errors(storage, start, end, experiment_id=experiment_id, batch_rows=_WHOLE_WINDOW)
    return _concat(chunks, ERRORS, None)


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
    chunks = read_predictions(
        storage, start, end, variant=variant, experiment_id=experiment_id, columns=columns, batch_rows=_WHOLE_WINDOW
    )
    return _concat(chunks, PREDICTIONS, columns)


def load_feedback(
    storage: Storage, start: datetime, end: datetime, *, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Every outcome received in ``[start, end)`` in one DataFrame."""
    return _concat(read_feedback(storage, start, end, columns=columns, batch_rows=_WHOLE_WINDOW), FEEDBACK, columns)


def join_outcomes(predictions: pd.DataFrame, feedback: pd.DataFrame, *, labelled_only: bool = False) -> pd.DataFrame:
    """``predictions`` with ``outcome``, ``received_at`` and ``outcome_source`` (who sent the outcome) joined by
    request id, in the predictions' order.

    The first outcome of a request stands: a second one (another replica took it) changes nothing. Only a correction
    (``source`` starting with ``CORRECTION``, written by the audited correction route with its history row) replaces
    it, the latest correction winning. Unlabelled predictions keep a null outcome unless ``labelled_only``. Both rows
    of a shadowed request (served and shadow) get its outcome. Outcomes arrive after predictions, so read the
    feedback from the predictions' start up to now, not just the predictions' window. ``predictions`` may be one
    chunk of ``read_predictions`` at a time.
    """
    how = "inner" if labelled_only else "left"
    joined = predictions.merge(standing_outcomes(feedback), on="request_id", how=how, validate="many_to_one")
    joined["outcome"] = joined["outcome"].astype("Int8")
    return joined


def standing_outcomes(feedback: pd.DataFrame) -> pd.DataFrame:
    """The outcome that stands per request among ``feedback``: the latest correction, else the first outcome
    (``join_outcomes``' rule), with ``request_id``, ``outcome``, ``received_at`` and ``outcome_source``."""
    import pandas as pd

    rows = feedback.rename(columns={"source": "outcome_source"})
    if "outcome_source" not in rows:
        rows = rows.assign(outcome_source=pd.Series(None, index=rows.index, dtype=object))
    rows = rows[["request_id", "outcome", "received_at", "outcome_source"]].sort_values("received_at", kind="stable")
    corrected = is_correction(rows["outcome_source"])
    first = rows[~corrected].drop_duplicates("request_id", keep="first")
    corrections = rows[corrected].drop_duplicates("request_id", keep="last")
    return pd.concat([first[~first["request_id"].isin(corrections["request_id"])], corrections])


def is_correction(sources: pd.Series) -> Any:
    """Per outcome source, whether it is a correction's (a boolean array)."""
    return sources.astype("string").str.startswith(CORRECTION).fillna(False).to_numpy(bool)


def raw_records(predictions: pd.DataFrame) -> pd.DataFrame:
    """The raw input records of ``predictions``: one column per record field, named as the client sent it."""
    fields = [c for c in predictions.columns if c.startswith(RECORD_PREFIX)]
    return predictions[fields].rename(columns=lambda c: c[len(RECORD_PREFIX) :])


class LogFile:
    """One Parquet file of a log, as a listing found it. Readers and the compactor open log files only here.

    Its footer is read once, on first use, without asking the file's size (a HEAD on S3): the listing gave it. That
    one footer answers everything asked of the file (a part of this log? its record type? which files does a
    compacted file hold?) and then reads its rows, the column chunks fetched together (one ranged GET where they
    are adjacent). ``forget_footer`` lets it go to save memory; the next use reads it again.
    """

    def __init__(self, storage: Storage, listed: pafs.FileInfo) -> None:
        self.path = listed.path
        self.url = storage.url_of(listed.path)
        self._fs = storage.fs
        self._size = listed.size  # None when not from a listing: opening then asks for it
        self._fragment: ds.ParquetFileFragment | None = None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def schema(self) -> pa.Schema:
        """Its Arrow schema, with the log's key-value metadata."""
        return self._footer().physical_schema

    @property
    def footer_size(self) -> int:
        """Bytes of its footer in the file."""
        return self._footer().metadata.serialized_size

    def readable_schema(self, what: str) -> pa.Schema | None:
        """``schema``, or None with a warning naming the file (``what`` it is) when it is damaged or gone."""
        try:
            return self.schema
        except Exception as error:
            if not _damaged(error):
                raise
            log.warning("skipping damaged %s %s: %s", what, self.url, error)
            return None

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Its rows: ``columns``, those of them it has (all by default). Lets the footer go: a file is read once."""
        fragment, self._fragment = self._footer(), None
        present = None if columns is None else [c for c in columns if c in fragment.physical_schema.names]
        return fragment.to_table(columns=present)

    def forget_footer(self) -> None:
        self._fragment = None

    def _footer(self) -> ds.ParquetFileFragment:
        if self._fragment is None:
            import pyarrow.dataset as ds  # imports pandas: not when airloop.predlog is imported

            # pyarrow 25's Python API passes a known size to the filesystem only through a dataset fragment
            # (FileSystem.open_input_file takes a path, and S3 asks for the size); the fragment keeps the parsed
            # footer for its scan, which pre-buffers (coalesces the column chunks' ranges) by default.
            fragment = ds.ParquetFileFormat().make_fragment(self.path, filesystem=self._fs, file_size=self._size)
            fragment.ensure_complete_metadata()
            self._fragment = fragment
        return self._fragment


class _FooterBudget:
    """Which footers one read keeps from reading them to reading the rows: as many as ``limit`` bytes allow."""

    def __init__(self, limit: int) -> None:
        self._left = limit
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def keep(self, file: LogFile) -> None:
        """Keep ``file``'s footer, just read, if it fits; else let it go."""
        cost = _FOOTER_FIXED_BYTES + 4 * file.footer_size
        with self._lock:
            if file.path in self._kept:
                return
            if cost <= self._left:
                self._left -= cost
                self._kept.add(file.path)
                return
        file.forget_footer()


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
    lo, hi = to_us(start, "start"), to_us(end, "end")
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
    footers = _FooterBudget(_KEPT_FOOTERS_BYTES)
    files = _files_in_window(storage, lo, hi, footers)
    record = pa.struct([])
    if RECORD in needed:  # one pass over the footers so every chunk has the same record columns and types
        files, record = _record_type(log_format, files, footers)
    schema = log_format.with_record(record)
    target = pa.schema([schema.field(n) for n in needed])
    first, stop = pa.scalar(lo, TIMESTAMP), pa.scalar(hi, TIMESTAMP)

    def keep(table: pa.Table) -> pa.Table:
        # Plain kernels, not an Expression: Table.filter(Expression) builds an Acero plan, ~2 ms per small part.
        times = table.column(log_format.time_column)
        if not equal and times.null_count == 0 and len(times):
            bounds = pc.min_max(times)  # a file wholly inside the window (most of a long one) is kept without a copy
            if bounds["min"].value >= lo and bounds["max"].value < hi:
                return table
        mask = pc.and_(pc.greater_equal(times, first), pc.less(times, stop))
        for name, value in equal.items():
            mask = pc.and_(mask, pc.equal(table.column(name), value))
        return table.filter(mask)

    pending: list[pa.Table] = []
    size = 0
    for table in _prefetch(lambda file: _read_part(log_format, file, needed), files):
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


def hour_sizes(storage: Storage, start: datetime, end: datetime) -> dict[datetime, int]:
    """The bytes stored in each hour folder of the log that overlaps ``[start, end)``, by the hour's start (UTC), from
    one listing and no file read: what a reader of those hours reads at most (a compacted file and the parts it holds
    are both counted until the parts are deleted)."""
    lo, hi = to_us(start, "start"), to_us(end, "end")
    return {
        EPOCH + timedelta(microseconds=hour_us): sum(info.size or 0 for info in listed.values())
        for hour_us, _, listed in _listed_hours(storage, lo, hi)
    }


def _files_in_window(storage: Storage, lo: int, hi: int, footers: _FooterBudget) -> list[LogFile]:
    """The files to read for ``[lo, hi)``: the live files of the hour folders overlapping it, in hour order; other
    files are ignored."""
    folders = _listed_hours(storage, lo, hi)
    if not folders:
        return []
    with ThreadPoolExecutor(min(_READ_THREADS, len(folders))) as pool:  # the compacted files' footers, a few at once
        live = pool.map(lambda folder: _live_files(storage, folder[1], folder[2], footers), folders)
        return [file for files in live for file in files]


def _listed_hours(storage: Storage, lo: int, hi: int) -> list[tuple[int, str, dict[str, pafs.FileInfo]]]:
    """The hour folders overlapping ``[lo, hi)`` in hour order: (hour start in µs, folder path, its log files by
    name with what the listing said of them)."""
    if hi <= lo:
        return []
    first, last = _day(lo), _day(hi - 1)
    folders: list[tuple[int, str, dict[str, pafs.FileInfo]]] = []
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
        day_us = (day - EPOCH.date()).days * DAY_US
        base = storage.path(name)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        hours: dict[str, dict[str, pafs.FileInfo]] = {}
        for info in storage.fs.get_file_info(selector):
            part = _PART.fullmatch(posixpath.relpath(info.path, base)) if info.type == pafs.FileType.File else None
            if part is None or int(part[2]) > 23:
                continue
            hour_us = day_us + int(part[2]) * HOUR_US
            if hour_us < hi and hour_us + HOUR_US > lo:
                hours.setdefault(part[1], {})[part[3]] = info
        for hour, listed in hours.items():
            folders.append((day_us + int(hour.removeprefix("hour=")) * HOUR_US, posixpath.join(base, hour), listed))
    folders.sort(key=lambda folder: folder[0])
    return folders


def _live_files(
    storage: Storage, folder: str, listed: Mapping[str, pafs.FileInfo], footers: _FooterBudget
) -> list[LogFile]:
    """The files of one hour folder to read, by name: a compacted file stands for the files it holds
    (airloop.predlog.compact), so read it or them, not both. Only the compacted files' footers are read here."""
    files = {name: LogFile(storage, info) for name, info in listed.items()}
    held = {name: held_by(file) for name, file in files.items() if name.startswith(COMPACT_PREFIX)}
    live = [files[name] for name in choose_live(storage.url_of(folder), files, held).live]
    for file in live:
        if file.name in held:
            footers.keep(file)
    return live


def _day(us: int) -> date:
    return (EPOCH + timedelta(microseconds=us)).date()


def _record_type(
    log_format: LogFormat, files: list[LogFile], footers: _FooterBudget
) -> tuple[list[LogFile], pa.StructType]:
    """The readable parts among ``files`` and the union of their record fields; their footers are kept for reading
    the rows as far as ``footers`` allows."""

    def schema_of(file: LogFile) -> pa.Schema | None:
        schema = file.readable_schema(f"{log_format.name} log part")
        if schema is None or not _is_part_of(log_format, schema.metadata, file.url):
            file.forget_footer()
            return None
        footers.keep(file)
        return schema

    if not files:
        return [], pa.struct([])
    with ThreadPoolExecutor(min(_READ_THREADS, len(files))) as pool:
        schemas = list(pool.map(schema_of, files))
    readable = [(f, s) for f, s in zip(files, schemas, strict=True) if s is not None]
    types = [s.field(RECORD).type for _, s in readable if RECORD in s.names]
    where = f"{len(readable)} {log_format.name} log parts"
    return [f for f, _ in readable], merge_record_types(types, where)


def _read_part(log_format: LogFormat, file: LogFile, columns: list[str]) -> pa.Table | None:
    """One part's ``columns`` (those it has); None when it is damaged or not a part of this log."""
    try:
        if not _is_part_of(log_format, file.schema.metadata, file.url):
            file.forget_footer()
            return None
        return file.read(columns)
    except Exception as error:
        if not _damaged(error):
            raise
        log.warning("skipping damaged %s log part %s: %s", log_format.name, file.url, error)
        return None


def _damaged(error: Exception) -> bool:
    """Whether a read failure means the part is damaged or gone (skip it), not that storage is unreachable (fail)."""
    if isinstance(error, FileNotFoundError | pa.ArrowInvalid):
        return True  # truncated, not Parquet, or removed between listing and reading
    if isinstance(error, OSError):  # Arrow's decoding errors carry no errno; network and permission errors do
        if "AWS Error" in str(error):  # opened with the listed size, a removed object shows at the first GET
            return any(code in str(error) for code in _GONE)
        return error.errno is None
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


def _prefetch(read: Callable[[LogFile], pa.Table | None], files: list[LogFile]) -> Iterator[pa.Table | None]:
    """``read(file)`` for each file in order, a few ahead in threads (object stores answer slowly, not serially)."""
    if not files:
        return
    pool = ThreadPoolExecutor(min(_READ_THREADS, len(files)))
    ahead: deque[Future[pa.Table | None]] = deque()
    try:
        for file in files:
            ahead.append(pool.submit(read, file))
            if len(ahead) > 2 * _READ_THREADS:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
