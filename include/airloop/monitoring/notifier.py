"""DriftAlertNotifier: the drift alert as an Airflow notifier, for ``on_*_callback`` or a direct call in a task.

Kept apart from :mod:`airloop.monitoring.alerts` because ``BaseNotifier`` has to be imported at module top, and that
imports the Task SDK; ``alerts`` itself stays light.

Usage::

    # as a callback: the report is the XCom return value of report_task_id (default: the task that called back)
    @task(on_success_callback=DriftAlertNotifier(report_task_id="detect_drift", email_to=["ml-oncall@example.org"]))

    # inside a task
    DriftAlertNotifier(report=report).notify(context)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier

from airloop.monitoring.alerts import alert_message, send

DEFAULT_WEBHOOK_CONN_ID = "airloop_alerts_webhook"
DEFAULT_EMAIL_CONN_ID = "airloop_alerts_smtp"


class DriftAlertNotifier(BaseNotifier):
    """Sends the drift alert of a report through :func:`airloop.monitoring.alerts.send`."""

    template_fields = ("webhook_conn_id", "email_conn_id", "email_to", "report_task_id")

    def __init__(
        self,
        *,
        report: Mapping[str, Any] | None = None,
        report_task_id: str | None = None,
        webhook_conn_id: str | None = DEFAULT_WEBHOOK_CONN_ID,
        email_conn_id: str | None = DEFAULT_EMAIL_CONN_ID,
        email_to: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.report = report
        self.report_task_id = report_task_id
        self.webhook_conn_id = webhook_conn_id
        self.email_conn_id = email_conn_id
        self.email_to = email_to
        self.sent: list[str] = []

    def notify(self, context: Any) -> None:
        """Send the alert of the given report, or of the report the task pushed to XCom."""
        report = self.report if self.report is not None else self._pulled_report(context)
        if report is None:
            self.log.warning("no drift report to alert on (task %r pushed none)", self.report_task_id)
            return
        self.sent = send(
            alert_message(report),
            webhook_conn_id=self.webhook_conn_id,
            email_conn_id=self.email_conn_id,
            email_to=list(self.email_to) if self.email_to else None,
        )

    def _pulled_report(self, context: Any) -> Mapping[str, Any] | None:
        """The report dict pushed as XCom return value by report_task_id (or by the calling task)."""
        ti = context.get("ti") or context.get("task_instance")
        if ti is None:
            return None
        value = ti.xcom_pull(task_ids=self.report_task_id or ti.task_id)
        return value if isinstance(value, Mapping) else None
