"""readmission_drift run for real with dag.test() on a logged window: report files, MLflow metrics, ledger rows, the
retrain trigger once; then the ETL -> training hand-off with several versions published during one training run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.champion import champion_home
from tests.champion import log_traffic as shared_log_traffic
from tests.dags.conftest import dag_runs, delete_runs, run_dag

pytestmark = pytest.mark.dag

ROWS = 1200


@pytest.fixture(scope="module")
def env(airflow_db, tmp_path_factory):
    """A runtime home with a champion (tests/champion.py)."""
    from airloop.registry.client import connect

    with champion_home(tmp_path_factory.mktemp("drift-home")) as (settings, version):
        yield settings, connect(settings), version


def log_traffic(settings, version: str, seed: int, covariate: float, start: datetime, span: timedelta) -> None:
    """ROWS encounters scored by the version, logged over ``span`` from ``start``."""
    shared_log_traffic(settings, version, seed, covariate, start, span, ROWS)


def test_drift_dag_reports_records_and_triggers_the_retrain_once(env, monkeypatch):
    from airloop.ledger import Kind, Resolution, ledger, run_id_for
    from airloop.monitoring.report import monitoring_experiment

    settings, client, version = env
    delete_runs("readmission_retrain")
    registered = datetime.fromtimestamp(client.get_model_version("readmission", version).creation_timestamp / 1000, UTC)
    registered = registered.replace(minute=30, second=0, microsecond=0)  # each window's rows: :31 to :01
    first_end = registered + timedelta(hours=1)
    # Every hour of log a part of its own: each window below (two hours of log) is profiled by two mapped tasks.
    from airloop.settings import get_settings

    monkeypatch.setattr(get_settings("readmission").monitoring, "window_part_mb", 1e-6)  # what the tasks read
    log_traffic(
        settings, version, seed=21, covariate=0.0, start=registered + timedelta(minutes=1), span=timedelta(minutes=30)
    )

    states = run_dag("readmission_drift", {"window_start": registered.isoformat()}, run_after=first_end)

    assert states == {
        "compact_logs": "success",
        "plan_window": "success",
        "profile_part[0]": "success",
        "profile_part[1]": "success",
        "load_window": "success",
        "compare": "success",
        "report": "success",
        "decide": "success",
        "alert": "success",
        "retrain_due": "success",
        "trigger_retrain": "skipped",
        "record_outcome": "success",
    }, states
    (first,) = ledger(settings).rows(kind=Kind.DRIFT_VERDICT)
    assert first.payload["verdict"] == "no_drift" and first.outcome == Resolution.NO_ACTION
    assert first.payload["rows"] == ROWS and first.subject == f"readmission/v{version}"

    # The next window starts where the last completed verdict ended; its traffic has drifted.
    log_traffic(
        settings, version, seed=22, covariate=2.0, start=first_end + timedelta(minutes=1), span=timedelta(minutes=30)
    )
    log_traffic(
        settings, version, seed=23, covariate=0.0, start=registered, span=timedelta(minutes=1)
    )  # late rows of a judged window: not counted again
    second_end = first_end + timedelta(hours=1)

    states = run_dag("readmission_drift", {}, run_after=second_end)

    assert states["trigger_retrain"] == "success" and states["record_outcome"] == "success", states
    second = ledger(settings).rows(kind=Kind.DRIFT_VERDICT)[0]
    assert second.payload["window"] == {"start": first_end.isoformat(), "end": second_end.isoformat()}
    assert second.payload["rows"] == ROWS  # no row of the first window counted twice
    assert second.payload["verdict"] == "drift" and "age" in second.payload["drifted_features"]
    retrain_run = run_id_for(second.key, "retrain")
    assert second.outcome == Resolution.RETRAIN_STARTED and second.outcome_detail == retrain_run
    assert dag_runs("readmission_retrain") == {retrain_run: "queued"}

    # The report: JSON + HTML in the artifact store, the run in the monitoring experiment with per-feature metrics.
    reports = settings.layout.reports()
    files = reports.walk_files()
    assert len([f for f in files if f.endswith("report.html")]) == 2, files
    report = json.loads(
        reports.read_text(second.payload["report_url"][len(reports.url()) + 1 :].replace(".html", ".json"))
    )
    assert report["verdict"] == "drift" and report["report_id"] == second.payload["report_id"]
    runs = client.search_runs([client.get_experiment_by_name(monitoring_experiment(settings)).experiment_id])
    assert len(runs) == 2
    logged = client.get_run(second.payload["mlflow_run_id"]).data.metrics
    assert logged["drift_psi_age"] >= 0.2 and logged["rows"] == ROWS

    # A third drifted window while that retrain is still queued: a verdict, no second retrain.
    log_traffic(
        settings, version, seed=24, covariate=2.0, start=second_end + timedelta(minutes=1), span=timedelta(minutes=30)
    )

    states = run_dag("readmission_drift", {}, run_after=second_end + timedelta(hours=1))

    assert states["trigger_retrain"] == "skipped", states
    third = ledger(settings).rows(kind=Kind.DRIFT_VERDICT)[0]
    assert third.payload["verdict"] == "drift" and third.outcome == Resolution.RETRAIN_SKIPPED
    assert "already running" in third.outcome_detail
    assert dag_runs("readmission_retrain") == {retrain_run: "queued"}


def test_etl_hands_every_version_to_training_exactly_once(env):
    """Three versions published while the first trains: v1 trained, v2 recorded as superseded, v3 trained."""
    from airloop import etl
    from airloop.ledger import Kind, Resolution, ledger
    from airloop.training import handoff

    settings = env[0]
    states = run_dag("readmission_etl", {"rows": 2500, "seed": 31})

    assert states["hand_off"] == "success" and states["trigger_training"] == "success", states
    v1 = ledger(settings).rows(kind=Kind.DATASET_PUBLISHED)[0].payload["version"]
    assert handoff.training_run_id(settings, v1) in dag_runs("readmission_train")
    assert handoff.claim(settings, v1, handoff.training_run_id(settings, v1), "test")["train"]  # v1 starts training

    published = []
    for seed in (32, 33):  # published while v1 trains, as the ETL's hand_off task records them
        raw = etl.extract(settings, f"etl-{seed}", {"rows": 2500, "seed": seed})
        etl.transform(settings, f"etl-{seed}")
        result = etl.publish(settings, raw["source"], [], f"etl-{seed}")
        published.append(
            handoff.published(settings, {"version": result.version, "rows": result.rows, "url": result.url}, "etl")
        )
    v2, v3 = (p["version"] for p in published)

    second = handoff.claim(settings, v2, handoff.training_run_id(settings, v2), "train-run-2")
    third = handoff.claim(settings, v3, handoff.training_run_id(settings, v3), "train-run-3")

    assert not second["train"] and second["reason"] == f"superseded by version {v3} before training started"
    assert third["train"]
    rows = {r.payload["version"]: r for r in ledger(settings).rows(kind=Kind.DATASET_PUBLISHED)}
    assert {v: r.outcome for v, r in rows.items() if v in (v1, v2, v3)} == {
        v1: Resolution.TRAINING_STARTED,
        v2: Resolution.TRAINING_SKIPPED,
        v3: Resolution.TRAINING_STARTED,
    }
    # The ETL re-run on the same data publishes nothing and triggers nothing.
    before = dag_runs("readmission_train")
    states = run_dag("readmission_etl", {"rows": 2500, "seed": 31})
    assert states["publish"] == "skipped" and states["trigger_training"] == "skipped", states
    assert dag_runs("readmission_train") == before
