"""Drift alerts: a message from a drift report, then a log line always, a webhook and e-mail when connections exist.

Channels are configured only through Airflow Connections, read with the Task SDK (``AIRFLOW_CONN_<ID>`` environment
variables work too):

- webhook: an ``http`` connection; URL from ``schema`` (http/https), ``host``, ``port`` and ``extra.endpoint``. The
  payload is generic JSON that Slack incoming webhooks also accept (``text`` + ``blocks``, data under ``airloop``).
- e-mail: an ``smtp`` connection; ``host``, ``port``, ``login``/``password``; ``extra.from_email``, ``extra.starttls``.

A missing connection is skipped with a log line naming the connection id to create; a failed delivery raises
:class:`AlertDeliveryFailed` after every configured channel has been tried.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from airloop.errors import AirloopError

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10.0
SMTP_TIMEOUT_S = 10.0
DEFAULT_FROM_EMAIL = "airloop@localhost"

_SEVERITY = {"drift": "warning", "alert": "warning", "no_drift": "info", "insufficient_data": "info"}
_HEADLINE = {
    "drift": "Drift: retraining",
    "alert": "Drift alert: please look",
    "no_drift": "No drift",
    "insufficient_data": "Not enough data for a verdict",
}
_LABELS = {
    "verdict": "Verdict",
    "model": "Model",
    "window": "Window",
    "rows": "Rows",
    "drifted_features": "Drifted features",
    "rules": "Rules fired",
    "drifted_share": "Drifted share",
    "importance_weighted_share": "Importance in drifted features",
    "prediction_psi": "Prediction PSI",
    "report_url": "Report",
}


class AlertDeliveryFailed(AirloopError):
    """A configured alert channel did not accept the alert; names the channel and connection, never its secrets."""


@dataclass(frozen=True)
class Alert:
    """One alert: a title, a one-paragraph text, a severity (``warning`` or ``info``) and JSON-able fields."""

    title: str
    text: str
    severity: str
    fields: dict[str, Any] = field(default_factory=dict)


def alert_message(report: Mapping[str, Any]) -> Alert:
    """The alert for one drift report.

    Args:
        report: a drift report dict. Read: ``verdict`` (``no_drift``/``alert``/``drift``/``insufficient_data``;
            required), ``rules`` (the rules that fired), ``importance_weighted_share``,
            ``reason``, ``rows``, ``drifted_features`` (list of names), ``drifted_share``, ``prediction`` (a dict
            with ``psi``, or None), ``model_name``, ``model_version``, ``window_start``, ``window_end``,
            ``report_url``. Every key but ``verdict`` may be missing.

    Returns:
        The alert; ``severity`` is ``warning`` for ``drift`` (retrain) and ``alert``, ``info`` otherwise.
    """
    verdict = report.get("verdict")
    if verdict not in _SEVERITY:
        raise ValueError(f"drift report verdict must be one of {sorted(_SEVERITY)}, got {verdict!r}")
    model = _model_label(report.get("model_name"), report.get("model_version"))
    prediction = report.get("prediction") or {}
    fields: dict[str, Any] = {
        "verdict": verdict,
        "model": model,
        "model_name": report.get("model_name"),
        "model_version": _str_or_none(report.get("model_version")),
        "window_start": _str_or_none(report.get("window_start")),
        "window_end": _str_or_none(report.get("window_end")),
        "rows": report.get("rows"),
        "drifted_features": list(report.get("drifted_features") or []),
        "drifted_share": report.get("drifted_share"),
        "importance_weighted_share": report.get("importance_weighted_share"),
        "rules": [f"{r.get('decision')}: {r.get('rule')}" for r in report.get("rules") or []],
        "prediction_psi": prediction.get("psi") if isinstance(prediction, Mapping) else None,
        "report_url": report.get("report_url"),
    }
    title = f"{_HEADLINE[verdict]}: {model}"
    window = _window_label(fields["window_start"], fields["window_end"])
    if window:
        title += f" ({window})"
    text = str(report.get("reason") or _HEADLINE[verdict])
    return Alert(title=title, text=text, severity=_SEVERITY[verdict], fields=fields)


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """Generic JSON for a webhook that Slack incoming webhooks also accept: ``text``, ``blocks`` and ``airloop``."""
    shown = _display_fields(alert.fields)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": alert.text[:3000]}},
    ]
    if shown:
        # Slack allows at most 10 fields per section.
        blocks.append(
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{value}"[:2000]} for label, value in shown[:10]],
            }
        )
    return {
        "text": f"{alert.title}: {alert.text}",
        "blocks": blocks,
        "airloop": {"title": alert.title, "text": alert.text, "severity": alert.severity, "fields": alert.fields},
    }


def send(
    alert: Alert,
    *,
    webhook_conn_id: str | None,
    email_conn_id: str | None,
    email_to: list[str] | None,
    read_connection: Callable[[str], Any | None] | None = None,
    smtp_factory: Callable[..., smtplib.SMTP] = smtplib.SMTP,
) -> list[str]:
    """Log the alert, then post it to the webhook and e-mail it where a connection exists; return what was sent.

    Args:
        alert: the alert to send.
        webhook_conn_id: the ``http`` connection of the webhook, or None for no webhook.
        email_conn_id: the ``smtp`` connection, or None for no e-mail.
        email_to: the e-mail recipients; no e-mail is sent without any.
        read_connection: reads a connection by id, None when it does not exist (default: :func:`get_connection`).
        smtp_factory: builds the SMTP client (``smtplib.SMTP``'s signature); tests may inject a fake.

    Returns:
        The channels used, e.g. ``["log", "webhook:airloop_alerts_webhook", "email:airloop_alerts_smtp"]``.

    Raises:
        AlertDeliveryFailed: a configured channel refused the alert (raised after trying every channel).
    """
    lookup = read_connection or get_connection
    level = logging.WARNING if alert.severity == "warning" else logging.INFO
    url = alert.fields.get("report_url")
    log.log(level, "%s: %s%s", alert.title, alert.text, f" (report: {url})" if url else "")
    sent = ["log"]
    failures: list[str] = []

    if webhook_conn_id:
        conn = lookup(webhook_conn_id)
        if conn is None:
            log.info("alert webhook skipped: create an http Airflow connection %r to post alerts", webhook_conn_id)
        else:
            try:
                _post_webhook(conn, webhook_conn_id, webhook_payload(alert))
                sent.append(f"webhook:{webhook_conn_id}")
            except AlertDeliveryFailed as exc:
                failures.append(str(exc))

    if email_conn_id:
        conn = lookup(email_conn_id)
        if conn is None:
            log.info("alert e-mail skipped: create an smtp Airflow connection %r to e-mail alerts", email_conn_id)
        elif not email_to:
            log.info("alert e-mail skipped: connection %r exists but no recipients were given", email_conn_id)
        else:
            try:
                _send_email(conn, email_conn_id, alert, email_to, smtp_factory)
                sent.append(f"email:{email_conn_id}")
            except AlertDeliveryFailed as exc:
                failures.append(str(exc))

    if failures:
        raise AlertDeliveryFailed("; ".join(failures))
    return sent


def get_connection(conn_id: str) -> Any | None:
    """The Airflow connection ``conn_id`` through the Task SDK (env vars, secrets backends, API), None if undefined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def webhook_url(conn: Any) -> str:
    """The URL of an ``http`` connection: ``schema://host:port`` + ``extra.endpoint`` (host may hold a scheme)."""
    host = (conn.host or "").rstrip("/")
    if not host:
        raise AlertDeliveryFailed(f"webhook connection {conn.conn_id!r} has no host")
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    if conn.port:
        host = f"{host}:{conn.port}"
    endpoint = str((conn.extra_dejson or {}).get("endpoint") or "")
    if endpoint and not endpoint.startswith("/"):
        endpoint = "/" + endpoint
    return host + endpoint


def _post_webhook(conn: Any, conn_id: str, payload: dict[str, Any]) -> None:
    """POST the payload as JSON; any transport error or non-2xx status is an AlertDeliveryFailed."""
    import httpx

    url = webhook_url(conn)
    auth = (conn.login, conn.password or "") if conn.login else None
    try:
        response = httpx.post(url, json=payload, auth=auth, timeout=WEBHOOK_TIMEOUT_S)
    except httpx.HTTPError as exc:
        # The exception text can carry the URL, whose path is the secret for Slack-style webhooks.
        raise AlertDeliveryFailed(f"webhook {conn_id!r} unreachable: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise AlertDeliveryFailed(f"webhook {conn_id!r} answered HTTP {response.status_code}")


def _send_email(
    conn: Any, conn_id: str, alert: Alert, email_to: list[str], smtp_factory: Callable[..., smtplib.SMTP]
) -> None:
    """E-mail the alert through the smtp connection; SMTP and socket errors become AlertDeliveryFailed."""
    extra = conn.extra_dejson or {}
    message = EmailMessage()
    message["Subject"] = f"[airloop {alert.severity}] {alert.title}"
    message["From"] = extra.get("from_email") or DEFAULT_FROM_EMAIL
    message["To"] = ", ".join(email_to)
    lines = [alert.text, ""] + [f"{label}: {value}" for label, value in _display_fields(alert.fields)]
    message.set_content("\n".join(lines) + "\n")
    try:
        with smtp_factory(conn.host or "localhost", int(conn.port or 25), timeout=SMTP_TIMEOUT_S) as client:
            if _truthy(extra.get("starttls")):
                client.starttls()
            if conn.login:
                client.login(conn.login, conn.password or "")
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise AlertDeliveryFailed(f"e-mail via {conn_id!r} failed: {type(exc).__name__}: {exc}") from None


def _display_fields(fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Human labels and text for the alert's fields, skipping empty ones."""
    shown: list[tuple[str, str]] = []
    window = _window_label(fields.get("window_start"), fields.get("window_end"))
    values = {**fields, "window": window}
    for key, label in _LABELS.items():
        value = values.get(key)
        if value is None or value == "" or value == []:
            continue
        if key in ("drifted_features", "rules"):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:.3f}"
        shown.append((label, str(value)))
    return shown


def _model_label(name: Any, version: Any) -> str:
    """``name v3``, or whatever part of it is known."""
    if name and version is not None:
        return f"{name} v{version}"
    return str(name) if name else "unknown model"


def _window_label(start: Any, end: Any) -> str:
    """``start to end`` for a window, or an empty string when neither end is known."""
    if start is None and end is None:
        return ""
    return f"{start or '?'} to {end or '?'}"


def _str_or_none(value: Any) -> str | None:
    """str(value), keeping None."""
    return None if value is None else str(value)


def _truthy(value: Any) -> bool:
    """A connection-extra flag: true for True, 1, "true", "yes", "1", "on"."""
    return value is True or str(value).strip().lower() in {"1", "true", "yes", "on"}
