"""Drift alerts: the message, the webhook payload, and delivery to a real HTTP and SMTP receiver on loopback."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airloop.monitoring.alerts import AlertDeliveryFailed, alert_message, send, webhook_payload

WEBHOOK = "airloop_alerts_webhook"
SMTP = "airloop_alerts_smtp"


def _report(verdict: str = "drift", **overrides) -> dict:
    report = {
        "verdict": verdict,
        "reason": "2 drifted features ['age', 'num_medications'] (weighted share 0.40 >= 0.3)",
        "rows": 1200,
        "drifted_features": ["age", "num_medications"],
        "drifted_share": 0.4,
        "prediction": {"psi": 0.05},
        "model_name": "readmission",
        "model_version": 3,
        "window_start": "2026-11-24T00:00:00Z",
        "window_end": "2026-11-25T00:00:00Z",
        "report_url": "http://mlflow.local/#/runs/abc",
    }
    report.update(overrides)
    return report


# ---------------------------------------------------------------- receivers


@dataclass
class _Hook:
    """What the loopback webhook received, and the status it answers with."""

    status: int = 200
    requests: list[tuple[str, str, dict]] = field(default_factory=list)


@pytest.fixture
def hook() -> Iterator[tuple[_Hook, int]]:
    """A real HTTP server on a free loopback port recording every request."""
    state = _Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(("POST", self.path, json.loads(body)))
            self.send_response(state.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[list[tuple[str, list[str], Message]], int]]:
    """A minimal real SMTP receiver on a free loopback port (EHLO/MAIL/RCPT/DATA/QUIT) collecting messages."""
    inbox: list[tuple[str, list[str], Message]] = []

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self) -> None:
            sender, recipients = "", []
            self.reply("220 localhost test SMTP")
            while line := self.rfile.readline():
                command = line.decode().strip()
                verb = command[:4].upper()
                if verb in ("EHLO", "HELO"):
                    self.reply("250 localhost")
                elif verb == "MAIL":
                    sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                    self.reply("250 OK")
                elif verb == "RCPT":
                    recipients.append(command.split(":", 1)[1].strip(" <>"))
                    self.reply("250 OK")
                elif verb == "DATA":
                    self.reply("354 end with .")
                    data = []
                    while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                        data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                    message = email.message_from_bytes(b"".join(data), policy=email.policy.default)
                    inbox.append((sender, recipients, message))
                    self.reply("250 queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("250 OK")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield inbox, server.server_address[1]
    server.shutdown()
    server.server_close()


def _set_webhook(monkeypatch, port: int) -> None:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http", "extra": {"endpoint": "/hook"}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{WEBHOOK.upper()}", json.dumps(conn))


def _set_smtp(monkeypatch, port: int) -> None:
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"from_email": "alerts@airloop.test"}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{SMTP.upper()}", json.dumps(conn))


@pytest.fixture(autouse=True)
def _no_alert_connections(monkeypatch) -> None:
    """Each test starts with neither alert connection defined."""
    monkeypatch.delenv(f"AIRFLOW_CONN_{WEBHOOK.upper()}", raising=False)
    monkeypatch.delenv(f"AIRFLOW_CONN_{SMTP.upper()}", raising=False)


# ---------------------------------------------------------------- message and payload


def test_drift_report_becomes_a_warning_naming_model_window_and_features() -> None:
    alert = alert_message(_report("drift"))

    assert alert.severity == "warning"
    assert alert.title == "Drift: retraining: readmission v3 (2026-11-24T00:00:00Z to 2026-11-25T00:00:00Z)"
    assert "num_medications" in alert.text
    assert alert.fields["drifted_features"] == ["age", "num_medications"]
    assert alert.fields["prediction_psi"] == 0.05
    assert alert.fields["model_version"] == "3"


def test_an_alert_verdict_is_a_warning_listing_the_rules_that_fired() -> None:
    rules = [{"rule": "calibration", "decision": "alert", "message": "observed 11.3% vs predicted 13.0%"}]
    alert = alert_message(_report("alert", rules=rules, importance_weighted_share=0.04, reason="alert: [calibration]"))

    assert alert.severity == "warning" and alert.title.startswith("Drift alert: please look: readmission v3")
    assert alert.fields["rules"] == ["alert: calibration"] and alert.fields["importance_weighted_share"] == 0.04
    shown = dict(field["text"].split("\n", 1) for field in webhook_payload(alert)["blocks"][2]["fields"])
    assert shown["*Rules fired*"] == "alert: calibration"


def test_no_drift_report_is_info() -> None:
    alert = alert_message(_report("no_drift", drifted_features=[], drifted_share=0.0, reason="0 drifted features"))

    assert alert.severity == "info"
    assert alert.title.startswith("No drift: readmission v3")
    assert alert.text == "0 drifted features"


def test_insufficient_data_report_tolerates_missing_optional_keys() -> None:
    alert = alert_message({"verdict": "insufficient_data", "reason": "12 rows, fewer than the 200 a verdict needs"})

    assert alert.severity == "info"
    assert alert.title == "Not enough data for a verdict: unknown model"
    assert alert.fields["prediction_psi"] is None
    assert alert.fields["drifted_features"] == []


def test_unknown_verdict_is_rejected() -> None:
    with pytest.raises(ValueError, match="'maybe'"):
        alert_message({"verdict": "maybe"})


def test_webhook_payload_is_slack_compatible_with_structured_fields() -> None:
    payload = webhook_payload(alert_message(_report("drift", prediction=None)))

    assert payload["text"].startswith("Drift: retraining: readmission v3")
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section"]
    assert payload["blocks"][0]["text"] == {"type": "plain_text", "text": payload["airloop"]["title"]}
    field_texts = [f["text"] for f in payload["blocks"][2]["fields"]]
    assert "*Drifted features*\nage, num_medications" in field_texts
    assert not any(t.startswith("*Prediction PSI*") for t in field_texts)  # no prediction drift measured
    assert payload["airloop"]["severity"] == "warning"
    assert payload["airloop"]["fields"]["rows"] == 1200
    json.dumps(payload)  # JSON-able as it stands


# ---------------------------------------------------------------- delivery


def test_webhook_receives_exactly_one_post_with_the_payload(monkeypatch, hook) -> None:
    state, port = hook
    _set_webhook(monkeypatch, port)
    alert = alert_message(_report("drift"))

    sent = send(alert, webhook_conn_id=WEBHOOK, email_conn_id=None, email_to=None)

    assert sent == ["log", f"webhook:{WEBHOOK}"]
    assert len(state.requests) == 1
    method, path, body = state.requests[0]
    assert (method, path) == ("POST", "/hook")
    assert body == webhook_payload(alert)


def test_webhook_500_raises_delivery_failed_naming_status_and_connection(monkeypatch, hook) -> None:
    state, port = hook
    state.status = 500
    _set_webhook(monkeypatch, port)

    with pytest.raises(AlertDeliveryFailed, match=rf"'{WEBHOOK}' answered HTTP 500") as failure:
        send(alert_message(_report()), webhook_conn_id=WEBHOOK, email_conn_id=None, email_to=None)

    assert "/hook" not in str(failure.value) and "127.0.0.1" not in str(failure.value)
    assert len(state.requests) == 1


def test_without_connections_only_the_log_line_is_sent(caplog) -> None:
    caplog.set_level(logging.INFO, logger="airloop.monitoring.alerts")

    sent = send(alert_message(_report("drift")), webhook_conn_id=WEBHOOK, email_conn_id=SMTP, email_to=["a@b.test"])

    assert sent == ["log"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].getMessage().startswith("Drift: retraining: readmission v3")
    skipped = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert f"connection '{WEBHOOK}'" in skipped and f"connection '{SMTP}'" in skipped


def test_no_drift_logs_at_info(caplog) -> None:
    caplog.set_level(logging.INFO, logger="airloop.monitoring.alerts")

    send(alert_message(_report("no_drift")), webhook_conn_id=None, email_conn_id=None, email_to=None)

    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_email_reaches_a_real_smtp_receiver(monkeypatch, smtp_inbox) -> None:
    inbox, port = smtp_inbox
    _set_smtp(monkeypatch, port)

    sent = send(
        alert_message(_report("drift")), webhook_conn_id=None, email_conn_id=SMTP, email_to=["oncall@airloop.test"]
    )

    assert sent == ["log", f"email:{SMTP}"]
    assert len(inbox) == 1
    sender, recipients, message = inbox[0]
    assert (sender, recipients) == ("alerts@airloop.test", ["oncall@airloop.test"])
    assert message["Subject"] == "[airloop warning] " + alert_message(_report("drift")).title
    assert "Drifted features: age, num_medications" in message.get_content()


def test_webhook_failure_does_not_stop_the_email(monkeypatch, hook, smtp_inbox) -> None:
    state, http_port = hook
    state.status = 503
    inbox, smtp_port = smtp_inbox
    _set_webhook(monkeypatch, http_port)
    _set_smtp(monkeypatch, smtp_port)

    with pytest.raises(AlertDeliveryFailed, match="HTTP 503"):
        send(alert_message(_report()), webhook_conn_id=WEBHOOK, email_conn_id=SMTP, email_to=["oncall@airloop.test"])

    assert len(inbox) == 1


def test_notifier_pulls_the_report_from_xcom_and_sends(monkeypatch, hook) -> None:
    from airloop.monitoring.notifier import DriftAlertNotifier

    state, port = hook
    _set_webhook(monkeypatch, port)

    class FakeTI:
        task_id = "detect_drift"

        def xcom_pull(self, task_ids: str):
            return _report("drift") if task_ids == "detect_drift" else None

    notifier = DriftAlertNotifier(email_conn_id=None)
    notifier({"ti": FakeTI()})

    assert notifier.sent == ["log", f"webhook:{WEBHOOK}"]
    assert state.requests[0][2]["airloop"]["fields"]["model_name"] == "readmission"


def test_email_uses_starttls_and_login_from_the_connection(monkeypatch) -> None:
    conn = {"conn_type": "smtp", "host": "mail.test", "port": 587, "login": "bot", "password": "pw"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{SMTP.upper()}", json.dumps({**conn, "extra": {"starttls": "true"}}))
    calls: list[tuple] = []

    class FakeSMTP:
        def __init__(self, host: str, port: int, timeout: float) -> None:
            calls.append(("connect", host, port))

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            calls.append(("quit",))

        def starttls(self) -> None:
            calls.append(("starttls",))

        def login(self, user: str, password: str) -> None:
            calls.append(("login", user, password))

        def send_message(self, message) -> None:
            calls.append(("send", message["To"]))

    send(
        alert_message(_report()), webhook_conn_id=None, email_conn_id=SMTP, email_to=["a@b.test"], smtp_factory=FakeSMTP
    )

    assert calls == [
        ("connect", "mail.test", 587),
        ("starttls",),
        ("login", "bot", "pw"),
        ("send", "a@b.test"),
        ("quit",),
    ]


def test_smtp_connection_without_recipients_sends_no_email(monkeypatch, smtp_inbox) -> None:
    inbox, port = smtp_inbox
    _set_smtp(monkeypatch, port)

    sent = send(alert_message(_report()), webhook_conn_id=None, email_conn_id=SMTP, email_to=None)

    assert sent == ["log"]
    assert inbox == []
