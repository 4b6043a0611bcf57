"""The decision ledger: one row per key under concurrent writers, one outcome per decision, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from airloop.errors import FinalError
from airloop.ledger import (
    DecisionConflict,
    DecisionNotFound,
    InvalidDecision,
    Kind,
    Ledger,
    OutcomeConflict,
    decisions,
    ledger,
    run_id_for,
)
from tests.pg_server import postgres_server  # noqa: F401  (the session fixture, used through getfixturevalue)

T0 = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)  # well before now, when outcomes get set
MODEL = "readmission"


def drift_key(window_end: datetime) -> str:
    return f"drift:{MODEL}:{window_end.isoformat()}"


def count_rows(store: Ledger) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(decisions)).scalar_one()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request, tmp_path) -> str:
    """A fresh, empty store: a SQLite file in tmp_path, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    import psycopg2

    server = request.getfixturevalue("postgres_server")
    name = f"ledger_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(server.dsn)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"postgresql+psycopg2://{server.user}@{server.host}:{server.port}/{name}"


@pytest.fixture
def store(ledger_url) -> Iterator[Ledger]:
    with Ledger(ledger_url) as opened:
        yield opened


def record_verdict(store: Ledger, window_end: datetime, **overrides) -> object:
    values = {
        "kind": Kind.DRIFT_VERDICT,
        "key": drift_key(window_end),
        "subject": f"{MODEL}/3",
        "payload": {"window": [(window_end - timedelta(hours=1)).isoformat(), window_end.isoformat()], "psi": 0.31},
        "decided_by": "dag:readmission_drift/task:detect",
        "decided_at": window_end + timedelta(minutes=1),
    }
    return store.record(**{**values, **overrides})


# --- idempotent record ----------------------------------------------------------------------------------------------


def test_recording_same_key_twice_keeps_first_row_only(store):
    first = record_verdict(store, T0)
    again = record_verdict(store, T0, payload={"psi": 0.99}, decided_by="someone else")

    assert again == first
    assert again.payload["psi"] == 0.31
    assert again.decided_by == "dag:readmission_drift/task:detect"
    assert count_rows(store) == 1


def test_recorded_decision_reads_back_with_utc_time_and_json_payload(store):
    recorded = record_verdict(store, T0, payload={"scores": {"age": 0.2, "race": None}, "drifted": ["age"]})

    assert recorded.kind == "drift_verdict"
    assert recorded.subject == "readmission/3"
    assert recorded.payload == {"scores": {"age": 0.2, "race": None}, "drifted": ["age"]}
    assert recorded.decided_at == T0 + timedelta(minutes=1)
    assert recorded.decided_at.tzinfo is not None
    assert recorded.outcome is None
    assert store.get(recorded.key) == recorded


def test_recording_without_time_stamps_now_in_utc(store):
    before = datetime.now(UTC)
    recorded = store.record("dataset_published", "publish:v1", "v1", {}, "dag:readmission_etl")

    assert before - timedelta(seconds=1) <= recorded.decided_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_same_key_as_another_kind_is_refused(store):
    record_verdict(store, T0)

    with pytest.raises(DecisionConflict, match=r"already recorded as a 'drift_verdict' decision.*not 'evaluation'"):
        record_verdict(store, T0, kind="evaluation")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"payload": {"psi": float("nan")}}, "not plain JSON"),
        ({"payload": {"at": T0}}, "not plain JSON"),
        ({"decided_at": datetime(2026, 11, 25, 10, 0)}, "timezone-aware"),
        ({"kind": "Drift Verdict"}, "lower_snake_case"),
        ({"decided_by": ""}, "needs a decided_by"),
    ],
)
def test_invalid_decision_is_refused_before_writing_and_not_retried(store, changes, message):
    with pytest.raises(InvalidDecision, match=message) as refused:
        record_verdict(store, T0, **changes)

    assert isinstance(refused.value, FinalError)
    assert store.rows() == []


# --- concurrent writers ---------------------------------------------------------------------------------------------


def record_all_at_once(recorders: list[Ledger], keys: list[datetime]) -> list[list[int]]:
    """Every recorder records every key, all starting together; returns the ids each saw."""
    barrier = threading.Barrier(len(recorders))

    def work(recorder: Ledger) -> list[int]:
        barrier.wait()
        return [record_verdict(recorder, end).id for end in keys]

    with ThreadPoolExecutor(len(recorders)) as pool:
        return list(pool.map(work, recorders))


def test_concurrent_threads_record_each_key_once(store):
    keys = [T0 + timedelta(hours=h) for h in range(20)]

    seen = record_all_at_once([store] * 8, keys)

    assert count_rows(store) == 20
    assert all(ids == seen[0] for ids in seen)
    assert len(set(seen[0])) == 20


def test_two_engines_on_one_store_record_each_key_once(ledger_url):
    keys = [T0 + timedelta(hours=h) for h in range(20)]
    with Ledger(ledger_url) as one, Ledger(ledger_url) as two:
        seen = record_all_at_once([one, two, one, two], keys)

        assert count_rows(one) == 20
        assert all(ids == seen[0] for ids in seen)


RECORDER = textwrap.dedent(
    """
    import json, sys, time
    from datetime import datetime, timedelta
    from airloop.ledger import Ledger
    url, start_at, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    store = Ledger(url)
    store.engine
    time.sleep(max(0.0, start_at - time.time()))
    t0 = datetime.fromisoformat("2026-11-25T10:00:00+00:00")
    ids = []
    for h in range(count):
        end = t0 + timedelta(hours=h)
        ids.append(store.record("drift_verdict", f"drift:readmission:{end.isoformat()}", None, {"h": h}, "proc").id)
    print(json.dumps(ids))
    """
)


def test_two_processes_record_each_key_once(ledger_url):
    start_at = time.time() + 3.0  # both interpreters have imported SQLAlchemy and connected by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RECORDER, ledger_url, str(start_at), "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    first, second = (json.loads(out) for out, _ in outputs)
    assert first == second
    with Ledger(ledger_url) as store:
        assert count_rows(store) == 30


# --- outcomes -------------------------------------------------------------------------------------------------------


def test_first_outcome_sticks_and_a_different_one_names_both(store):
    verdict = record_verdict(store, T0)
    run_id = run_id_for(verdict.key, "retrain")

    done = store.set_outcome(verdict.key, "started", run_id)
    same = store.set_outcome(verdict.key, "started", run_id)

    assert done.outcome == same.outcome == "started"
    assert same.outcome_detail == run_id
    assert same.outcome_at == done.outcome_at
    with pytest.raises(OutcomeConflict, match=rf"already has outcome 'started' \('{run_id}'.*refusing 'skipped'"):
        store.set_outcome(verdict.key, "skipped", "cool-down until 12:00")
    with pytest.raises(OutcomeConflict, match="refusing 'started' \\('retrain__other'\\)"):
        store.set_outcome(verdict.key, "started", "retrain__other")
    assert store.get(verdict.key).outcome_detail == run_id


def test_outcome_of_unknown_decision_is_refused(store):
    with pytest.raises(DecisionNotFound, match="no decision with key 'train:v9'"):
        store.set_outcome("train:v9", "started", "train__x")


def test_concurrent_outcomes_let_exactly_one_win(store):
    verdict = record_verdict(store, T0)
    barrier = threading.Barrier(6)

    def attempt(n: int) -> str:
        barrier.wait()
        try:
            store.set_outcome(verdict.key, "skipped", f"reason {n}")
        except OutcomeConflict:
            return "refused"
        return "won"

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, range(6)))

    assert sorted(results) == ["refused"] * 5 + ["won"]
    assert store.get(verdict.key).outcome_detail == f"reason {results.index('won')}"


# --- queries --------------------------------------------------------------------------------------------------------


@pytest.fixture
def history(store) -> Ledger:
    """Three hourly verdicts on two model versions and a published dataset; the first verdict started a retrain."""
    for hour in range(3):
        record_verdict(store, T0 + timedelta(hours=hour), subject=f"{MODEL}/{3 if hour < 2 else 4}")
    store.record("dataset_published", "publish:v7", "v7", {"rows": 20000}, "dag:etl", T0 + timedelta(minutes=30))
    store.set_outcome(drift_key(T0), "started", run_id_for(drift_key(T0), "retrain"))
    return store


def test_rows_are_newest_first_and_filter_by_kind_subject_and_window(history):
    everything = history.rows()
    verdicts = history.rows(kind=Kind.DRIFT_VERDICT)

    assert [d.decided_at for d in everything] == sorted((d.decided_at for d in everything), reverse=True)
    assert len(everything) == 4
    assert [d.key for d in verdicts] == [drift_key(T0 + timedelta(hours=h)) for h in (2, 1, 0)]
    assert [d.key for d in history.rows(subject=f"{MODEL}/4")] == [drift_key(T0 + timedelta(hours=2))]
    window = history.rows(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2, minutes=1))
    assert [d.key for d in window] == [drift_key(T0 + timedelta(hours=1)), "publish:v7"]
    assert history.rows(kind="rollback") == []


def test_pending_lists_decisions_without_outcome(history):
    assert [d.key for d in history.pending(Kind.DRIFT_VERDICT)] == [
        drift_key(T0 + timedelta(hours=2)),
        drift_key(T0 + timedelta(hours=1)),
    ]
    assert [d.key for d in history.pending()][-1] == "publish:v7"


def test_at_shows_the_ledger_as_it_stood_then(history):
    then = history.at(T0 + timedelta(hours=1, minutes=1))
    now = history.at(datetime.now(UTC) + timedelta(seconds=1))

    assert [d.key for d in then] == [drift_key(T0 + timedelta(hours=1)), "publish:v7", drift_key(T0)]
    assert (then[-1].outcome, then[-1].outcome_detail) == (None, None)  # the retrain was started later
    assert (now[-1].key, now[-1].outcome) == (drift_key(T0), "started")
    assert history.at(T0) == []
    assert [d.key for d in history.at(T0 + timedelta(hours=1), kind="dataset_published")] == ["publish:v7"]


def test_naive_query_times_are_refused(store):
    with pytest.raises(InvalidDecision, match="since must be timezone-aware"):
        store.rows(since=datetime(2026, 11, 25))


# --- run ids --------------------------------------------------------------------------------------------------------


def test_run_id_is_deterministic_distinct_and_valid_for_airflow():
    from airflow.models.dagrun import DagRun

    keys = [drift_key(T0 + timedelta(hours=h)) for h in range(200)] + [f"train:v{n}" for n in range(200)]

    run_ids = [run_id_for(key, "retrain") for key in keys]

    assert run_ids == [run_id_for(key, "retrain") for key in keys]
    assert len(set(run_ids)) == len(keys)
    assert run_id_for("train:v1", "train") != run_id_for("train:v1", "retrain")
    assert run_ids[0].startswith("retrain__")
    for run_id in run_ids[:5]:
        assert DagRun(dag_id="readmission_train", run_id=run_id).run_id == run_id


@pytest.mark.parametrize(("key", "prefix"), [("", "retrain"), ("drift:x", "re train"), ("drift:x", "x" * 240)])
def test_run_id_refuses_what_airflow_would(key, prefix):
    with pytest.raises(InvalidDecision, match="run id"):
        run_id_for(key, prefix)


def test_rerun_drift_task_starts_one_retrain_per_verdict(store):
    """N verdicts, each decided twice (a task retry): N rows, N distinct run ids, every outcome set once."""
    triggered: list[str] = []

    def drift_task(window_end: datetime, trigger: Callable[[str], None]) -> None:
        verdict = record_verdict(store, window_end)
        if verdict.outcome is None:
            run_id = run_id_for(verdict.key, "retrain")
            if run_id not in triggered:  # Airflow refuses a duplicate run id (DagRunAlreadyExists)
                trigger(run_id)
            store.set_outcome(verdict.key, "started", run_id)

    for hour in range(5):
        for _ in range(2):
            drift_task(T0 + timedelta(hours=hour), triggered.append)

    assert len(store.rows(kind=Kind.DRIFT_VERDICT)) == 5
    assert len(triggered) == len(set(triggered)) == 5
    assert store.pending(Kind.DRIFT_VERDICT) == []


# --- settings -------------------------------------------------------------------------------------------------------


def test_default_store_is_a_sqlite_file_under_the_runtime_home(settings):
    with ledger(settings) as store:
        store.record("dataset_published", "publish:v1", "v1", {}, "test")

        assert store.url.get_backend_name() == "sqlite"
        assert (settings.home / "ledger.db").is_file()
        assert len(store.rows()) == 1


def test_configured_ledger_url_wins_over_the_home_default(tmp_path):
    configured = SimpleNamespace(home=tmp_path / "home", ledger_url=f"sqlite:///{tmp_path / 'shared' / 'ledger.db'}")

    with ledger(configured) as store:
        store.record("dataset_published", "publish:v1", "v1", {}, "test")

    assert (tmp_path / "shared" / "ledger.db").is_file()
    assert not (tmp_path / "home").exists()


def test_the_newest_rows_come_from_sql_with_a_limit_and_one_ledger_serves_a_process(store, tmp_path):
    for hour in range(5):
        record_verdict(store, T0 + timedelta(hours=hour))

    newest = store.rows(limit=2)
    at = store.at(T0 + timedelta(hours=3, minutes=30), limit=2)

    assert [r.key for r in newest] == [drift_key(T0 + timedelta(hours=h)) for h in (4, 3)]
    assert [r.key for r in at] == [drift_key(T0 + timedelta(hours=h)) for h in (3, 2)]
    settings = SimpleNamespace(ledger_url=f"sqlite:///{tmp_path / 'one.db'}", model=MODEL, home=tmp_path)
    assert ledger(settings) is ledger(settings)  # /v1/history builds no engine per request
