"""The shared DAG defaults: a final error fails at once, other errors back off, a failure says where its evidence is."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace

from airloop.dag_defaults import default_args, on_failure_callback
from airloop.errors import FinalError, QualityGateFailed

LOG_URL = "http://localhost:8080/dags/readmission_etl/runs/manual__1/tasks/validate_raw?try_number=1"
QUARANTINE = "s3://airloop/quarantine/raw/manual__1/batch.parquet"
DOCS = "file:///tmp/gx/uncommitted/data_docs/local_site/validations/raw/index.html"


def failure_context(error: BaseException) -> dict:
    ti = SimpleNamespace(dag_id="readmission_etl", task_id="validate_raw", try_number=1, log_url=LOG_URL)
    return {"ti": ti, "task_instance": ti, "exception": error}


def test_quality_gate_failure_logs_failed_expectations_quarantine_and_docs(caplog):
    report = SimpleNamespace(
        suite="raw_encounters",
        failures=["expect_column_values_to_be_in_set(race) saw {'Martian'}", "expect_column_to_exist(age) saw absent"],
        docs_url=DOCS,
    )
    error = QualityGateFailed(report, quarantined_at=QUARANTINE)

    with caplog.at_level(logging.ERROR, logger="airloop.dag_defaults"):
        on_failure_callback(failure_context(error))

    assert caplog.messages == [
        "readmission_etl.validate_raw (try 1) final error, not retried: quality gate raw_encounters: "
        "2 expectations failed\n"
        "  - expect_column_values_to_be_in_set(race) saw {'Martian'}\n"
        "  - expect_column_to_exist(age) saw absent\n"
        f"quarantine: {QUARANTINE}\n"
        f"Data Docs: {DOCS}\n"
        f"task log: {LOG_URL}"
    ]


def test_other_failure_logs_the_exception_and_the_task_log(caplog):
    with caplog.at_level(logging.ERROR, logger="airloop.dag_defaults"):
        on_failure_callback(failure_context(ConnectionError("mlflow at http://localhost:5000 refused")))

    assert caplog.messages == [
        "readmission_etl.validate_raw (try 1) failed: ConnectionError: mlflow at http://localhost:5000 refused\n"
        f"task log: {LOG_URL}"
    ]


def test_final_errors_fail_at_once_and_others_retry_with_doubling_delay():
    from airflow.sdk import RetryAction

    args = default_args(retry_delay=timedelta(seconds=10))
    policy = args["retry_policy"]

    assert policy.evaluate(QualityGateFailed(SimpleNamespace(suite="s", failures=[], docs_url=None)), 1, 3).action == (
        RetryAction.FAIL
    )
    assert policy.evaluate(FinalError("no such file"), 1, 3).action == RetryAction.FAIL
    assert policy.evaluate(ConnectionError("refused"), 1, 3).action != RetryAction.FAIL
    assert args["owner"] == "airloop" and args["retries"] == 2
    assert args["retry_delay"] == timedelta(seconds=10) and args["retry_exponential_backoff"] == 2.0
    assert args["on_failure_callback"] is on_failure_callback


def test_retries_and_their_delay_come_from_settings(monkeypatch):
    from airloop.settings import get_settings

    monkeypatch.setenv("AIRLOOP_AIRFLOW__RETRIES", "4")
    monkeypatch.setenv("AIRLOOP_AIRFLOW__RETRY_DELAY_SCALE", "0.1")
    get_settings.cache_clear()
    try:
        args = default_args(retry_delay=timedelta(seconds=20))
    finally:
        get_settings.cache_clear()

    assert (args["retries"], args["retry_delay"]) == (4, timedelta(seconds=2))
