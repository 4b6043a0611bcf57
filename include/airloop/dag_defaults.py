"""The task defaults every airloop DAG shares: owner, retry policy, backoff, timeout and a failure callback.

Imported while DAG files are parsed: Airflow is imported inside ``default_args`` only, nothing heavy at all.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airloop.errors import FinalError, QualityGateFailed

log = logging.getLogger(__name__)

OWNER = "airloop"


def default_args(
    *,
    retry_delay: timedelta = timedelta(seconds=30),
    execution_timeout: timedelta = timedelta(minutes=30),
    **overrides: Any,
) -> dict[str, Any]:
    """``default_args`` for an airloop DAG: a ``FinalError`` fails at once, anything else retries ``airflow.retries``
    times (2 by default) with backoff.

    Args:
        retry_delay: the delay before the first retry, times ``airflow.retry_delay_scale``; each later one doubles it
            (up to ``max_retry_delay``).
        execution_timeout: how long one try may run.
        **overrides: any other task argument, replacing the shared value.
    """
    from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

    from airloop.settings import get_settings

    cfg = get_settings().airflow
    final = RetryRule(exception="airloop.errors.FinalError", action=RetryAction.FAIL, reason="retrying cannot help")
    return {
        "owner": OWNER,
        "retry_policy": ExceptionRetryPolicy(rules=[final]),
        "retries": cfg.retries,
        "retry_delay": retry_delay * cfg.retry_delay_scale,
        # A multiplier in Airflow 3.3 (delay * 2.0 ** (try - 1)): True would mean 1.0, a constant delay.
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": execution_timeout,
        "on_failure_callback": on_failure_callback,
        **overrides,
    }


def failure_report(context: dict[str, Any]) -> str:
    """What failed, why, and where the evidence is, from a task's failure context."""
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    where = f"{ti.dag_id}.{ti.task_id}" if ti is not None else "task"
    if ti is not None and getattr(ti, "try_number", None):
        where += f" (try {ti.try_number})"
    kind = "final error, not retried" if isinstance(error, FinalError) else "failed"
    if error is None:
        lines = [f"{where} failed"]
    elif isinstance(error, QualityGateFailed):
        report = error.report
        lines = [f"{where} {kind}: quality gate {report.suite}: {len(report.failures)} expectations failed"]
        lines += [f"  - {failure}" for failure in report.failures]
        lines.append(f"quarantine: {error.quarantined_at or '(batch not quarantined)'}")
        lines.append(f"Data Docs: {report.docs_url or '(not built)'}")
    else:
        lines = [f"{where} {kind}: {type(error).__name__}: {error}"]
    log_url = _log_url(ti)
    if log_url:
        lines.append(f"task log: {log_url}")
    return "\n".join(lines)


def on_failure_callback(context: dict[str, Any]) -> None:
    """Log which check failed and where its evidence is (quarantine, Data Docs, task log)."""
    log.error("%s", failure_report(context))


def _log_url(ti: Any) -> str | None:
    try:
        return ti.log_url if ti is not None else None
    except Exception:  # the report must still be logged when the URL cannot be built (no [api] config)
        return None


def dag_status(dag_id: str, run_id: str | None = None) -> tuple[bool, int, bool]:
    """From inside a running task: whether ``dag_id`` is deployed in Airflow, how many runs of it are active, and
    whether a run with ``run_id`` exists."""
    from airflow.sdk.api.client import ServerResponseError
    from airflow.sdk.exceptions import AirflowRuntimeError
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        RuntimeTaskInstance.get_dag(dag_id)
    except ServerResponseError as err:  # the in-process API of dag.test()
        if err.response.status_code == 404:
            return False, 0, False
        raise
    except AirflowRuntimeError as err:  # the API server's answer relayed by the task supervisor
        detail = getattr(err.error, "detail", None) or {}
        if isinstance(detail, dict) and detail.get("status_code") == 404:
            return False, 0, False
        raise
    active = RuntimeTaskInstance.get_dr_count(dag_id, states=["queued", "running"])
    exists = bool(run_id) and RuntimeTaskInstance.get_dr_count(dag_id, run_ids=[run_id]) > 0
    return True, active, exists
