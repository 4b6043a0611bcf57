"""The prediction and feedback logs: what serving appends is what the drift and A/B DAGs read back, by time window."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.predlog import (
    ERROR_SCHEMA,
    ERRORS,
    FEEDBACK,
    FEEDBACK_SCHEMA,
    PREDICTION_SCHEMA,
    PREDICTIONS,
    SCHEMA_VERSION,
    VERSION_KEY,
    ErrorRow,
    FeedbackRow,
    LogSchemaError,
    LogWriteError,
    LogWriter,
    PredictionRow,
    join_outcomes,
    load_errors,
    load_feedback,
    load_predictions,
    partition_of,
    raw_records,
    read_predictions,
)
from airloop.storage import S3Options, Storage
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY

REPO = Path(__file__).resolve().parents[2]
LOGGER = "airloop.predlog"
DAY = datetime(2026, 1, 1, tzinfo=UTC)
H10, H11, H12 = (DAY + timedelta(hours=h) for h in (10, 11, 12))
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def prediction(request_id: str, at: datetime, **changes) -> PredictionRow:
    """A champion prediction made at ``at`` for a two-field record."""
    row = PredictionRow(
        request_id=request_id,
        predicted_at=at.timestamp(),
        experiment_id="exp-1",
        variant="champion",
        model_version="3",
        entity_id=None,
        probability=0.25,
        predicted_class=0,
        shadow=False,
        record={"age": "[50-60)", "num_medications": 12},
    )
    return row._replace(**changes)


def write(storage: Storage, rows, log_format=PREDICTIONS) -> LogWriter:
    """Append ``rows`` and flush them as one flush."""
    writer = LogWriter(storage, log_format, interval_s=60)
    writer.append(rows)
    writer.flush()
    return writer


def ids(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["request_id"])


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage.from_url(tmp_path / "predictions")


# --- schema and round trip --------------------------------------------------------------------------------------


def test_row_fields_are_the_schema_columns_in_order():
    assert list(PredictionRow._fields) == PREDICTION_SCHEMA.names
    assert list(FeedbackRow._fields) == FEEDBACK_SCHEMA.names
    assert list(ErrorRow._fields) == ERROR_SCHEMA.names


def test_a_part_written_before_latency_was_logged_reads_with_it_null(storage):
    write(storage, [prediction("v1", H10)])
    (part,) = storage.walk_files()
    written = pq.read_table(storage.path(part))
    version_1 = written.drop_columns("latency_ms").replace_schema_metadata(
        {**written.schema.metadata, VERSION_KEY: b"1"}
    )
    pq.write_table(version_1, storage.path(part))
    write(storage, [prediction("v2", H10, latency_ms=2.0)])

    frame = load_predictions(storage, *EVER).set_index("request_id")

    assert frame.loc["v2", "latency_ms"] == 2.0 and pd.isna(frame.loc["v1", "latency_ms"])
    assert frame.loc["v1", "record.age"] == "[50-60)"


def test_scoring_errors_round_trip_and_filter_by_experiment(tmp_path):
    storage = Storage.from_url(tmp_path / "errors")
    rows = [
        ErrorRow(H10.timestamp(), "exp-1", "challenger", "4", 3, False, "RuntimeError: boom"),
        ErrorRow(H11.timestamp(), "exp-2", "challenger", "5", 1, True, "ValueError: shadow"),
    ]
    write(storage, rows, ERRORS)

    assert load_errors(storage, *EVER)["records"].tolist() == [3, 1]
    only = load_errors(storage, *EVER, experiment_id="exp-1")
    assert only.drop(columns="occurred_at").to_dict("records") == [
        {
            "experiment_id": "exp-1",
            "variant": "challenger",
            "model_version": "4",
            "records": 3,
            "shadow": False,
            "error": "RuntimeError: boom",
        }
    ]


def test_rows_round_trip_with_schema_version_in_parquet_metadata(storage):
    served = prediction("a", H10 + timedelta(microseconds=123), entity_id="patient-7", probability=0.75, latency_ms=1.5)
    shadow = served._replace(variant="challenger", model_version="4", probability=0.5, predicted_class=1, shadow=True)
    write(storage, [served, shadow])

    frame = load_predictions(storage, *EVER)
    (part,) = storage.walk_files()
    metadata = pq.read_metadata(storage.path(part)).metadata

    assert metadata[VERSION_KEY] == str(SCHEMA_VERSION).encode()
    assert frame.to_dict("records") == [
        {
            "request_id": "a",
            "predicted_at": pd.Timestamp(H10 + timedelta(microseconds=123)),
            "experiment_id": "exp-1",
            "variant": variant,
            "model_version": version,
            "entity_id": "patient-7",
            "probability": probability,
            "predicted_class": predicted,
            "shadow": is_shadow,
            "record.age": "[50-60)",
            "record.num_medications": 12,
            "latency_ms": 1.5,
        }
        for variant, version, probability, predicted, is_shadow in (
            ("champion", "3", 0.75, 0, False),
            ("challenger", "4", 0.5, 1, True),
        )
    ]
    assert str(frame["predicted_at"].dtype) == "datetime64[us, UTC]"
    assert raw_records(frame).to_dict("records") == [{"age": "[50-60)", "num_medications": 12}] * 2


def test_feedback_round_trips_and_is_windowed_by_receipt_time(tmp_path):
    storage = Storage.from_url(tmp_path / "feedback")
    rows = [FeedbackRow("a", 1, H10.timestamp()), FeedbackRow("b", 0, H11.timestamp(), "feedback_key")]
    write(storage, rows, FEEDBACK)

    frame = load_feedback(storage, H11, H12)

    expected = {"request_id": "b", "outcome": 0, "received_at": pd.Timestamp(H11), "source": "feedback_key"}
    assert frame.to_dict("records") == [expected]
    assert storage.walk_files()[0].startswith("date=2026-01-01/hour=10/part-")


# --- windows and partitions -------------------------------------------------------------------------------------


def test_window_includes_rows_at_its_start_and_excludes_rows_at_its_end(storage):
    just_before = H11 - timedelta(microseconds=1)
    write(storage, [prediction("before", just_before), prediction("start", H11), prediction("end", H12)])

    assert ids(load_predictions(storage, H11, H12)) == ["start"]
    assert ids(load_predictions(storage, just_before, H12 + timedelta(microseconds=1))) == ["before", "end", "start"]
    assert load_predictions(storage, H11, H11).empty


def test_rows_are_partitioned_by_prediction_time_not_flush_time(storage):
    rows = [prediction(f"ten-{i}", H10 + timedelta(minutes=50 + i)) for i in range(3)]
    rows += [prediction(f"eleven-{i}", H11 + timedelta(minutes=i)) for i in range(2)]

    writer = write(storage, rows)  # one flush, long after both hours

    folders = sorted({part.rsplit("/", 1)[0] for part in storage.walk_files()})
    assert folders == ["date=2026-01-01/hour=10", "date=2026-01-01/hour=11"]
    assert partition_of(H11 + timedelta(minutes=59)) == "date=2026-01-01/hour=11"
    assert writer.written == 5
    assert ids(load_predictions(storage, H11, H12)) == ["eleven-0", "eleven-1"]


def test_window_spanning_midnight_reads_both_days(storage):
    midnight = DAY + timedelta(days=1)
    write(storage, [prediction("late", midnight - timedelta(seconds=1)), prediction("early", midnight)])

    assert ids(load_predictions(storage, midnight - timedelta(hours=1), midnight + timedelta(hours=1))) == [
        "early",
        "late",
    ]
    assert sorted(storage.listdir()) == ["date=2026-01-01", "date=2026-01-02"]


def test_naive_datetimes_are_refused_with_the_value_in_the_message(storage):
    with pytest.raises(ValueError, match="2026-01-01T10:00:00 has no timezone"):
        read_predictions(storage, datetime(2026, 1, 1, 10), H12)


# --- only complete parts ----------------------------------------------------------------------------------------


def test_temporary_and_foreign_files_are_ignored(storage):
    write(storage, [prediction("real", H10)])
    hour = Path(storage.path("date=2026-01-01", "hour=10"))
    good = next(hour.glob("part-*.parquet")).read_bytes()
    (hour / ".part-dead-1.parquet.tmp").write_bytes(good[:100])  # a replica killed mid-write
    (hour / "part-dead-2.parquet.tmp").write_bytes(good)
    (hour / "_SUCCESS").write_bytes(b"")
    (hour / "notes.txt").write_text("not a part")
    (hour.parent / "part-outside-an-hour.parquet").write_bytes(good)
    garbage = Path(storage.path("date=garbage", "hour=10"))
    garbage.mkdir(parents=True)
    (garbage / "part-x.parquet").write_bytes(good)

    assert ids(load_predictions(storage, *EVER)) == ["real"]


def test_damaged_part_is_skipped_with_a_warning_naming_it(storage, caplog):
    write(storage, [prediction("kept", H10)])
    damaged = Path(storage.path("date=2026-01-01", "hour=10", "part-broken-1.parquet"))
    damaged.write_bytes(next(damaged.parent.glob("part-*.parquet")).read_bytes()[:-40])

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        frame = load_predictions(storage, *EVER)

    assert ids(frame) == ["kept"]
    assert any(str(damaged) in message and "damaged" in message for message in caplog.messages)


def test_part_of_a_newer_schema_version_fails_the_read_naming_it(storage):
    write(storage, [prediction("old", H10)])
    newer = storage.path("date=2026-01-01", "hour=10", "part-future-1.parquet")
    table = pa.table({"request_id": ["new"]}).replace_schema_metadata(
        {**PREDICTION_SCHEMA.metadata, VERSION_KEY: str(SCHEMA_VERSION + 1).encode()}
    )
    pq.write_table(table, newer)

    with pytest.raises(LogSchemaError, match=f"part-future-1.parquet has log schema version {SCHEMA_VERSION + 1}"):
        load_predictions(storage, *EVER)


# --- streaming --------------------------------------------------------------------------------------------------


def test_reader_streams_chunks_of_at_most_batch_rows(storage):
    for hour in (H10, H11, H12):  # three flushes, three hours: several parts
        write(storage, [prediction(f"{hour:%H}-{i}", hour + timedelta(seconds=i)) for i in range(10)])

    chunks = read_predictions(storage, *EVER, batch_rows=7)

    assert iter(chunks) is chunks  # an iterator, not a list: nothing is read before asking
    sizes, columns = [], set()
    for chunk in chunks:
        sizes.append(len(chunk))
        columns.add(tuple(chunk.columns))
    assert sizes == [7, 7, 7, 7, 2]
    assert len(columns) == 1


def test_columns_restrict_what_comes_back(storage):
    write(storage, [prediction("a", H10)])

    frame = load_predictions(storage, *EVER, columns=["request_id", "probability"])

    assert list(frame.columns) == ["request_id", "probability"]
    with pytest.raises(ValueError, match=r"unknown predictions log columns \['outcome'\]"):
        read_predictions(storage, *EVER, columns=["outcome"])


# --- records of different model signatures ----------------------------------------------------------------------


def test_records_with_different_fields_in_different_parts_are_read_together(storage):
    write(storage, [prediction("v3", H10, record={"age": "[50-60)", "num_medications": 12})])
    write(storage, [prediction("v4", H10, record={"num_medications": 2.5, "insulin": True}, model_version="4")])

    frame = load_predictions(storage, *EVER).sort_values("request_id", ignore_index=True)

    records = raw_records(frame)
    assert sorted(records.columns) == ["age", "insulin", "num_medications"]
    assert records["num_medications"].tolist() == [12.0, 2.5]  # int promoted to float
    assert records["age"].tolist()[0] == "[50-60)" and pd.isna(records["age"].tolist()[1])
    assert pd.isna(records["insulin"].tolist()[0]) and records["insulin"].tolist()[1] is True


def test_record_field_whose_type_changed_between_parts_is_read_as_text(storage, caplog):
    write(storage, [prediction("numeric", H10, record={"admission_type_id": 1})])
    write(storage, [prediction("text", H10, record={"admission_type_id": "emergency"})])

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        frame = load_predictions(storage, *EVER).sort_values("request_id", ignore_index=True)

    assert frame["record.admission_type_id"].tolist() == ["1", "emergency"]
    assert any("'admission_type_id' is" in m and "kept as text" in m for m in caplog.messages)


# --- filters and the join ---------------------------------------------------------------------------------------


def test_variant_and_experiment_filters(storage):
    write(
        storage,
        [
            prediction("champion-1", H10),
            prediction("challenger-1", H10, variant="challenger"),
            prediction("champion-2", H10, experiment_id="exp-2"),
        ],
    )

    assert ids(load_predictions(storage, *EVER, variant="champion")) == ["champion-1", "champion-2"]
    assert ids(load_predictions(storage, *EVER, experiment_id="exp-2")) == ["champion-2"]
    assert ids(load_predictions(storage, *EVER, variant="challenger", experiment_id="exp-1")) == ["challenger-1"]
    assert load_predictions(storage, *EVER, variant="nobody").empty


def test_join_keeps_the_first_outcome_unless_an_audited_correction_replaces_it_and_unlabelled_rows(storage, tmp_path):
    shadowed = prediction("shadowed", H10)
    write(
        storage,
        [
            prediction("labelled", H10),
            prediction("relabelled", H10),
            prediction("unlabelled", H10),
            shadowed,
            shadowed._replace(variant="challenger", model_version="4", shadow=True),
        ],
    )
    feedback_root = Storage.from_url(tmp_path / "feedback")
    write(
        feedback_root,
        [
            FeedbackRow("labelled", 1, H11.timestamp()),
            FeedbackRow("relabelled", 1, H11.timestamp()),
            FeedbackRow("relabelled", 0, H12.timestamp(), "correction:7"),  # an audited correction replaces it
            FeedbackRow("labelled", 0, H12.timestamp(), "feedback_key"),  # a second plain outcome changes nothing
            FeedbackRow("shadowed", 1, H11.timestamp()),
            FeedbackRow("never-predicted", 1, H11.timestamp()),
        ],
        FEEDBACK,
    )
    predictions, feedback = load_predictions(storage, *EVER), load_feedback(feedback_root, *EVER)

    joined = join_outcomes(predictions, feedback)
    labelled = join_outcomes(predictions, feedback, labelled_only=True)

    outcomes = {(r.request_id, r.variant): r.outcome for r in joined.itertuples()}
    assert outcomes == {
        ("labelled", "champion"): 1,
        ("relabelled", "champion"): 0,
        ("unlabelled", "champion"): pd.NA,
        ("shadowed", "champion"): 1,
        ("shadowed", "challenger"): 1,
    }
    assert joined.loc[joined.request_id == "relabelled", "received_at"].tolist() == [pd.Timestamp(H12)]
    assert str(joined["outcome"].dtype) == "Int8"
    assert sorted(labelled["request_id"]) == ["labelled", "relabelled", "shadowed", "shadowed"]


# --- the writer -------------------------------------------------------------------------------------------------


def test_close_flushes_everything(storage):
    writer = LogWriter(storage, PREDICTIONS, interval_s=3600, max_rows=10_000)
    writer.start()
    writer.append([prediction(f"r{i}", H10) for i in range(250)])

    writer.close()

    assert writer.pending == 0
    assert writer.written == 250
    assert len(load_predictions(storage, *EVER)) == 250


def test_background_thread_flushes_on_max_rows_without_waiting_for_the_interval(storage):
    with LogWriter(storage, PREDICTIONS, interval_s=3600, max_rows=50) as writer:
        writer.append([prediction(f"r{i}", H10) for i in range(60)])
        deadline = time.monotonic() + 10
        while writer.written < 60 and time.monotonic() < deadline:
            time.sleep(0.01)

        assert writer.written == 60
        assert len(load_predictions(storage, *EVER)) == 60


def test_failed_write_keeps_rows_and_a_later_flush_writes_them(tmp_path):
    root = tmp_path / "predictions"
    root.write_text("a file where the log's folder should be")  # every write under it fails
    storage = Storage.from_url(root)
    writer = LogWriter(storage, PREDICTIONS, interval_s=3600)
    writer.append([prediction(f"r{i}", H10) for i in range(20)])

    with pytest.raises(LogWriteError, match=rf"20 predictions rows not written to {root}"):
        writer.flush()
    assert (writer.pending, writer.written) == (20, 0)

    root.unlink()
    assert writer.flush() == 20
    assert writer.pending == 0
    assert ids(load_predictions(storage, *EVER)) == sorted(f"r{i}" for i in range(20))


def test_failed_part_keeps_only_its_own_rows(storage):
    Path(storage.path("date=2026-01-01")).mkdir(parents=True)
    blocker = Path(storage.path("date=2026-01-01", "hour=11"))
    blocker.write_text("hour 11 cannot be written")
    writer = LogWriter(storage, PREDICTIONS, interval_s=3600)
    writer.append([prediction("ten", H10), prediction("eleven", H11)])

    with pytest.raises(LogWriteError, match=r"1 predictions rows not written .* \(1 written\)"):
        writer.flush()
    blocker.unlink()
    writer.flush()

    assert ids(load_predictions(storage, *EVER)) == ["eleven", "ten"]  # each once
    assert writer.written == 2


def test_rows_that_fit_no_column_are_dropped_not_retried_forever(storage, caplog):
    writer = LogWriter(storage, PREDICTIONS, interval_s=3600)
    writer.append([prediction("good", H10), prediction("bad", H10, probability="high"), prediction("also", H10)])

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert writer.flush() == 2

    assert (writer.pending, writer.refused) == (0, 1)
    assert ids(load_predictions(storage, *EVER)) == ["also", "good"]
    assert any("request_id='bad'" in m for m in caplog.messages)


def test_buffer_keeps_the_newest_rows_when_storage_fails_for_too_long(tmp_path):
    root = tmp_path / "predictions"
    root.write_text("a file where the log's folder should be")
    writer = LogWriter(Storage.from_url(root), PREDICTIONS, interval_s=3600, max_rows=5, max_buffered_rows=10)
    writer.append([prediction(f"old-{i}", H10) for i in range(10)])
    with pytest.raises(LogWriteError):
        writer.flush()

    writer.append([prediction(f"new-{i}", H10) for i in range(5)])
    root.unlink()
    writer.flush()

    assert (writer.written, writer.dropped) == (10, 5)
    assert ids(load_predictions(Storage.from_url(root), *EVER)) == sorted(
        [f"old-{i}" for i in range(5, 10)] + [f"new-{i}" for i in range(5)]
    )


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_two_writers_on_one_root_lose_and_duplicate_nothing(backend, storage, request):
    # Same process, so both get the same default writer id: the UUID in each part's name must keep them apart.
    if backend == "s3":  # two replicas sharing one prefix of a bucket
        s3_server = request.getfixturevalue("s3_server")
        bucket = f"replicas-{uuid.uuid4().hex[:12]}"
        s3_server.client().create_bucket(Bucket=bucket)
        options = S3Options(endpoint_url=s3_server.endpoint_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        storage = Storage.from_url(f"s3://{bucket}/predictions", options)
    writers = [LogWriter(storage, PREDICTIONS, interval_s=0.01, max_rows=100) for _ in range(2)]
    assert writers[0].writer_id == writers[1].writer_id

    def replica(index: int) -> None:
        writer = writers[index]
        writer.start()
        for batch in range(150):
            writer.append([prediction(f"w{index}-{batch}-{i}", H10 + timedelta(seconds=batch)) for i in range(10)])
            if batch % 10 == 0:
                time.sleep(0.005)
        writer.close()

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    frame = load_predictions(storage, *EVER)
    assert len(frame) == 3000
    assert frame["request_id"].is_unique
    assert sum(w.written for w in writers) == 3000
    assert len(storage.walk_files()) > 2  # many flushes from both replicas, none overwritten


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_replica_killed_with_sigkill_leaves_a_readable_log(backend, tmp_path, request, caplog):
    if backend == "local":
        url, options, storage = str(tmp_path / "predictions"), {}, Storage.from_url(tmp_path / "predictions")
    else:  # a replica writing to the bucket: an object is visible only once its upload completed
        s3_server = request.getfixturevalue("s3_server")
        bucket = f"kill-{uuid.uuid4().hex[:12]}"
        s3_server.client().create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/predictions"
        options = {"endpoint_url": s3_server.endpoint_url, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY}
        storage = Storage.from_url(url, S3Options(**options, region=REGION))
    script = f"""
import sys, time
from airloop.predlog import LogWriter, PREDICTIONS, PredictionRow
from airloop.storage import S3Options, Storage
options = S3Options(**{options!r}, region={REGION!r})
writer = LogWriter(Storage.from_url({url!r}, options), PREDICTIONS, interval_s=0.001, max_rows=50)
writer.start()
record = {{f"feature_{{i}}": i for i in range(40)}}
n = reported = 0
while True:
    writer.append([PredictionRow(f"r{{n + i}}", time.time(), "e", "champion", "3", None, 0.5, 0, False, record)
                   for i in range(50)])
    n += 50
    time.sleep(0.002)
    if writer.written != reported:
        reported = writer.written
        print(reported, flush=True)
"""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'include'}{os.pathsep}{REPO}"}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        reported = 0
        deadline = time.monotonic() + 60
        while reported < 3000 and time.monotonic() < deadline:
            reported = int(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        frame = load_predictions(storage, *EVER)

    assert reported >= 3000
    assert len(frame) >= reported  # everything reported as written survived the kill
    assert frame["request_id"].is_unique
    assert not [m for m in caplog.messages if "damaged" in m]


# --- S3 ---------------------------------------------------------------------------------------------------------


def test_log_on_s3_round_trips_by_window_and_ignores_temp_objects(s3_server):
    bucket = f"log-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    options = S3Options(
        endpoint_url=s3_server.endpoint_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION
    )
    storage = Storage.from_url(f"s3://{bucket}/runtime/predictions", options)
    writer = LogWriter(storage, PREDICTIONS, interval_s=3600)
    writer.append([prediction("ten", H10), prediction("eleven", H11, record={"age": "[70-80)", "insulin": True})])
    writer.append([prediction("shadow", H11 + timedelta(minutes=5), variant="challenger", shadow=True)])
    writer.close()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    client.put_object(Bucket=bucket, Key="runtime/predictions/date=2026-01-01/hour=11/.part-x.parquet.tmp", Body=b"x")

    hour11 = load_predictions(storage, H11, H12).sort_values("request_id", ignore_index=True)

    assert [k.rsplit("/", 1)[0] for k in keys] == [
        "runtime/predictions/date=2026-01-01/hour=10",
        "runtime/predictions/date=2026-01-01/hour=11",
    ]
    assert ids(hour11) == ["eleven", "shadow"]
    records = raw_records(hour11)
    assert records["age"].tolist() == ["[70-80)", "[50-60)"]
    assert records["insulin"].tolist()[0] is True and pd.isna(records["insulin"][1])
    assert pd.isna(records["num_medications"][0]) and records["num_medications"][1] == 12
    assert ids(load_predictions(storage, *EVER, variant="challenger")) == ["shadow"]


# --- property ---------------------------------------------------------------------------------------------------

HOUR_US = 3_600_000_000
BASE = datetime(2025, 12, 31, 22, tzinfo=UTC)  # the window straddles midnight and a year change
near_boundaries = st.builds(
    lambda hour, delta: hour * HOUR_US + delta, st.integers(0, 4), st.sampled_from([-1, 0, 1])
).filter(lambda us: us >= 0)
offsets = st.integers(0, 4 * HOUR_US) | near_boundaries


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(times=st.lists(offsets, max_size=25), start=offsets, end=offsets)
def test_window_returns_exactly_the_rows_made_inside_it(times, start, end):
    at = [BASE + timedelta(microseconds=us) for us in times]
    lo, hi = (BASE + timedelta(microseconds=us) for us in sorted((start, end)))
    with tempfile.TemporaryDirectory() as folder:
        storage = Storage.from_url(folder)
        write(storage, [prediction(str(i), moment) for i, moment in enumerate(at)])

        frame = load_predictions(storage, lo, hi, columns=["request_id", "predicted_at"])

        assert sorted(frame["request_id"]) == sorted(str(i) for i, moment in enumerate(at) if lo <= moment < hi)
        assert sorted(frame["predicted_at"]) == sorted(pd.Timestamp(m) for m in at if lo <= m < hi)
        for part in storage.walk_files():  # every row sits in the folder of the hour it was made in
            rows = pq.read_table(storage.path(part), columns=["predicted_at"]).column(0).to_pylist()
            assert {partition_of(moment) for moment in rows} == {part.rsplit("/", 1)[0]}


def test_while_storage_refuses_the_log_parts_spill_to_local_disk_and_are_published_once_when_it_is_back(tmp_path):
    root, spill = tmp_path / "predictions", Storage.from_url(tmp_path / "spill")
    root.write_text("a file where the log's folder should be")  # every write under it fails
    writer = LogWriter(Storage.from_url(root), PREDICTIONS, interval_s=3600, spill=spill)
    writer.append([prediction(f"r{i}", H10) for i in range(20)])

    with pytest.raises(LogWriteError, match=r"20 rows wait in"):
        writer.flush()
    assert (writer.pending, writer.spilled, writer.failing) == (0, 20, True)  # memory freed, nothing lost
    assert len(spill.walk_files()) == 1

    root.unlink()
    writer.append([prediction("later", H11)])
    assert writer.flush() == 21
    assert (writer.spilled, writer.failing, spill.walk_files()) == (0, False, [])
    assert ids(load_predictions(Storage.from_url(root), *EVER)) == sorted(["later", *(f"r{i}" for i in range(20))])


def test_a_part_published_but_not_yet_deleted_from_the_spill_is_published_again_under_its_name_not_twice(tmp_path):
    root, spill = tmp_path / "predictions", Storage.from_url(tmp_path / "spill")
    root.write_text("down")
    first = LogWriter(Storage.from_url(root), PREDICTIONS, interval_s=3600, spill=spill)
    first.append([prediction(f"r{i}", H10) for i in range(5)])
    with pytest.raises(LogWriteError):
        first.flush()
    root.unlink()
    (part,) = spill.walk_files()
    storage = Storage.from_url(root)
    storage.write_bytes(spill.read_bytes(*part.split("/")), *part.split("/"))  # published, then the process died

    restarted = LogWriter(storage, PREDICTIONS, interval_s=3600, spill=spill)  # same spill folder after a restart
    assert restarted.flush() == 5

    assert ids(load_predictions(storage, *EVER)) == [f"r{i}" for i in range(5)]  # each once
    assert spill.walk_files() == []


def test_without_room_to_spill_rows_wait_in_memory_as_before(tmp_path):
    root = tmp_path / "predictions"
    root.write_text("down")
    spill = Storage.from_url(tmp_path / "spill")
    writer = LogWriter(Storage.from_url(root), PREDICTIONS, interval_s=3600, spill=spill, spill_max_bytes=0)
    writer.append([prediction(f"r{i}", H10) for i in range(3)])
    with pytest.raises(LogWriteError):
        writer.flush()
    assert (writer.pending, writer.spilled, spill.walk_files()) == (3, 0, [])
