"""Compaction of the logs' hour folders: many parts become one file, every read returns each row exactly once before,
during and after it, whatever writers, other compactions and crashes do meanwhile."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.predlog import PREDICTIONS, LogWriter, load_predictions
from airloop.predlog import compact as compaction
from airloop.predlog.compact import COMPACT_PREFIX, CompactionConflict, compact_hour, compact_log, live_files
from airloop.storage import S3Options, Storage
from tests.predlog.test_prediction_log import EVER, H10, H11, prediction
from tests.s3_server import ACCESS_KEY, SECRET_KEY

FOLDER = "date=2026-01-01/hour=10"


def later(**offset) -> datetime:
    """ "now" for a compaction (files are stamped with the real time): the real now, or ``offset`` after it."""
    return datetime.now(UTC) + timedelta(**offset)


def write_parts(storage: Storage, prefix: str, parts: int, rows: int = 3, at=H10) -> list[str]:
    """``parts`` flushes of ``rows`` predictions each (one part per flush), ids ``<prefix>-<part>-<row>``."""
    writer = LogWriter(storage, PREDICTIONS, interval_s=60)
    made = []
    for part in range(parts):
        batch = [prediction(f"{prefix}-{part}-{i}", at + timedelta(seconds=part)) for i in range(rows)]
        writer.append(batch)
        writer.flush()
        made += [row.request_id for row in batch]
    return made


def files(storage: Storage, folder: str = FOLDER) -> list[str]:
    return sorted(name for name in storage.listdir(folder) if not name.startswith("."))


def read_ids(storage: Storage) -> list[str]:
    return sorted(load_predictions(storage, *EVER, columns=["request_id"])["request_id"])


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage.from_url(tmp_path / "predictions")


def test_an_hours_parts_become_one_file_and_every_read_returns_each_row_once(storage):
    ids = write_parts(storage, "a", 40)
    assert len(files(storage)) == 40

    first = compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=3600)

    assert first["compacted"].startswith(COMPACT_PREFIX) and first["rows"] == 120 and first["deleted"] == 0
    assert len(files(storage)) == 41  # the parts stay for the grace period; readers skip them
    assert read_ids(storage) == sorted(ids)
    assert live_files(storage, storage.path(FOLDER), files(storage)).live == [first["compacted"]]

    again = compact_hour(storage, PREDICTIONS, FOLDER, now=later(hours=2), grace_s=3600)

    assert again["compacted"] is None and again["deleted"] == 40  # the grace is over: the parts go
    assert files(storage) == [first["compacted"]]
    assert read_ids(storage) == sorted(ids)


def test_parts_written_after_a_compaction_are_merged_with_it_at_the_next_and_nothing_is_read_twice(storage):
    ids = write_parts(storage, "a", 5)
    one = compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=0)["compacted"]
    ids += write_parts(storage, "b", 4)  # a writer goes on, or a spilled part is published late

    assert read_ids(storage) == sorted(ids)
    two = compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=0)

    assert two["compacted"] != one and two["rows"] == 27  # the first compacted file and the 4 new parts
    assert read_ids(storage) == sorted(ids)
    compact_hour(storage, PREDICTIONS, FOLDER, now=later(seconds=1), grace_s=0)
    assert files(storage) == [two["compacted"]] and read_ids(storage) == sorted(ids)


def test_a_part_published_again_under_its_name_after_it_was_compacted_is_not_read_twice(storage):
    ids = write_parts(storage, "a", 3)
    part = files(storage)[0]
    content = storage.read_bytes(FOLDER, part)
    compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=0)
    compact_hour(storage, PREDICTIONS, FOLDER, now=later(seconds=1), grace_s=0)
    assert part not in files(storage)

    storage.write_bytes(content, FOLDER, part)  # the writer's spill of a write that had landed after all

    assert read_ids(storage) == sorted(ids)


def test_a_compaction_that_crashes_while_writing_leaves_nothing_and_the_parts_read_as_before(storage, monkeypatch):
    ids = write_parts(storage, "a", 6)
    before = files(storage)

    def crash(self, table, row_group_size=None):
        raise OSError("killed mid-write")

    monkeypatch.setattr("pyarrow.parquet.ParquetWriter.write_table", crash)
    with pytest.raises(OSError, match="killed mid-write"):
        compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=0)
    monkeypatch.undo()

    assert files(storage) == before and read_ids(storage) == sorted(ids)
    assert compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=0)["rows"] == 18


def test_two_compactions_that_raced_with_different_views_are_read_as_the_larger(storage, monkeypatch):
    ids = write_parts(storage, "a", 3)
    parts = files(storage)
    # A compaction that saw only the first two parts, then one that saw all three (neither saw the other).
    saw_two = compaction.compacted_name(parts[:2])
    real_live = compaction.live_files
    monkeypatch.setattr(compaction, "live_files", lambda s, f, n: real_live(s, f, [x for x in n if x != parts[2]]))
    small = compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=3600)["compacted"]
    assert small == saw_two
    monkeypatch.setattr(compaction, "live_files", lambda s, f, n: real_live(s, f, [x for x in n if x != saw_two]))
    large = compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=3600)["compacted"]
    monkeypatch.undo()

    state = live_files(storage, storage.path(FOLDER), files(storage))
    assert state.live == [large] and state.covered[small] == large
    assert read_ids(storage) == sorted(ids)


def test_compacted_files_that_overlap_without_one_holding_the_other_are_refused_not_read_twice(storage, monkeypatch):
    write_parts(storage, "a", 3)
    parts = files(storage)
    sources = {"compact-x.parquet": frozenset(parts[:2]), "compact-y.parquet": frozenset(parts[1:])}
    monkeypatch.setattr(compaction, "sources_of", lambda s, path: sources[path.rsplit("/", 1)[1]])

    with pytest.raises(CompactionConflict, match=f"both hold {parts[1]}"):
        live_files(storage, storage.path(FOLDER), [*parts, *sources])


def test_while_writers_write_and_compactions_run_every_read_returns_each_row_at_most_once(storage):
    stop, reads, written, compactions = threading.Event(), [], [], []

    def writer(index: int) -> None:
        log = LogWriter(storage, PREDICTIONS, interval_s=60, writer_id=f"replica{index}")
        batch = 0
        while not stop.is_set():
            rows = [prediction(f"w{index}-{batch}-{i}", H10 + timedelta(seconds=batch % 3600)) for i in range(5)]
            log.append(rows)
            log.flush()
            written.extend(r.request_id for r in rows)
            batch += 1

    def compactor() -> None:
        while not stop.is_set():
            compactions.append(compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=3600)["compacted"])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)] + [threading.Thread(target=compactor)]
    for thread in threads:
        thread.start()
    # Until several compactions merged files under the readers' feet (however slow this machine is right now).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (len([c for c in compactions if c]) < 3 or len(reads) < 5):
        reads.append(read_ids(storage))
    stop.set()
    for thread in threads:
        thread.join()

    assert all(len(ids) == len(set(ids)) for ids in reads)
    assert any(name.startswith(COMPACT_PREFIX) for name in files(storage))
    assert read_ids(storage) == sorted(written)


@pytest.mark.property
@settings(max_examples=20, deadline=None)
@given(steps=st.lists(st.sampled_from(["write", "compact", "compact_late", "republish"]), min_size=1, max_size=12))
def test_any_sequence_of_writes_compactions_and_republished_parts_reads_every_row_exactly_once(tmp_path_factory, steps):
    storage = Storage.from_url(tmp_path_factory.mktemp("log") / "predictions")
    ids, offset, published = [], timedelta(0), {}
    for step in steps:
        if step == "write":
            ids += write_parts(storage, uuid.uuid4().hex[:6], 2)
            published.update({n: storage.read_bytes(FOLDER, n) for n in files(storage) if n.startswith("part-")})
        elif step == "republish" and published:
            name = sorted(published)[0]
            storage.write_bytes(published[name], FOLDER, name)
        elif step.startswith("compact") and storage.exists(FOLDER):
            offset += timedelta(hours=2 if step == "compact_late" else 0, seconds=1)
            compact_hour(storage, PREDICTIONS, FOLDER, now=later() + offset, grace_s=3600)
        assert read_ids(storage) == sorted(ids)


def test_compact_log_takes_the_settled_hours_of_the_lookback_and_leaves_the_current_one(storage):
    write_parts(storage, "a", 3, at=H10)
    write_parts(storage, "b", 3, at=H11)
    now = H11 + timedelta(minutes=30)  # hour 11 is still being written

    done = compact_log(storage, PREDICTIONS, now=now, lookback_hours=24, settle_s=300, grace_s=0)

    assert [d["folder"] for d in done] == [FOLDER]
    assert len(files(storage, "date=2026-01-01/hour=11")) == 3


def test_compaction_on_s3_reads_the_same_rows_from_one_object(s3_server):
    bucket = f"compact-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    options = S3Options(endpoint_url=s3_server.endpoint_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    storage = Storage.from_url(f"s3://{bucket}/predictions", options)
    ids = write_parts(storage, "a", 12)

    compact_hour(storage, PREDICTIONS, FOLDER, now=later(), grace_s=0)
    assert read_ids(storage) == sorted(ids)
    compact_hour(storage, PREDICTIONS, FOLDER, now=later(hours=1), grace_s=0)

    assert len(files(storage)) == 1 and files(storage)[0].startswith(COMPACT_PREFIX)
    assert read_ids(storage) == sorted(ids)
