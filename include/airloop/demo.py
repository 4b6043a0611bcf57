"""`make demo`: start Airflow standalone on the embedded default, run the loop once through the REST API, print URLs.

Airflow runs in its own process group so that stopping the demo stops the scheduler, triggerer, DAG processor and
every LocalExecutor worker with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from airloop.settings import PROJECT_ROOT, Settings

PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


class DemoError(RuntimeError):
    """The demo could not complete; the message says which step and where its log is."""


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment for Airflow processes: repo dags/ and plugins/, SQLite under the runtime folder, no examples."""
    env = os.environ.copy()
    env.update(
        {
            "AIRFLOW_HOME": str(settings.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(settings.airflow.parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(settings.airflow.parallelism),
            "AIRFLOW__API__HOST": settings.airflow.host,
            "AIRFLOW__API__PORT": str(settings.airflow.port),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRLOOP_HOME": str(settings.home),
            "GX_ANALYTICS_ENABLED": "False",
        }
    )
    return env


@dataclass
class Service:
    """A process group the demo started, with its log file."""

    name: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 20) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL for whatever is left."""
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def start_service(name: str, command: list[str], env: dict[str, str], logs_dir: Path) -> Service:
    """Start a command in its own process group, output to ``logs_dir/<name>.log``."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    log = logs_dir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Service(name, process, log)


def wait_until(check, what: str, timeout: float, service: Service | None = None, every: float = 2.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fail with the service's log location."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and service.process.poll() is not None:
            raise DemoError(f"{service.name} exited with {service.process.returncode} while waiting for {what}; "
                            f"see {service.log}")
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(every)
    where = f"; see {service.log}" if service else ""
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}{where}")


class AirflowClient:
    """The few REST API v2 calls the demo makes, with a SimpleAuthManager token."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        token = self.http.post("/auth/token", json={"username": username, "password": password})
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def dag_exists(self, dag_id: str) -> bool:
        return self.http.get(f"/api/v2/dags/{dag_id}").status_code == 200

    def unpause(self, dag_id: str) -> None:
        self.http.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        response = self.http.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        response = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        response.raise_for_status()
        return response.json()["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        response = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        response.raise_for_status()
        return {ti["task_id"]: ti["state"] for ti in response.json()["task_instances"]}


def admin_password(settings: Settings) -> tuple[str, str]:
    """SimpleAuthManager's generated (user, password) from AIRFLOW_HOME."""
    path = settings.airflow_home / PASSWORD_FILE
    if not path.is_file():
        return "", ""
    users = json.loads(path.read_text())
    user, password = next(iter(users.items()))
    return user, password


def run_dag(client: AirflowClient, dag_id: str, conf: dict[str, Any], settings: Settings, service: Service) -> str:
    """Unpause, trigger and wait for one DAG run; return its final state."""
    wait_until(lambda: client.dag_exists(dag_id), f"Airflow to parse {dag_id}", 180, service)
    client.unpause(dag_id)
    run_id = client.trigger(dag_id, conf)
    print(f"  triggered {dag_id} run {run_id}", flush=True)
    state = wait_until(
        lambda: (s := client.run_state(dag_id, run_id)) in ("success", "failed") and s,
        f"{dag_id} run {run_id}",
        settings.airflow.run_timeout_s,
        service,
        every=3,
    )
    print(f"  {dag_id}: {state} {client.task_states(dag_id, run_id)}", flush=True)
    return state


def main(settings: Settings, keep_running: bool = True) -> int:
    """Run the demo; with ``keep_running`` the services stay up until Ctrl-C."""
    settings.home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(settings)
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    print(f"airloop demo: runtime folder {settings.home}", flush=True)
    airflow = start_service("airflow-standalone", [airflow_bin, "standalone"], env, settings.logs_dir)
    try:
        print(f"  Airflow standalone starting (log: {airflow.log})", flush=True)
        wait_until(lambda: admin_password(settings)[1], "the generated admin password", 240, airflow)
        user, password = admin_password(settings)
        client = wait_until(lambda: AirflowClient(settings.airflow.url, user, password), "the API server", 240,
                            airflow)
        state = run_dag(client, "readmission_etl", {}, settings, airflow)
        print_summary(settings, state)
        if state != "success":
            return 1
        if keep_running:
            print("\nServices keep running; press Ctrl-C to stop them.", flush=True)
            while airflow.process.poll() is None:
                time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping Airflow ...", flush=True)
        airflow.stop()


def print_summary(settings: Settings, etl_state: str) -> None:
    """The URLs and where to find credentials, and how to trigger a run with curl."""
    url = settings.airflow.url
    pw_file = settings.airflow_home / PASSWORD_FILE
    datasets = settings.datasets_dir / settings.data.dataset_name
    print(
        f"""
readmission_etl finished: {etl_state}
  Airflow UI      {url}   (user/password in {pw_file})
  datasets        {datasets}
  quarantine      {settings.quarantine_dir}
  Data Docs       {settings.gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"}

Trigger a run yourself through the REST API v2:
  TOKEN=$(curl -s -X POST {url}/auth/token -H 'Content-Type: application/json' \\
    -d "$(python3 -c 'import json,sys; u,p=next(iter(json.load(open(sys.argv[1])).items())); \\
print(json.dumps({{"username":u,"password":p}}))' {pw_file})" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -X POST {url}/api/v2/dags/readmission_etl/dagRuns -H "Authorization: Bearer $TOKEN" \\
    -H 'Content-Type: application/json' -d '{{"logical_date": null, "conf": {{"seed": 7, "covariate_drift": 1.0}}}}'
""",
        flush=True,
    )
