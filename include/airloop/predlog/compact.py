"""Compaction of a log's hour folders: thousands of small parts become one file, with no row lost or read twice.

A replica writes one part per flush (a second apart under steady traffic: 3,600 parts an hour), so reading a day
would cost tens of thousands of requests. ``compact_hour`` merges the files of one hour folder into one
``compact-<digest>.parquet`` whose Parquet metadata lists every file it holds (``SOURCES_KEY``):

- Readers (``live_files``) skip every file a compacted file lists, and a compacted file whose sources another one
  holds too. A reader that listed the folder before the compacted file appeared reads the parts; one that lists it
  after reads the compacted file instead of them: never both, never neither.
- The compacted file is published all at once (``Storage.write_atomic``); a crash before that leaves nothing, a crash
  after it leaves parts that every reader already skips.
- The parts it holds are deleted only once it is older than ``grace_s`` (a later run), so a reader that listed them
  before it appeared still finds them.
- A part a writer adds meanwhile is not among the sources: it stays, and the next run merges it with the compacted
  file into a new one (which lists the old one). A part a writer publishes again under its name (the spill of a
  write that had landed after all) is the same rows, skipped as before.
- The name is a digest of the sources: two compactions of the same files make the same file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from airloop.predlog.schema import (
    EPOCH,
    HOUR_US,
    RECORD,
    WRITER_KEY,
    LogFormat,
    LogSchemaError,
    merge_record_types,
)

if TYPE_CHECKING:
    from airloop.predlog.reader import LogFile
    from airloop.settings import Settings
    from airloop.storage import Storage

log = logging.getLogger(__name__)

PART_PREFIX = "part-"
COMPACT_PREFIX = "compact-"
SOURCES_KEY = b"airloop.compacted_from"
ROW_GROUP_ROWS = 65_536  # rows per row group of a compacted file: a reader takes it a row group at a time


class CompactionConflict(LogSchemaError):
    """Two compacted files of one hour hold some of the same parts and neither holds all of the other's: reading both
    would count rows twice, so nothing reads or compacts the hour until someone looks."""


def is_log_file(name: str) -> bool:
    """A complete part or compacted file of a log (temporary files start with a dot)."""
    return name.endswith(".parquet") and name.startswith((PART_PREFIX, COMPACT_PREFIX))


def sources_of(storage: Storage, path: str) -> frozenset[str] | None:
    """The file names the compacted file at ``path`` holds (see ``held_by``)."""
    from airloop.predlog.reader import LogFile

    return held_by(LogFile(storage, pafs.FileInfo(path)))


def held_by(file: LogFile) -> frozenset[str] | None:
    """The file names a compacted file holds, from its footer; None (with a warning) when it is damaged or gone, or
    its metadata lists none."""
    schema = file.readable_schema("compacted log file")
    if schema is None:
        return None
    try:
        return frozenset(json.loads((schema.metadata or {})[SOURCES_KEY]))
    except (KeyError, ValueError) as error:
        log.warning("skipping compacted log file %s: no readable %s: %s", file.url, SOURCES_KEY.decode(), error)
        return None


@dataclass
class Folder:
    """One hour folder as a reader must take it: the files to read, and those a compacted file already holds."""

    live: list[str]
    covered: dict[str, str] = field(default_factory=dict)  # file name -> the live compacted file holding it
    sources: dict[str, frozenset[str]] = field(default_factory=dict)  # live compacted file -> what it holds


def live_files(storage: Storage, folder: str, names: Iterable[str]) -> Folder:
    """Which of ``names`` (files of the hour folder ``folder``) a reader reads (see ``choose_live``), reading what
    each compacted file among them holds.

    Raises:
        CompactionConflict: two compacted files overlap without one holding all the other's sources.
    """
    names = sorted(n for n in names if is_log_file(n))
    held = {n: sources_of(storage, posixpath.join(folder, n)) for n in names if n.startswith(COMPACT_PREFIX)}
    return choose_live(storage.url_of(folder), names, held)


def choose_live(where: str, names: Iterable[str], held: Mapping[str, frozenset[str] | None]) -> Folder:
    """Which of ``names`` (files of the hour folder at the URL ``where``) a reader reads: every part and compacted
    file that no live compacted file holds, given what each compacted file among them holds (``held``: None when it
    cannot be read, so it is not read either).

    Raises:
        CompactionConflict: two compacted files overlap without one holding all the other's sources.
    """
    names = sorted(n for n in names if is_log_file(n))
    if not held:
        return Folder(names)
    readable = {n: s for n, s in held.items() if s is not None}
    # A compacted file is superseded when another lists it, or holds every one of its sources (two compactions that
    # raced: the later one saw more).
    superseded = {
        n
        for n, s in readable.items()
        for m, t in readable.items()
        if m != n and (n in t or (s < t) or (s == t and n > m))
    }
    alive = {n: s for n, s in readable.items() if n not in superseded}
    covered: dict[str, str] = {}
    for n, s in alive.items():
        for source in s:
            if source in covered and covered[source] != n:
                raise CompactionConflict(f"{where}: compacted files {covered[source]} and {n} both hold {source}")
            covered[source] = n
    for n in superseded:
        holder = next((m for m, t in alive.items() if n in t or readable[n] <= t), None)
        if holder is not None:
            covered.setdefault(n, holder)
    unreadable = [n for n, s in held.items() if s is None]
    live = [n for n in names if n not in covered and n not in unreadable]
    return Folder(live, covered, alive)


def compacted_name(sources: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(sources)).encode()).hexdigest()[:32]
    return f"{COMPACT_PREFIX}{digest}.parquet"


def compact_hour(
    storage: Storage, log_format: LogFormat, folder: str, *, now: datetime, grace_s: float
) -> dict[str, Any]:
    """Merge the live files of one hour folder (``date=…/hour=…`` below the log's root) into one compacted file, and
    delete the files compacted files held for longer than ``grace_s``. Returns what it did."""
    from airloop.predlog.reader import LogFile

    path = storage.path(folder)
    listing = {
        posixpath.basename(info.path): info
        for info in storage.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        if info.type == pafs.FileType.File
    }
    state = live_files(storage, path, listing)
    deleted = _delete_held(storage, path, state, listing, now - timedelta(seconds=grace_s))
    result: dict[str, Any] = {"folder": folder, "files": len(state.live), "deleted": deleted, "rows": 0}
    if len(state.live) < 2:
        return {**result, "compacted": None}
    tables, sources = [], set()
    for name in state.live:
        table = _read(log_format, LogFile(storage, listing[name]))
        if table is None:
            continue  # damaged or not ours: left where it is, as readers skip it
        tables.append(table)
        sources |= {name, *state.sources.get(name, ())}
    if len(tables) < 2:
        return {**result, "compacted": None}
    record = merge_record_types(
        (t.schema.field(RECORD).type for t in tables if RECORD in t.schema.names), storage.url_of(path)
    )
    target = log_format.with_record(record)
    if RECORD in target.names and record.num_fields == 0:
        target = target.remove(target.get_field_index(RECORD))  # Parquet cannot store a struct without fields
    metadata = {**(log_format.schema.metadata or {}), WRITER_KEY: b"compactor", SOURCES_KEY: _json(sources)}
    target = target.with_metadata(metadata)
    name = compacted_name(sources)

    def write(out_path: str) -> None:
        with pq.ParquetWriter(out_path, target, filesystem=storage.fs, compression="zstd") as writer:
            pending: list[pa.Table] = []
            size = 0
            for table in tables:
                pending.append(_conform(table, target))
                size += table.num_rows
                if size >= ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    pending, size = [], 0
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)

    storage.write_atomic(write, folder, name)
    rows = sum(t.num_rows for t in tables)
    log.info(
        "compacted %d %s log files (%d rows) into %s", len(tables), log_format.name, rows, storage.url(folder, name)
    )
    return {**result, "compacted": name, "rows": rows, "sources": len(sources)}


def compact_log(
    storage: Storage,
    log_format: LogFormat,
    *,
    now: datetime,
    lookback_hours: int,
    settle_s: float,
    grace_s: float,
) -> list[dict[str, Any]]:
    """``compact_hour`` for every hour folder of the last ``lookback_hours`` hours that ended ``settle_s`` ago or
    earlier (writers flush within seconds; a late spill only makes a new part, merged at the next run)."""
    last_us = (int((now - EPOCH).total_seconds() * 1e6) - int(settle_s * 1e6)) // HOUR_US * HOUR_US - HOUR_US
    hours = [last_us - i * HOUR_US for i in range(lookback_hours)]
    results = []
    days = {name for name in storage.listdir() if name.startswith("date=")}
    for hour_us in sorted(hours):
        stamp = EPOCH + timedelta(microseconds=hour_us)
        day, hour = f"date={stamp:%Y-%m-%d}", f"hour={stamp:%H}"
        if day not in days:
            continue
        folder = f"{day}/{hour}"
        if storage.exists(folder):
            results.append(compact_hour(storage, log_format, folder, now=now, grace_s=grace_s))
    return results


def _delete_held(
    storage: Storage, path: str, state: Folder, listing: Mapping[str, pafs.FileInfo], before: datetime
) -> int:
    """Delete the files live compacted files hold, once the one holding each is older than ``before``."""
    deleted = 0
    for name, holder in state.covered.items():
        info, holder_info = listing.get(name), listing.get(holder)
        if info is None or holder_info is None or holder_info.mtime is None:
            continue
        if holder_info.mtime.replace(tzinfo=holder_info.mtime.tzinfo or UTC) >= before:
            continue
        try:
            storage.fs.delete_file(posixpath.join(path, name))
            deleted += 1
        except FileNotFoundError:
            pass  # another compaction took it
    return deleted


def _read(log_format: LogFormat, file: LogFile) -> pa.Table | None:
    from airloop.predlog.reader import _damaged, _is_part_of

    try:
        if not _is_part_of(log_format, file.schema.metadata, file.url):
            return None
        return file.read()
    except Exception as error:
        if not _damaged(error):
            raise
        log.warning("not compacting damaged %s log file %s: %s", log_format.name, file.url, error)
        return None


def _conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    from airloop.predlog.reader import _conform as conform

    return conform(table.replace_schema_metadata(None), target.remove_metadata()).replace_schema_metadata(
        target.metadata
    )


def _json(sources: Iterable[str]) -> bytes:
    return json.dumps(sorted(sources), separators=(",", ":")).encode()


def compact_logs(settings: Settings, now: datetime) -> dict[str, Any]:
    """``compact_log`` for the model's prediction, feedback and scoring-error logs, as ``storage.log_compact_*`` say;
    per log: the hour folders looked at, the files merged, the rows they hold and the files deleted."""
    from airloop.predlog.schema import ERRORS, FEEDBACK, PREDICTIONS

    cfg, layout = settings.storage, settings.layout
    summary: dict[str, Any] = {}
    for log_format, storage in ((PREDICTIONS, layout.predictions()), (FEEDBACK, layout.feedback()),
                                (ERRORS, layout.errors())):  # fmt: skip
        done = compact_log(
            storage,
            log_format,
            now=now,
            lookback_hours=cfg.log_compact_lookback_hours,
            settle_s=cfg.log_compact_settle_s,
            grace_s=cfg.log_compact_grace_s,
        )
        merged = [d for d in done if d["compacted"]]
        summary[log_format.name] = {
            "hours": len(done),
            "compacted": len(merged),
            "files_merged": sum(d["files"] for d in merged),
            "rows": sum(d["rows"] for d in merged),
            "deleted": sum(d["deleted"] for d in done),
        }
    return summary
