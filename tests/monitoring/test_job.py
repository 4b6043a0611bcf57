"""The drift job's steps as plain functions (no Airflow): window bounds and the watermark, idempotent retries, what a
verdict starts, dataset drift, and refusing bad input before anything is written.

One champion is trained per module (MLflow store under a module home); every test gets its own ledger and its own
runtime storage (prediction log, staging, reports, datasets), so the watermark and the cool-down of one test never
reach another. Windows lie after the version's registration, at hours no other test uses (MLflow is shared).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.champion import MODEL, champion_home
from tests.champion import log_traffic as shared_log_traffic

DRIFT_ROWS = 900


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A champion trained and registered through the pipeline's own stages (tests/champion.py)."""
    from airloop.registry.client import connect

    with champion_home(tmp_path_factory.mktemp("job-home")) as (settings, version):
        client = connect(settings)
        created = datetime.fromtimestamp(client.get_model_version(MODEL, version).creation_timestamp / 1000, UTC)
        yield client, version, created


@pytest.fixture
def fresh(env, tmp_path, monkeypatch):
    """Settings with this test's own ledger and runtime storage; the module's MLflow store and champion."""
    from airloop.settings import get_settings

    monkeypatch.setenv("AIRLOOP_LEDGER__URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("AIRLOOP_STORAGE__URL", str(tmp_path / "storage"))
    for conn_id in ("AIRLOOP_ALERTS_WEBHOOK", "AIRLOOP_ALERTS_SMTP"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id}", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def log_traffic(settings, version, seed, covariate, start, span, rows: int = DRIFT_ROWS, logged_as=None) -> list[str]:
    """DRIFT_ROWS (or ``rows``) encounters scored by the version, logged over ``span`` (tests/champion.py)."""
    return shared_log_traffic(settings, version, seed, covariate, start, span, rows, logged_as)


def log_feedback(settings, request_ids: list[str], outcome: int, received_at: datetime) -> None:
    """Post an observed outcome for each request, all received at ``received_at``."""
    from airloop.predlog import FeedbackRow, feedback_log

    writer = feedback_log(settings)
    writer.append(FeedbackRow(r, outcome, received_at.timestamp()) for r in request_ids)
    writer.flush()


def run_window(settings, run_id: str, run_after: datetime, target, params=None, dataset_version=None):
    """load_window -> compare_window -> publish -> decide, chained as the DAG does; (window, published, decision)."""
    from airloop.monitoring import job

    window = job.load_window(settings, run_id, run_after, params, dataset_version)
    assert window["rows"], window
    job.compare_window(settings, run_id, window, (params or {}).get("thresholds"))
    published = job.publish(settings, run_id)
    decision = job.decide(settings, window, published, f"test:{run_id}", target)
    return window, published, decision


def verdict_rows(settings):
    from airloop.ledger import Kind, ledger

    return ledger(settings).rows(kind=Kind.DRIFT_VERDICT)


def report_pages(settings) -> list[str]:
    return [f for f in settings.layout.reports().walk_files() if f.endswith("report.html")]


IDLE = ("readmission_retrain", True, 0)


def test_an_empty_window_stages_no_row_and_records_no_verdict(env, fresh):
    from airloop.monitoring import job

    _, version, registered = env
    start, end = registered + timedelta(hours=1), registered + timedelta(hours=2)
    # Traffic outside the window, and traffic of another version inside it, are not this window's rows.
    log_traffic(fresh, version, seed=1, covariate=0.0, start=end, span=timedelta(minutes=10), rows=50)
    log_traffic(fresh, version, 1, 0.0, start, timedelta(minutes=10), rows=50, logged_as="999")

    window = job.load_window(fresh, "empty-run", end, {"window_start": start.isoformat()})

    assert window["rows"] == 0 and window["labelled_rows"] == 0
    assert window["source"] == job.PREDICTION_LOG and window["model_version"] == version
    assert window["start"] == start.isoformat() and window["end"] == end.isoformat()
    staging = fresh.layout.staging("empty-run")
    assert staging.read_json(job.PART_COUNTS.format(0))["rows"] == 0
    assert not staging.exists(job.PART_ROWS.format(0)) and not staging.exists(job.PART_SAMPLE.format(0))
    assert verdict_rows(fresh) == []
    assert job.watermark(fresh, f"{MODEL}/v{version}", job.PREDICTION_LOG) is None


def test_too_few_rows_give_no_verdict_and_keep_the_window_open(env, fresh):
    from airloop.ledger import Resolution
    from airloop.monitoring import job

    _, version, registered = env
    subject = f"{MODEL}/v{version}"
    first_end = registered + timedelta(hours=11)
    log_traffic(fresh, version, 2, 0.0, registered + timedelta(hours=10), timedelta(minutes=30), rows=120)

    window, published, decision = run_window(fresh, "few", first_end, job.RetrainTarget(*IDLE))

    assert window["start"] == registered.isoformat() and window["rows"] == 120
    assert published["verdict"] == "insufficient_data" and published["rows"] == 120
    assert decision["outcome"] == Resolution.NO_VERDICT and decision["retrain_run_id"] is None
    assert "window stays open" in decision["detail"]
    (row,) = verdict_rows(fresh)
    assert row.outcome == Resolution.NO_VERDICT and row.payload["verdict"] == "insufficient_data"
    assert job.watermark(fresh, subject, job.PREDICTION_LOG) is None

    # The next window starts where the open one did and counts its rows again with the new ones.
    second_end = first_end + timedelta(hours=1)
    ids = log_traffic(fresh, version, 3, 0.0, first_end + timedelta(minutes=1), timedelta(minutes=30))
    # Outcomes received inside the window are joined to their predictions: realised performance.
    log_feedback(fresh, ids[:300], 0, first_end + timedelta(minutes=40))
    log_feedback(fresh, ids[300:400], 1, first_end + timedelta(minutes=45))

    # These outcomes are arbitrary (not drawn from the model's probabilities): the run's thresholds param turns the
    # rules on outcomes off, so the verdict rests on the features as before.
    arbitrary = {"thresholds": {"min_labelled_rows": 1_000_000}}
    window, published, decision = run_window(fresh, "enough", second_end, job.RetrainTarget(*IDLE), arbitrary)

    assert window["start"] == registered.isoformat() and window["end"] == second_end.isoformat()
    assert window["rows"] == 120 + DRIFT_ROWS and published["rows"] == 120 + DRIFT_ROWS
    assert window["labelled_rows"] == 400 and published["performance"]["labelled_rows"] == 400
    assert published["performance"]["roc_auc"] is not None
    # The label-free estimate covers every row; beside the realised figures, its own on the 400 labelled ones.
    estimated = published["performance_estimate"]
    assert estimated["rows"] == 120 + DRIFT_ROWS and estimated["labelled"]["rows"] == 400
    assert not estimated["dropped"] and estimated["reference_realised_roc_auc"] is not None
    assert max(verdict_rows(fresh), key=lambda r: r.id).payload["performance_estimate"] == estimated
    assert published["verdict"] == "no_drift" and decision["outcome"] == Resolution.NO_ACTION, published["reason"]
    assert job.watermark(fresh, subject, job.PREDICTION_LOG) == second_end

    # With a watermark, the window after it starts at the watermark (explicit window_start still wins).
    later = job.load_window(fresh, "after", second_end + timedelta(hours=1))
    assert later["start"] == second_end.isoformat() and later["rows"] == 0
    pinned = job.load_window(fresh, "pinned", second_end, {"window_start": registered.isoformat()})
    assert pinned["rows"] == 120 + DRIFT_ROWS


def test_a_retried_window_gives_one_report_one_run_one_row_and_the_same_retrain(env, fresh):
    from airloop.ledger import Resolution, run_id_for
    from airloop.monitoring import job
    from airloop.monitoring.report import TAG_REPORT_ID, monitoring_experiment

    client, version, registered = env
    end = registered + timedelta(hours=21)
    log_traffic(fresh, version, 4, 2.0, registered + timedelta(hours=20), timedelta(minutes=30))
    target = job.RetrainTarget(*IDLE)
    window = job.load_window(fresh, "retried", end, {"window_start": (end - timedelta(hours=1)).isoformat()})

    tries = []
    for _ in range(2):  # each task retried once
        compared = job.compare_window(fresh, "retried", window)
        published = job.publish(fresh, "retried")
        tries.append((compared, published, job.decide(fresh, window, published, "test", target)))

    (c1, p1, d1), (c2, p2, d2) = tries
    assert c1["verdict"] == "drift" and c1 == c2
    assert p1 == p2 and p1["report_id"] == c1["report_id"]
    assert len(report_pages(fresh)) == 1
    experiment = client.get_experiment_by_name(monitoring_experiment(fresh))
    runs = client.search_runs([experiment.experiment_id], f"tags.`{TAG_REPORT_ID}` = '{p1['report_id']}'")
    assert [r.info.run_id for r in runs] == [p1["mlflow_run_id"]]
    (row,) = verdict_rows(fresh)
    assert row.key == d1["key"] == d2["key"] and row.outcome is None  # the trigger has not been recorded yet
    assert d1["retrain_run_id"] == d2["retrain_run_id"] == run_id_for(row.key, job.RETRAIN_RUN_PREFIX)
    assert d1 == d2 and d1["retrain_conf"]["verdict_id"] == row.id

    first = job.record_retrain(fresh, d1)
    again = job.record_retrain(fresh, d2)

    assert first["outcome"] == again["outcome"] == Resolution.RETRAIN_STARTED
    assert again["detail"] == d1["retrain_run_id"]
    (row,) = verdict_rows(fresh)
    assert row.outcome == Resolution.RETRAIN_STARTED and row.outcome_detail == d1["retrain_run_id"]
    # A decide retried after the outcome was recorded acts on it, nothing new.
    redo = job.decide(fresh, window, p1, "test", job.RetrainTarget("readmission_retrain", True, 1))
    assert redo["outcome"] == Resolution.RETRAIN_STARTED and redo["retrain_run_id"] == d1["retrain_run_id"]
    assert job.watermark(fresh, f"{MODEL}/v{version}", job.PREDICTION_LOG) == end


def test_a_cleared_run_reads_its_own_window_again_and_records_the_retrain_it_started(env, fresh):
    """Clearing a finished drift run re-runs load_window after the watermark moved past it: same window, same key;
    a decide retried after its retrain was triggered but before that was recorded records that run, not a skip."""
    from airloop.ledger import Resolution
    from airloop.monitoring import job

    _, version, registered = env
    start, end = registered + timedelta(hours=40), registered + timedelta(hours=41)
    log_traffic(fresh, version, 14, 2.0, start + timedelta(minutes=1), timedelta(minutes=30))
    params = {"window_start": start.isoformat()}
    window, published, decision = run_window(fresh, "cleared", end, job.RetrainTarget(*IDLE), params)
    # The retrain is triggered, then the task dies before record_retrain: the next try of decide sees the run.
    retried = job.decide(
        fresh, window, published, "test", job.RetrainTarget("readmission_retrain", True, 1, run_exists=True)
    )
    assert retried["retrain_run_id"] == decision["retrain_run_id"] == job.retrain_run_id(window)
    job.record_retrain(fresh, retried)
    assert job.watermark(fresh, window["model_name"] + f"/v{version}", job.PREDICTION_LOG) == end

    again = job.load_window(fresh, "cleared", end)  # no window_start param: the recorded window is found

    assert again["start"] == start.isoformat() and again == window
    (row,) = verdict_rows(fresh)
    assert row.outcome == Resolution.RETRAIN_STARTED and row.outcome_detail == decision["retrain_run_id"]


def test_drift_triggers_a_retrain_only_when_deployed_idle_and_not_cooling_down(env, fresh, monkeypatch):
    from airloop.ledger import Resolution
    from airloop.monitoring import job
    from airloop.settings import get_settings

    _, version, registered = env
    base = registered + timedelta(hours=30)

    def drifted(k: int, settings, target: job.RetrainTarget) -> dict:
        start = base + timedelta(hours=k)
        log_traffic(settings, version, 40 + k, 2.0, start + timedelta(minutes=1), timedelta(minutes=30))
        params = {"window_start": start.isoformat()}
        _, published, decision = run_window(settings, f"drift-{k}", start + timedelta(hours=1), target, params)
        assert published["verdict"] == "drift", published
        assert decision["alert"] and decision["verdict"] == "drift"
        return decision

    undeployed = drifted(0, fresh, job.RetrainTarget("readmission_retrain", False, 0))
    assert undeployed["outcome"] == Resolution.RETRAIN_SKIPPED and undeployed["retrain_run_id"] is None
    assert "no retrain DAG deployed" in undeployed["detail"] and "readmission_retrain" in undeployed["detail"]

    busy = drifted(1, fresh, job.RetrainTarget("readmission_retrain", True, 1))
    assert busy["outcome"] == Resolution.RETRAIN_SKIPPED and "already running" in busy["detail"]

    started = drifted(2, fresh, job.RetrainTarget(*IDLE))
    assert started["retrain_run_id"] and started["outcome"] == Resolution.RETRAIN_STARTED
    assert started["retrain_conf"]["model_version"] == version
    job.record_retrain(fresh, started)

    cooling = drifted(3, fresh, job.RetrainTarget(*IDLE))
    assert cooling["outcome"] == Resolution.RETRAIN_SKIPPED and cooling["retrain_run_id"] is None
    assert "cool-down" in cooling["detail"] and started["retrain_run_id"] in cooling["detail"]

    monkeypatch.setenv("AIRLOOP_MONITORING__COOLDOWN_HOURS", "0")
    get_settings.cache_clear()
    no_cooldown = get_settings()
    assert no_cooldown.monitoring.cooldown_hours == 0

    again = drifted(4, no_cooldown, job.RetrainTarget(*IDLE))
    assert again["retrain_run_id"] and again["retrain_run_id"] != started["retrain_run_id"]
    assert [r.outcome for r in sorted(verdict_rows(fresh), key=lambda r: r.id)] == [
        Resolution.RETRAIN_SKIPPED,
        Resolution.RETRAIN_SKIPPED,
        Resolution.RETRAIN_STARTED,
        Resolution.RETRAIN_SKIPPED,
        None,  # decided to trigger; record_retrain sets it after the trigger
    ]


def test_a_drifted_dataset_is_alerted_with_realised_performance(env, fresh):
    from airloop import etl
    from airloop.ledger import Resolution
    from airloop.monitoring import job

    _, version, registered = env
    raw = etl.extract(fresh, "etl-drifted", {"rows": 3000, "seed": 77, "covariate_drift": 2.0})
    etl.transform(fresh, "etl-drifted")
    dataset = etl.publish(fresh, raw["source"], [], "etl-drifted").version
    end = max(datetime.now(UTC), registered) + timedelta(hours=1)

    window, published, decision = run_window(fresh, "dataset-run", end, job.RetrainTarget(*IDLE), None, dataset)

    assert window["source"] == f"dataset:{dataset}" and window["end"] == end.isoformat()
    assert window["rows"] == window["labelled_rows"] > 0
    assert published["verdict"] == "drift" and published["source"] == f"dataset:{dataset}"
    assert published["performance"]["labelled_rows"] == window["rows"]
    assert 0.5 < published["performance"]["roc_auc"] <= 1.0
    assert decision["outcome"] == Resolution.ALERTED and decision["retrain_run_id"] is None
    assert "dataset" in decision["detail"]
    (row,) = verdict_rows(fresh)
    assert row.outcome == Resolution.ALERTED and row.subject == f"{MODEL}/v{version}"
    # The dataset's verdict is no watermark of the prediction log.
    assert job.watermark(fresh, row.subject, job.PREDICTION_LOG) is None
    assert job.watermark(fresh, row.subject, window["source"]) == end


def test_bad_thresholds_and_variant_are_refused(env, fresh):
    from airloop.monitoring import job

    with pytest.raises(job.NothingToMonitor, match=r"unknown thresholds \['psy'\]"):
        job.thresholds(fresh, {"psy": 0.1})
    with pytest.raises(job.NothingToMonitor, match=r"positive numbers, got \{'psi': -0\.1\}"):
        job.thresholds(fresh, {"psi": -0.1})
    assert job.thresholds(fresh, {"psi": 0.1, "min_rows": None}).psi == 0.1
    assert job.thresholds(fresh, {"max_estimated_auc_drop": 0.1}).max_estimated_auc_drop == 0.1
    with pytest.raises(job.NothingToMonitor, match="max_estimated_auc_drop"):
        job.thresholds(fresh, {"max_estimated_auc_drop": 2})

    _, version, registered = env
    end = registered + timedelta(hours=51)
    log_traffic(fresh, version, 5, 0.0, end - timedelta(minutes=30), timedelta(minutes=10), rows=100)
    window = job.load_window(fresh, "bad-thresholds", end, {"window_start": (end - timedelta(hours=1)).isoformat()})
    for override in ({"nope": 1}, {"psi": -1}):
        with pytest.raises(job.NothingToMonitor):
            job.compare_window(fresh, "bad-thresholds", window, override)
    assert not fresh.layout.staging("bad-thresholds").exists(job.REPORT_FILE)

    with pytest.raises(job.NothingToMonitor, match="nonsense"):
        job.load_window(fresh, "bad-variant", end, {"variant": "nonsense"})
    with pytest.raises(job.NothingToMonitor, match="ISO"):
        job.load_window(fresh, "bad-end", end, {"window_end": "yesterday"})
    with pytest.raises(job.NothingToMonitor, match="end after it starts"):
        job.load_window(fresh, "backwards", end, {"window_start": (end + timedelta(hours=1)).isoformat()})
    assert verdict_rows(fresh) == []


def test_a_version_without_a_profile_asks_for_a_retrain_before_anything_is_written(env, fresh):
    from airloop.monitoring import job
    from airloop.monitoring.baseline import ProfileUnavailable
    from airloop.registry.aliases import move_alias
    from airloop.registry.contract import Alias

    client, version, registered = env
    champion = client.get_model_version(MODEL, version)
    # A version registered from a run that never logged baseline/baseline_stats.json (trained before monitoring).
    bare = client.create_run(client.get_experiment_by_name(fresh.mlflow.experiment).experiment_id)
    client.set_terminated(bare.info.run_id)
    old = client.create_model_version(MODEL, champion.source, run_id=bare.info.run_id)
    move_alias(client, MODEL, Alias.CHALLENGER, old.version, "test", "a version without a profile")
    end = registered + timedelta(hours=61)
    log_traffic(fresh, old.version, 6, 0.0, end - timedelta(minutes=30), timedelta(minutes=10), rows=600)

    try:
        with pytest.raises(ProfileUnavailable, match="retrain"):
            job.load_window(fresh, "no-profile", end, {"variant": "challenger"})
        assert fresh.layout.staging("no-profile").listdir() == []

        # A window staged for a version whose profile is gone (here: the bare run's) is not compared either.
        log_traffic(fresh, version, 6, 0.0, end - timedelta(minutes=30), timedelta(minutes=10), rows=300)
        window = job.load_window(fresh, "staged", end, {"window_start": (end - timedelta(hours=1)).isoformat()})
        assert window["rows"] == 300 and fresh.layout.staging("staged").exists(job.PART_COUNTS.format(0))
        window = {**window, "model_version": old.version, "variant": "challenger", "run_id": bare.info.run_id}
        with pytest.raises(ProfileUnavailable, match="retrain"):
            job.compare_window(fresh, "staged", window)
        assert not fresh.layout.staging("staged").exists(job.REPORT_FILE)
        assert report_pages(fresh) == [] and verdict_rows(fresh) == []
    finally:
        move_alias(client, MODEL, Alias.CHALLENGER, None, "test", "cleanup")


def test_alerts_without_connections_are_a_log_line_only(env, fresh, caplog):
    import logging

    from airloop.monitoring import job

    _, version, registered = env
    end = registered + timedelta(hours=71)
    log_traffic(fresh, version, 7, 0.0, end - timedelta(minutes=50), timedelta(minutes=30), rows=DRIFT_ROWS)
    params = {"window_start": (end - timedelta(hours=1)).isoformat()}
    _, calm, calm_decision = run_window(fresh, "calm", end, job.RetrainTarget(*IDLE), params)
    assert calm["verdict"] == "no_drift"
    caplog.set_level(logging.INFO, logger="airloop.monitoring")

    assert job.alert(fresh, calm, calm_decision) == []

    end += timedelta(hours=1)
    log_traffic(fresh, version, 8, 2.0, end - timedelta(minutes=50), timedelta(minutes=30), rows=DRIFT_ROWS)
    params = {"window_start": (end - timedelta(hours=1)).isoformat()}
    _, drift, drift_decision = run_window(
        fresh, "drift", end, job.RetrainTarget("readmission_retrain", False, 0), params
    )
    assert drift["verdict"] == "drift"

    assert job.alert(fresh, drift, drift_decision) == ["log"]  # webhook and e-mail skipped: no connections
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "drift verdict no_drift" in messages and "drift verdict drift" in messages
