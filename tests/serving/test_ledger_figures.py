"""What /metrics shows of the loop and the micro-batches: each model's newest drift verdict and A/B evaluation read
from its decision ledger at scrapes (``serving.state.LedgerFigures``: cached, in the background, never failing the
scrape), the micro-batch queue depth and the model call latency per variant."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from airloop.ledger import Kind, ledger
from airloop.settings import Settings
from serving import state as state_module
from serving.main import create_app
from serving.metrics import Metrics
from serving.state import DRIFT_VERDICTS, EVALUATION_ACTIONS, LEDGER_UNREADABLE, LedgerFigures
from tests.serving.conftest import API_KEY, NAME

KEY = {"X-API-Key": API_KEY}
WAIT_S = 30


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text -> {(sample name, labels): value}."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def scrape(metrics: Metrics) -> dict[tuple[str, frozenset], float]:
    return samples(generate_latest(metrics.registry).decode())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verdict(share: float | None, name: str = "drift", rows: int = 500) -> dict:
    return {"source": "prediction_log", "verdict": name, "drifted_share": share, "rows": rows, "reason": "test"}


def look(action: str, champion: int, challenger: int) -> dict:
    arms = {"champion": {"labelled": champion, "roc_auc": 0.7}, "challenger": {"labelled": challenger}}
    return {"action": action, "reason": "test", "arms": arms, "experiment": "exp-1"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(model=NAME, home=tmp_path / "home")


@pytest.fixture
def figures(settings):
    metrics = Metrics()
    clock = Clock()
    found = LedgerFigures(NAME, settings, metrics, every_s=60, clock=clock)
    metrics.registry.register(found)
    yield found
    found.close()


def finish(figures: LedgerFigures) -> bool:
    """The result of the read the last scrape started."""
    assert figures.running is not None, "no read was started"
    return figures.running.result(timeout=WAIT_S)


def test_the_known_verdicts_and_actions_are_those_the_loop_records() -> None:
    from airloop.experiments.evaluation import HALT
    from airloop.experiments.sequential import Action
    from airloop.monitoring.drift import Verdict

    assert set(DRIFT_VERDICTS) == set(get_args(Verdict))
    assert set(EVALUATION_ACTIONS) == {*get_args(Action), HALT}


def test_a_scrape_starts_a_read_and_the_next_scrape_shows_the_newest_verdict_and_evaluation(settings, figures):
    book, then = ledger(settings), datetime.now(UTC) - timedelta(hours=2)
    book.record(Kind.DRIFT_VERDICT, "drift:old", "1", verdict(0.9), "test", decided_at=then)
    newer = then + timedelta(hours=1)
    book.record(Kind.DRIFT_VERDICT, "drift:new", "1", verdict(0.25, "no_drift", rows=812), "test", newer)
    book.record(Kind.EVALUATION, "evaluation:new", NAME, look("halt", 40, 38), "test", newer)
    book.record(Kind.EVALUATION, "evaluation:old", NAME, look("promote", 9, 9), "test", then)

    first = scrape(figures.metrics)
    assert not any(name.startswith(("airloop_drift", "airloop_evaluation")) for name, _ in first)
    assert finish(figures) is True
    found = scrape(figures.metrics)

    assert value(found, "airloop_drift_drifted_share", model=NAME) == 0.25
    assert value(found, "airloop_drift_rows", model=NAME) == 812
    assert {v: value(found, "airloop_drift_verdict", model=NAME, verdict=v) for v in DRIFT_VERDICTS} == {
        "no_drift": 1,
        "alert": 0,
        "drift": 0,
        "insufficient_data": 0,
    }
    assert value(found, "airloop_drift_verdict_timestamp_seconds", model=NAME) == pytest.approx(newer.timestamp())
    assert {a: value(found, "airloop_evaluation_action", model=NAME, action=a) for a in EVALUATION_ACTIONS} == {
        "continue": 0,
        "promote": 0,
        "reject": 0,
        "halt": 1,
    }
    assert value(found, "airloop_evaluation_labelled", model=NAME, variant="champion") == 40
    assert value(found, "airloop_evaluation_labelled", model=NAME, variant="challenger") == 38
    assert value(found, "airloop_evaluation_timestamp_seconds", model=NAME) == pytest.approx(newer.timestamp())


def test_a_verdict_without_figures_or_with_an_unknown_value_exports_nan_and_no_verdict(settings, figures):
    book = ledger(settings)
    book.record(Kind.DRIFT_VERDICT, "drift:1", "1", {"verdict": "something_new", "drifted_share": "high"}, "test")
    book.record(Kind.EVALUATION, "evaluation:1", NAME, {"action": "continue"}, "test")

    scrape(figures.metrics)
    assert finish(figures) is True
    found = scrape(figures.metrics)

    assert math.isnan(value(found, "airloop_drift_drifted_share", model=NAME))
    assert math.isnan(value(found, "airloop_drift_rows", model=NAME))
    assert all(value(found, "airloop_drift_verdict", model=NAME, verdict=v) == 0 for v in DRIFT_VERDICTS)
    assert value(found, "airloop_evaluation_action", model=NAME, action="continue") == 1
    assert math.isnan(value(found, "airloop_evaluation_labelled", model=NAME, variant="champion"))


def test_the_ledger_is_read_at_most_once_per_interval_and_never_twice_at_once(settings, figures, monkeypatch):
    calls, release = [], threading.Event()
    real_rows = state_module.history.rows

    def rows(*args, **kwargs):
        calls.append(kwargs["kind"])
        release.wait(WAIT_S)
        return real_rows(*args, **kwargs)

    monkeypatch.setattr(state_module.history, "rows", rows)
    clock = figures.clock

    scrape(figures.metrics)
    clock.now += 3600  # long due again, but the first read is still running: no second one
    scrape(figures.metrics)
    release.set()
    assert finish(figures) is True
    assert calls == [Kind.DRIFT_VERDICT, Kind.EVALUATION]  # one read: the newest row of each kind

    clock.now += 59
    scrape(figures.metrics)
    assert len(calls) == 2, "read again within the interval"
    clock.now += 1
    scrape(figures.metrics)
    assert finish(figures) is True
    assert len(calls) == 4


def test_each_read_asks_sql_for_one_row_of_each_kind(settings, figures, monkeypatch):
    asked = []
    monkeypatch.setattr(state_module.history, "rows", lambda s, **kwargs: asked.append(kwargs) or [])
    scrape(figures.metrics)
    assert finish(figures) is True
    assert asked == [{"kind": Kind.DRIFT_VERDICT, "limit": 1}, {"kind": Kind.EVALUATION, "limit": 1}]


def test_an_unreadable_ledger_keeps_the_last_figures_counts_each_failure_and_logs_once(settings, figures, caplog):
    book = ledger(settings)
    book.record(Kind.DRIFT_VERDICT, "drift:1", "1", verdict(0.5), "test")
    book.record(Kind.EVALUATION, "evaluation:1", NAME, look("continue", 3, 4), "test")
    scrape(figures.metrics)
    assert finish(figures) is True
    with book.engine.begin() as conn:  # the store loses its table: every read fails from now on
        conn.exec_driver_sql("DROP TABLE decisions")

    with caplog.at_level("WARNING", logger="serving.state"):
        for _ in range(2):
            figures.clock.now += 60
            scrape(figures.metrics)
            assert finish(figures) is False
    found = scrape(figures.metrics)

    assert value(found, "airloop_errors_total", kind=LEDGER_UNREADABLE, model=NAME) == 2
    assert value(found, "airloop_drift_drifted_share", model=NAME) == 0.5
    assert value(found, "airloop_drift_verdict", model=NAME, verdict="drift") == 1
    assert value(found, "airloop_evaluation_action", model=NAME, action="continue") == 1
    assert value(found, "airloop_evaluation_labelled", model=NAME, variant="challenger") == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "serving.state"]
    assert len(warnings) == 1 and "cannot be read" in warnings[0] and "no such table" in warnings[0]


def test_a_closed_figures_starts_no_read(figures):
    figures.close()
    scrape(figures.metrics)
    assert figures.running is None


# --- through the app ------------------------------------------------------------------------------------------------


def scrape_until(client: TestClient, name: str, timeout: float = WAIT_S) -> dict[tuple[str, frozenset], float]:
    """/metrics again until it has a sample named ``name`` (the ledger figures are read in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        scraped = client.get("/metrics", headers=KEY)
        assert scraped.status_code == 200, scraped.text
        found = samples(scraped.text)
        if any(key[0] == name for key in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_app_exports_the_ledger_figures_and_the_model_latency_per_variant(make_settings, registry):
    settings = make_settings(poll_interval_s=3600)
    ledger(settings).record(Kind.DRIFT_VERDICT, "drift:1", "1", verdict(0.4), "test")
    ledger(settings).record(Kind.EVALUATION, "evaluation:1", NAME, look("continue", 12, 11), "test")
    with TestClient(create_app(settings)) as client:
        before = samples(client.get("/metrics", headers=KEY).text)
        answer = client.post("/v1/predict", json={"records": list(registry.records[:4])}, headers=KEY)
        assert answer.status_code == 200, answer.text
        found = scrape_until(client, "airloop_evaluation_action")

    assert value(found, "airloop_drift_drifted_share", model=NAME) == 0.4
    assert value(found, "airloop_evaluation_action", model=NAME, action="continue") == 1
    assert value(found, "airloop_evaluation_labelled", model=NAME, variant="champion") == 12
    counts = {
        v: (value(found, "airloop_model_latency_seconds_count", model=NAME, variant=v) or 0)
        - (value(before, "airloop_model_latency_seconds_count", model=NAME, variant=v) or 0)
        for v in ("champion", "challenger")
    }
    assert counts == {"champion": 1, "challenger": 1}  # score_both: one model call per variant for the request
    assert value(found, "airloop_model_latency_seconds_sum", model=NAME, variant="champion") > 0


def test_an_unreadable_ledger_never_fails_metrics(make_settings, registry):
    settings = make_settings(poll_interval_s=3600)
    (settings.home / "ledger.db").mkdir(parents=True)  # SQLite cannot open a directory
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics", headers=KEY).status_code == 200
        assert finish(client.app.state.airloop.models[NAME].ledger_figures) is False
        found = scrape_until(client, "airloop_errors_total")

    assert value(found, "airloop_errors_total", kind=LEDGER_UNREADABLE, model=NAME) == 1
    assert not any(name.startswith(("airloop_drift", "airloop_evaluation")) for name, _ in found)


def test_the_queue_depth_is_the_records_waiting_for_the_model_at_the_scrape(make_settings, registry):
    settings = make_settings(poll_interval_s=3600)
    with TestClient(create_app(settings)) as client:
        model = client.app.state.airloop.models[NAME]
        busy, release = threading.Event(), threading.Event()
        model.executor.submit(lambda: busy.set() or release.wait(WAIT_S))  # the model thread is held
        assert busy.wait(WAIT_S)

        def queued() -> float:
            found = samples(client.get("/metrics", headers=KEY).text)
            return sum(value(found, "airloop_batch_queued_records", model=NAME, variant=v) for v in model.batchers)

        assert queued() == 0
        # score_both: every record goes to both variants. The first request's two batches (one per variant) wait for
        # the held model thread; the second request's records then wait in both queues.
        first = [{**registry.records[0], "entity_id": "patient-1"}]
        second = [{**r, "entity_id": "patient-1"} for r in registry.records[1:4]]
        answers = []
        threads = [
            threading.Thread(target=lambda r=r: answers.append(client.post("/v1/predict", json={"records": r})))
            for r in (first, second)
        ]
        threads[0].start()
        deadline = time.monotonic() + WAIT_S
        while model.executor._work_queue.qsize() < len(model.batchers) and time.monotonic() < deadline:
            time.sleep(0.01)
        threads[1].start()
        deadline = time.monotonic() + WAIT_S
        while (waiting := queued()) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        release.set()
        for thread in threads:
            thread.join(WAIT_S)
        after = queued()

    assert waiting == len(second) * len(model.batchers)
    assert after == 0
    assert [a.status_code for a in answers] == [200, 200]
