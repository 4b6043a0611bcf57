"""The model monitor page: what it shows of a real registry and ledger, that Airflow's API server mounts it only for
signed-in users, and that it renders in headless Chromium (with a screenshot for the README)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.conftest import REPO

README_SCREENSHOT = REPO / "docs" / "images" / "model-monitor.png"


def screenshot_path(tmp_path: Path) -> Path:
    """Where the browser test saves its screenshot: the README's image only when AIRLOOP_UPDATE_SCREENSHOTS=1 (so a
    test run never changes a tracked file), else the test's temp folder."""
    return README_SCREENSHOT if os.environ.get("AIRLOOP_UPDATE_SCREENSHOTS") == "1" else tmp_path / "model-monitor.png"


CHAMPION, CHALLENGER = "champion", "challenger"


def _prepare_registry(settings) -> dict[str, Any]:
    """Two registered versions with their records, champion v1 / challenger v2 under a 90/10 A/B experiment, two
    drift verdicts and one evaluation in the ledger."""
    from airloop.experiments import lifecycle
    from airloop.ledger import Kind, ledger
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias, VersionRecord

    name = settings.mlflow.model_name
    connect(settings, create_experiment=True)
    x = np.random.default_rng(0).normal(size=(40, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    runs = []
    for version, auc in (("1", 0.71), ("2", 0.74)):
        with mlflow.start_run() as run:
            mlflow.log_metrics({"test_roc_auc": auc, "validation_roc_auc": auc - 0.01})
            info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        mlflow.register_model(info.model_uri, name)
        record = VersionRecord(
            dataset_version=f"2026-11-2{version}T00-00-00Z",
            training_run_id=run.info.run_id,
            decision="champion" if version == "1" else "challenger",
            decided_by="dag:readmission_train",
            decided_at=f"2026-11-2{version}T01:00:00+00:00",
        )
        client = connect(settings)
        for key, value in record.to_tags().items():
            client.set_model_version_tag(name, version, key, value)
        runs.append(run.info.run_id)
    client.set_registered_model_alias(name, Alias.CHAMPION, "1")
    client.set_registered_model_alias(name, Alias.CHALLENGER, "2")
    lifecycle.start(settings, "2", "test", {CHAMPION: 90, CHALLENGER: 10}, "ab", {"verdict_id": 1})
    book = ledger(settings)
    start = datetime(2026, 11, 25, 8, tzinfo=UTC)
    for hour, (verdict, share) in enumerate((("no_drift", 0.05), ("drift", 0.4))):
        end = start + timedelta(hours=hour + 1)
        book.record(
            Kind.DRIFT_VERDICT,
            f"drift:test:{hour}",
            None,
            {
                "source": "prediction_log",
                "window": {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()},
                "verdict": verdict,
                "reason": f"{share:.0%} of features drifted",
                "rows": 1000,
                "drifted_share": share,
                "drifted_features": ["num_medications", "age", "time_in_hospital", "a1c", "race", "gender"][
                    : int(share * 10)
                ],
                "report_url": f"file:///reports/{hour}/report.html",
            },
            "dag:readmission_drift",
        )
    book.record(
        Kind.EVALUATION,
        "evaluation:test:1",
        name,
        {
            "action": "continue",
            "reason": "interval [-0.01, 0.03] contains 0",
            "metric": "log_loss",
            "experiment": "readmission-v1-vs-v2",
            "mode": "ab",
            "arms": {
                CHAMPION: {"labelled": 180, "log_loss": 0.52, "log_loss_ci": [0.5, 0.54]},
                CHALLENGER: {"labelled": 20, "log_loss": 0.5, "log_loss_ci": [0.44, 0.56]},
            },
            "sequential": {"estimate": 0.02, "interval": [-0.01, 0.03], "p_value": 0.4},
            "rows_needed": 321,
        },
        "dag:readmission_ab_evaluate",
    )
    return {"runs": runs}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Any]:
    """Settings on a fresh airloop home (also seen by the mounted app through ``get_settings``) with the registry
    and ledger of ``_prepare_registry``."""
    from airloop.settings import get_settings

    saved = os.environ.get("AIRLOOP_HOME")
    os.environ["AIRLOOP_HOME"] = str(tmp_path_factory.mktemp("monitor") / "airloop")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        yield settings, _prepare_registry(settings)
    finally:
        if saved is None:
            os.environ.pop("AIRLOOP_HOME", None)
        else:
            os.environ["AIRLOOP_HOME"] = saved
        get_settings.cache_clear()


def test_monitor_state_shows_aliases_runs_routing_evaluation_drift_and_history(registry):
    from airloop.monitor.state import monitor_state

    settings, prepared = registry
    state = monitor_state(settings)

    champion, challenger = state["versions"][CHAMPION], state["versions"][CHALLENGER]
    assert (champion["version"], challenger["version"]) == ("1", "2")
    assert state["versions"]["previous-champion"] is None
    assert champion["run"]["id"] == prepared["runs"][0]
    assert champion["run"]["url"].startswith(settings.mlflow.ui_url) and champion["run"]["id"] in champion["run"]["url"]
    assert champion["run"]["test_metrics"] == {"roc_auc": pytest.approx(0.71)}
    assert champion["dataset_version"] == "2026-11-21T00-00-00Z"
    assert challenger["last_decision"]["kind"] == "experiment_started"
    assert state["routing"]["weights"] == {CHAMPION: 90.0, CHALLENGER: 10.0}
    assert state["routing"]["experiment"] == "readmission-v1-vs-v2" and state["routing"]["running"]
    evaluation = state["evaluation"]
    assert evaluation["current"] and evaluation["rows_needed"] == 321 and evaluation["interval"] == [-0.01, 0.03]
    assert {k: v["labelled"] for k, v in evaluation["arms"].items()} == {CHAMPION: 180, CHALLENGER: 20}
    latest = state["drift"]["latest"]
    assert latest["verdict"] == "drift" and latest["drifted_share"] == 0.4
    assert latest["drifted_features"] == ["num_medications", "age", "time_in_hospital", "a1c"]
    assert latest["report_url"] == "file:///reports/1/report.html"
    assert [p["drifted_share"] for p in state["drift"]["series"]] == [0.05, 0.4]  # oldest first, for the chart
    kinds = [row["kind"] for row in state["history"]]
    assert kinds[0] == "evaluation" and "experiment_started" in kinds and kinds.count("drift_verdict") == 2
    json.dumps(state)  # plain JSON


@pytest.fixture(scope="module")
def airflow_app(registry) -> Iterator[Any]:
    """Airflow's own API server app (``airflow.api_fastapi.app.create_app``, as ``airflow api-server`` builds it)
    with the plugins folder of the repo, SimpleAuthManager users from ``security.users`` and a migrated database;
    yields (app, passwords)."""
    from airflow.api_fastapi.app import create_app, purge_cached_app

    from airloop.security import airflow_users

    home = Path(os.environ["AIRFLOW_HOME"])
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": airflow_users(registry[0]),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "monitor_passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    assert os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO / "plugins")
    migrate = subprocess.run(
        [str(REPO / ".venv" / "bin" / "airflow"), "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    try:
        app = create_app()
        passwords = json.loads((home / "monitor_passwords.json").read_text())
        yield app, passwords
    finally:
        purge_cached_app()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _token(client, passwords: dict[str, str], user: str) -> str:
    answer = client.post("/auth/token", json={"username": user, "password": passwords[user]})
    assert answer.status_code == 201, answer.text
    return answer.json()["access_token"]


def test_mounted_monitor_refuses_anonymous_requests_and_serves_signed_in_users(airflow_app):
    from fastapi.testclient import TestClient

    app, passwords = airflow_app
    with TestClient(app) as client:
        assert client.get("/airloop/api/state").status_code == 401
        assert client.get("/airloop/").status_code == 401
        assert client.get("/airloop/api/state", headers={"Authorization": "Bearer forged"}).status_code == 403

        engineer = client.get(
            "/airloop/api/state", headers={"Authorization": f"Bearer {_token(client, passwords, 'engineer')}"}
        )
        client.cookies.set("_token", _token(client, passwords, "viewer"))  # what the Airflow UI's sign-in sets
        viewer = client.get("/airloop/api/state")
        page = client.get("/airloop/")

    assert engineer.status_code == 200, engineer.text
    assert engineer.json()["versions"][CHAMPION]["version"] == "1"
    assert engineer.json()["user"]["may"]["promote"] == {"allowed": True, "why": ""}
    assert viewer.status_code == 200 and viewer.json()["user"]["name"] == "viewer"
    assert not viewer.json()["user"]["may"]["rollback"]["allowed"]
    assert "viewer" in viewer.json()["user"]["may"]["rollback"]["why"]
    assert page.status_code == 200 and "<title>airloop model monitor</title>" in page.text


def test_plugin_puts_the_monitor_in_the_ui_navigation(airflow_app):
    from airflow import plugins_manager

    views, _ = plugins_manager._get_ui_plugins()
    monitor = next(view for view in views if view["name"] == "Model monitor")
    assert monitor["href"] == "/airloop/" and monitor["destination"] == "nav"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(check, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (httpx.HTTPError, OSError):
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class DevTools:
    """One page of a headless Chromium, driven over the DevTools protocol; records console errors."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.socket = connect(url, max_size=None)
        self.next_id = 0
        self.errors: list[str] = []
        self.events: list[str] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == self.next_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        self.events.append(method)
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            self.errors.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")

    def text(self) -> str:
        found = self.call(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True
        )
        return found["result"].get("value") or ""  # empty while a navigation replaces the document


@pytest.mark.browser
def test_monitor_page_renders_in_headless_chromium_without_console_errors(airflow_app, tmp_path):
    import uvicorn

    from tests.browser import FLAGS, chromium

    app, passwords = airflow_app
    port, debug_port = _free_port(), _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200, "the API server", 20)
    token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": passwords["admin"]}).json()
    with tempfile.TemporaryDirectory(prefix="airloop-chromium-") as profile:
        browser = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={debug_port}",
             "--remote-allow-origins=*", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            pages = _wait(
                lambda: [
                    t
                    for t in httpx.get(f"http://127.0.0.1:{debug_port}/json/list", timeout=2).json()
                    if t["type"] == "page"
                ],
                "Chromium's DevTools",
                20,
            )
            tools = DevTools(pages[0]["webSocketDebuggerUrl"])
            for domain in ("Runtime", "Log", "Page", "Network"):
                tools.call(f"{domain}.enable")
            tools.call("Network.setCookie", name="_token", value=token["access_token"], url=base, httpOnly=True)
            tools.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
            tools.call("Page.navigate", url=f"{base}/airloop/")
            text = _wait(lambda: (t := tools.text()) and "signed in as admin" in t and "Decision history" in t and t,
                         "the page to render the state", 20)  # fmt: skip
            time.sleep(0.5)  # the pending-approval request
            tools.text()  # drains the events that arrived meanwhile
            shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            shot_path = screenshot_path(tmp_path)
            shot_path.parent.mkdir(parents=True, exist_ok=True)
            shot_path.write_bytes(base64.b64decode(shot["data"]))
            tools.socket.close()
        finally:
            browser.terminate()
            browser.wait(timeout=10)
            server.should_exit = True
            serving.join(timeout=10)

    assert tools.errors == [], tools.errors
    assert "v1" in text and "champion" in text and "readmission-v1-vs-v2" in text
    assert "rows still needed: 321" in text and "drift" in text
    assert screenshot_path(tmp_path).stat().st_size > 10_000
