"""Raw record sources: a local file, an S3 object, a PostgreSQL table or the model's synthetic generator.

Every source returns the same *raw form*: the columns as the source has them (in its order, none dropped or added, so
the raw quality suite can see a missing or extra column), values stripped of surrounding whitespace, the spec's
integer columns as int64 when every value is an integer, its float columns as float64 when every value is a number
(empty or a missing marker: NaN), everything else as the source's strings (markers such as "?" and "None" included).
"""

from __future__ import annotations

import io
import logging
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from airloop.errors import SourceError, SourceMisconfigured, SourceNotFound
from airloop.settings import DataSettings
from airloop.spec import ModelSpec, resolve

log = logging.getLogger(__name__)

_INTEGER = r"[+-]?\d+"
# An unquoted PostgreSQL name, optionally schema-qualified; it is quoted anyway, so it is matched as written.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")
_UNDEFINED_TABLE = "42P01"


def _normalized(column: pd.Series, kind: str, markers: tuple[str, ...]) -> pd.Series:
    if kind == "integer" and pd.api.types.is_integer_dtype(column.dtype) and not column.hasnans:
        return column.astype("int64")
    if kind == "float" and pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column):
        return column.astype("float64")
    values = column.astype("str").str.strip()
    if kind == "integer" and values.str.fullmatch(_INTEGER).all():
        try:
            return values.astype("int64")
        except (OverflowError, ValueError):  # beyond int64: leave the strings for the type expectation to name
            return values
    if kind == "float":
        missing = values.isin(markers) | values.eq("") | column.isna().to_numpy()
        numbers = pd.to_numeric(values.where(~missing), errors="coerce")
        if not (numbers.isna() & ~missing).any():  # every recorded value is a number
            return numbers.astype("float64")
    return values


def normalize_raw(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Bring a frame read as strings into the raw form (see the module docstring); never drops or reorders columns."""
    out = frame.copy()
    out.columns = [c.strip() if isinstance(c, str) else c for c in frame.columns]
    kinds = {c.name: c.type for c in spec.data.columns}
    markers = tuple(spec.data.missing_markers)
    for position, name in enumerate(out.columns):
        # Positional, so even duplicated column names are each normalized and kept.
        out.isetitem(position, _normalized(out.iloc[:, position], kinds.get(name, "string"), markers))
    return out


def read_csv_bytes(data: bytes | str | os.PathLike[str], spec: ModelSpec) -> pd.DataFrame:
    """Read a CSV of ``spec``'s records (e.g. diabetic_data.csv as published: CRLF, "?" for missing, no quoting) from
    bytes or a path."""
    handle = io.BytesIO(data) if isinstance(data, bytes) else data
    # keep_default_na=False: "None", "NA" and "?" are recorded values, not missing ones, unless the spec says so.
    frame = pd.read_csv(handle, dtype=str, keep_default_na=False, encoding="utf-8")
    return normalize_raw(frame, spec)


_UNREADABLE_CSV = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError)


def _parse(data: bytes | Path, spec: ModelSpec, source: str, location: str) -> pd.DataFrame:
    try:
        return read_csv_bytes(data, spec)
    except _UNREADABLE_CSV as exc:
        raise SourceError(source, location, f"not a readable CSV: {type(exc).__name__}: {exc}") from exc


def _parse_chunks(handle: Any, spec: ModelSpec, source: str, location: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """``_parse`` of a path or readable stream, ``chunk_rows`` rows at a time (only one chunk is ever held)."""
    try:
        # Same reading as read_csv_bytes: "None", "NA" and "?" are published values, not missing ones.
        reader = pd.read_csv(handle, dtype=str, keep_default_na=False, encoding="utf-8", chunksize=chunk_rows)
        for chunk in reader:
            yield normalize_raw(chunk, spec)
    except _UNREADABLE_CSV as exc:
        raise SourceError(source, location, f"not a readable CSV: {type(exc).__name__}: {exc}") from exc


def _required(data: DataSettings, field: str) -> Any:
    value = getattr(data, field)
    if value in (None, ""):
        raise SourceMisconfigured(
            data.source, f"(data.{field} unset)", f"data.source={data.source!r} needs data.{field}"
        )
    return value


def _split_s3_uri(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if parts.scheme != "s3" or not bucket or not key:
        raise SourceMisconfigured("s3", uri, "expected a URI of the form s3://bucket/key")
    return bucket, key


def _file_path(data: DataSettings) -> Path:
    path = Path(_required(data, "path"))
    if not path.is_file():
        problem = "is a directory, not a file" if path.is_dir() else "no such file"
        raise SourceNotFound("file", str(path), problem)
    return path


def _read_file(data: DataSettings, spec: ModelSpec) -> pd.DataFrame:
    path = _file_path(data)
    return _parse(path, spec, "file", str(path))


def _iter_file(data: DataSettings, spec: ModelSpec, chunk_rows: int) -> Iterator[pd.DataFrame]:
    path = _file_path(data)
    yield from _parse_chunks(path, spec, "file", str(path), chunk_rows)


def _what_is_missing(hook: Any, bucket: str, key: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    # get_key's HEAD request answers a bare 404 for a missing bucket as for a missing key; ask the bucket to tell.
    try:
        hook.get_conn().head_bucket(Bucket=bucket)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket"):
            return f"no such bucket {bucket!r}"
    except BotoCoreError:
        pass  # cannot tell; the key is what was asked for
    return f"no such key {key!r} in bucket {bucket!r}"


@contextmanager
def _s3_errors(data: DataSettings, hook: Any, bucket: str, key: str) -> Iterator[None]:
    """S3 and connection errors while reading ``data.s3_uri``, as the source errors ``load_raw`` documents."""
    from botocore.exceptions import BotoCoreError, ClientError

    uri = data.s3_uri
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            missing = _what_is_missing(hook, bucket, key)
            raise SourceNotFound("s3", uri, f"{missing} (connection {data.s3_conn_id!r})") from exc
        problem = f"{code or 'error'}: {error.get('Message') or exc}"
        raise SourceError("s3", uri, f"{problem} (connection {data.s3_conn_id!r})") from exc
    except BotoCoreError as exc:
        raise SourceError("s3", uri, f"{type(exc).__name__}: {exc} (connection {data.s3_conn_id!r})") from exc


def _s3_object(data: DataSettings) -> tuple[Any, str, str]:
    """The S3 hook of ``data.s3_conn_id``, the bucket and the key of ``data.s3_uri``."""
    bucket, key = _split_s3_uri(_required(data, "s3_uri"))
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    # An undefined connection id makes S3Hook fall back to boto3's own credential chain (the provider's behaviour).
    return S3Hook(aws_conn_id=data.s3_conn_id), bucket, key


def _read_s3(data: DataSettings, spec: ModelSpec) -> pd.DataFrame:
    hook, bucket, key = _s3_object(data)
    with _s3_errors(data, hook, bucket, key):
        body = hook.get_key(key, bucket_name=bucket).get()["Body"].read()
    return _parse(body, spec, "s3", data.s3_uri)


def _iter_s3(data: DataSettings, spec: ModelSpec, chunk_rows: int) -> Iterator[pd.DataFrame]:
    hook, bucket, key = _s3_object(data)
    with _s3_errors(data, hook, bucket, key):
        body = hook.get_key(key, bucket_name=bucket).get()["Body"]  # a stream: read as the chunks are parsed
        with closing(body):
            yield from _parse_chunks(body, spec, "s3", data.s3_uri, chunk_rows)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _driver_errors() -> tuple[type[Exception], ...]:
    # PostgresHook connects with psycopg 3 under SQLAlchemy 2, else psycopg2; catch whichever is present.
    errors: list[type[Exception]] = []
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:
        pass
    try:
        import psycopg2

        errors.append(psycopg2.Error)
    except ImportError:
        pass
    return tuple(errors)


def _postgres_query(data: DataSettings) -> tuple[Any, str]:
    """The hook of ``data.postgres_conn_id`` and the table's quoted relation name (checked first)."""
    table = data.postgres_table
    if not _TABLE_NAME.fullmatch(table or ""):
        location = f"{data.postgres_conn_id}/{table}"
        raise SourceMisconfigured("postgres", location, "table name must be [schema.]name of letters, digits and _")
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    relation = ".".join(_quote(part) for part in table.split("."))
    return PostgresHook(postgres_conn_id=data.postgres_conn_id), relation


def _select(cursor: Any, relation: str, key: str) -> tuple[list[str], str]:
    """The table's columns and the SELECT that reads every one as text in the order of the spec's ``key``."""
    cursor.execute(f"SELECT * FROM {relation} AS t LIMIT 0")
    columns = [d[0] for d in cursor.description]
    # Text, so integer columns stored as bigint or as text reach normalize_raw alike; ordered by the stored key
    # so that an unchanged table always yields the same frame.
    select = ", ".join(f"t.{_quote(c)}::text AS {_quote(c)}" for c in columns)
    order = f" ORDER BY t.{_quote(key)}" if key in columns else ""
    return columns, f"SELECT {select} FROM {relation} AS t{order}"


@contextmanager
def _postgres_errors(data: DataSettings) -> Iterator[None]:
    """Driver and connection errors while reading ``data.postgres_table``, as the source errors of ``load_raw``."""
    from airflow.exceptions import AirflowNotFoundException

    table, location = data.postgres_table, f"{data.postgres_conn_id}/{data.postgres_table}"
    try:
        yield
    except AirflowNotFoundException as exc:
        problem = f"Airflow connection {data.postgres_conn_id!r} is not defined"
        raise SourceNotFound("postgres", location, problem) from exc
    except _driver_errors() as exc:
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if code == _UNDEFINED_TABLE:
            problem = f"no such table {table!r} (connection {data.postgres_conn_id!r})"
            raise SourceNotFound("postgres", location, problem) from exc
        problem = f"{type(exc).__name__}: {str(exc).strip()} (connection {data.postgres_conn_id!r})"
        raise SourceError("postgres", location, problem) from exc


def _read_postgres(data: DataSettings, spec: ModelSpec) -> pd.DataFrame:
    hook, relation = _postgres_query(data)
    with _postgres_errors(data), closing(hook.get_conn()) as conn, closing(conn.cursor()) as cursor:
        columns, select = _select(cursor, relation, spec.data.key)
        cursor.execute(select)
        rows = cursor.fetchall()
    frame = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns, dtype="str")
    return normalize_raw(frame, spec)


def _iter_postgres(data: DataSettings, spec: ModelSpec, chunk_rows: int) -> Iterator[pd.DataFrame]:
    hook, relation = _postgres_query(data)
    with _postgres_errors(data), closing(hook.get_conn()) as conn:
        with closing(conn.cursor()) as cursor:
            columns, select = _select(cursor, relation, spec.data.key)
        # A named (server-side) cursor: the server keeps the result and sends chunk_rows rows per fetch.
        with closing(conn.cursor(name=f"airloop_{uuid.uuid4().hex}")) as cursor:
            cursor.execute(select)
            while rows := cursor.fetchmany(chunk_rows):
                yield normalize_raw(pd.DataFrame.from_records(rows, columns=columns), spec)


def generator(spec: ModelSpec) -> Any:
    """The model's synthetic generator ``(n_rows, seed, covariate_drift, concept_drift) -> raw frame``: its own when
    the spec names one, else the platform's, derived from the spec's schema."""
    if spec.data.generator:
        return resolve(spec.data.generator)
    from functools import partial

    from airloop.data.generator import generate

    return partial(generate, spec)


def _generate(data: DataSettings, spec: ModelSpec) -> pd.DataFrame:
    frame = generator(spec)(
        data.synthetic_rows,
        data.synthetic_seed,
        covariate_drift=data.drift.covariate,
        concept_drift=data.drift.concept,
    )
    return normalize_raw(frame, spec)


_READERS = {"file": _read_file, "s3": _read_s3, "postgres": _read_postgres, "synthetic": _generate}


def load_raw(data: DataSettings, spec: ModelSpec) -> pd.DataFrame:
    """Load ``spec``'s raw records from ``data.source`` in the raw form.

    Raises:
        SourceNotFound: the file, S3 bucket or key, table or Airflow connection does not exist (a ``FinalError``).
        SourceMisconfigured: the settings name no readable source (a ``FinalError``).
        SourceError: the source exists but could not be read (unreadable CSV, access denied, network); retryable.
    """
    reader = _READERS.get(data.source)
    if reader is None:
        raise SourceMisconfigured(str(data.source), "-", f"unknown source; expected one of {sorted(_READERS)}")
    frame = reader(data, spec)
    log.info("loaded %d rows x %d columns from %s", len(frame), frame.shape[1], describe_source(data))
    return frame


def _iter_generated(data: DataSettings, spec: ModelSpec, chunk_rows: int) -> Iterator[pd.DataFrame]:
    # The generator makes all its rows at once (its rows depend on the count): chunks of that one frame.
    frame = _generate(data, spec)
    for start in range(0, len(frame), chunk_rows):
        yield frame.iloc[start : start + chunk_rows].reset_index(drop=True)


_CHUNK_READERS = {"file": _iter_file, "s3": _iter_s3, "postgres": _iter_postgres, "synthetic": _iter_generated}


def iter_raw(data: DataSettings, spec: ModelSpec, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """``load_raw`` in chunks of at most ``chunk_rows`` rows, each in the raw form, for inputs larger than memory.

    A file and an S3 object are parsed as they stream in and a PostgreSQL table is read through a server-side cursor,
    so one chunk is held at a time (the synthetic generator makes its rows at once). An integer column is int64 in a
    chunk where every value is an integer. Raises what ``load_raw`` raises, when the source is opened or mid-way.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    reader = _CHUNK_READERS.get(data.source)
    if reader is None:
        raise SourceMisconfigured(str(data.source), "-", f"unknown source; expected one of {sorted(_READERS)}")
    rows = 0
    for chunk in reader(data, spec, chunk_rows):
        rows += len(chunk)
        yield chunk
    log.info("read %d rows in chunks of up to %d from %s", rows, chunk_rows, describe_source(data))


def describe_source(data: DataSettings) -> str:
    """A URI naming where ``load_raw`` reads from, for lineage metadata."""
    if data.source == "file":
        return Path(_required(data, "path")).resolve().as_uri()
    if data.source == "s3":
        return str(_required(data, "s3_uri"))
    if data.source == "postgres":
        return f"postgresql://{data.postgres_conn_id}/{_required(data, 'postgres_table')}"
    if data.source == "synthetic":
        drift = data.drift
        return (
            f"synthetic://rows={data.synthetic_rows}&seed={data.synthetic_seed}"
            f"&covariate={drift.covariate:g}&concept={drift.concept:g}"
        )
    raise SourceMisconfigured(str(data.source), "-", f"unknown source; expected one of {sorted(_READERS)}")
