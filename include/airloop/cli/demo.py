"""`make demo`: start Airflow standalone on the embedded default, run the loop once through the REST API, print URLs.

MLflow, Airflow and the prediction service run under a :class:`~airloop.cli.supervisor.Supervisor`, each in a process
group of its own: Ctrl-C, SIGTERM or SIGHUP to the demo stops every process of them (Airflow's scheduler, triggerer,
DAG processor and workers included). `make stop` (``python -m airloop stop``) stops them from another terminal, even
when the demo process itself was killed with SIGKILL; their process groups are listed in ``<home>/demo-processes.json``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from airloop.cli.loop_demo import key_header
from airloop.cli.supervisor import AlreadyRunning, Service, Stopped, Supervisor, stop_recorded
from airloop.settings import Settings, config_file, get_settings

PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
STATE_FILE = "demo-processes.json"
DEMO_DRIFT_MIN_ROWS = 250
# The serving secrets the demo makes when none is configured (random, printed): the admin key, each client's key,
# and the key that signs request ids.
DEMO_KEYS = ("api_key", "predict_key", "feedback_key", "history_key", "request_id_key")


def dag_ids(settings: Settings) -> tuple[str, ...]:
    """The ids of the model's DAGs (``<model>_etl``, ``<model>_train``, ...), as its spec names them."""
    from airloop.cli.models import DAG_STAGES

    return tuple(settings.spec.dag_id(stage) for stage in DAG_STAGES)


class DemoError(RuntimeError):
    """The demo could not complete; the message says which step and where its log is."""


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment for Airflow processes: repo dags/ and plugins/, SQLite under the runtime folder, no examples, the
    users of ``security.users`` with their roles (SimpleAuthManager generates their passwords). The Airflow home gets
    airloop's ``airflow_local_settings.py`` (``airloop.airflow_preload``): each parse of the DAG file then pays for
    reading the specs and building the DAGs, not for defining airloop's settings classes again."""
    from airloop.airflow_preload import write_local_settings
    from airloop.security import airflow_users

    write_local_settings(settings.airflow_home)

    env = os.environ.copy()
    # standalone starts its components as `airflow ...` subprocesses: the venv's bin must come first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        {
            "AIRFLOW_HOME": str(settings.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.airflow.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.airflow.plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(settings.airflow.parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(settings.airflow.parallelism),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": airflow_users(settings),
            # SimpleAuthManager's roles, narrowed on a team's model's DAGs to its members (security.teams).
            "AIRFLOW__CORE__AUTH_MANAGER": "airloop.airflow_auth.TeamAuthManager",
            # Every API call needs a token: never the auth-less "everyone is admin" mode, whatever the shell says.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API__HOST": settings.airflow.host,
            "AIRFLOW__API__PORT": str(settings.airflow.port),
            # Task workers reach the API server here (Airflow's default is localhost:8080 whatever the port).
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow.url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRLOOP_HOME": str(settings.home),
            "AIRLOOP_CONFIG": str(config_file()),
            # Absolute: Airflow's components do not all run in this working directory (the API server's auth manager
            # reads the specs too, to know each DAG's model and team).
            "AIRLOOP_MODELS__FOLDER": str(settings.models.folder),
            "GX_ANALYTICS_ENABLED": "False",
        }
    )
    return env


def state_file(settings: Settings) -> Path:
    """Where the running demo lists its services' process groups, for `make stop`."""
    return settings.home / STATE_FILE


def wait_until(check, what: str, timeout: float, service: Service | None = None, every: float = 2.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fail with the service's log location."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and service.process.poll() is not None:
            raise DemoError(
                f"{service.name} exited with {service.process.returncode} while waiting for {what}; see {service.log}"
            )
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

    def pause(self, dag_id: str) -> None:
        self.http.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": True}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, attempts: int = 5) -> str:
        """Start a run under a run id chosen here, so that a retry after a 5xx or a lost answer (the embedded SQLite
        can be busy while the scheduler starts the demo's other runs) starts no second run: 409 means it exists."""
        run_id = f"demo__{uuid.uuid4().hex[:16]}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        for attempt in range(1, attempts + 1):
            try:
                response = self.http.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
            except httpx.TransportError:
                if attempt == attempts:
                    raise
            else:
                if response.status_code == 409 and attempt > 1:
                    return run_id  # an earlier attempt started it
                if response.status_code < 500 or attempt == attempts:
                    response.raise_for_status()
                    return response.json()["dag_run_id"]
            time.sleep(2 * attempt)
        raise AssertionError("unreachable")

    def run_exists(self, dag_id: str, run_id: str) -> bool:
        return self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").status_code == 200

    def run_state(self, dag_id: str, run_id: str) -> str:
        response = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        response.raise_for_status()
        return response.json()["state"]

    def latest_run(self, dag_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 1})
        response.raise_for_status()
        runs = response.json()["dag_runs"]
        return runs[0] if runs else None

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """What a task of a run returned (its ``return_value`` XCom)."""
        url = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        response = self.http.get(url)
        response.raise_for_status()
        value = response.json()["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        response = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        response.raise_for_status()
        return {ti["task_id"]: ti["state"] for ti in response.json()["task_instances"]}


def generated_password(settings: Settings, user: str) -> str:
    """The password SimpleAuthManager generated for ``user`` into AIRFLOW_HOME ("" until it has)."""
    path = settings.airflow_home / PASSWORD_FILE
    try:
        return json.loads(path.read_text() or "{}").get(user, "")
    except (OSError, ValueError):  # not written yet, or caught while being written
        return ""


def admin_password(settings: Settings) -> tuple[str, str]:
    """The first admin of ``security.users`` and its generated password ("" until generated): the demo's login."""
    from airloop.security import Role

    admins = [name for name, role in settings.security.users.items() if role is Role.ADMIN]
    if not admins:
        raise DemoError("the demo signs in to Airflow as an admin: give one user the admin role in security.users")
    return admins[0], generated_password(settings, admins[0])


def users_line(settings: Settings) -> str:
    """The Airflow users and their airloop roles, e.g. "viewer (viewer), scientist (data_scientist)"."""
    return ", ".join(f"{name} ({role.value})" for name, role in settings.security.users.items())


def wait_for_run(client: AirflowClient, dag_id: str, run_id: str, settings: Settings, service: Service) -> str:
    """Wait for a DAG run to finish; print and return its final state."""
    state = wait_until(
        lambda: (s := client.run_state(dag_id, run_id)) in ("success", "failed") and s,
        f"{dag_id} run {run_id}",
        settings.airflow.run_timeout_s,
        service,
        every=3,
    )
    print(f"  {dag_id} {run_id}: {state} {client.task_states(dag_id, run_id)}", flush=True)
    return state


def standalone_command() -> list[str]:
    """``airflow standalone``, keeping airloop's auth manager (``airloop.cli.airflow_standalone``)."""
    return [sys.executable, "-m", "airloop.cli.airflow_standalone"]


def start_mlflow(settings: Settings, supervisor: Supervisor) -> Service:
    """MLflow tracking server + UI on the embedded store (the same store the DAG tasks write to)."""
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri", settings.tracking_uri,
        "--registry-store-uri", settings.registry_uri,
        "--default-artifact-root", settings.artifact_location,
        "--host", settings.mlflow.host,
        "--port", str(settings.mlflow.port),
        "--workers", "1",
    ]  # fmt: skip
    # No job runner: it starts half a dozen huey worker processes (GenAI jobs) that airloop never uses.
    return supervisor.start("mlflow-server", command, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def start_serving(settings: Settings, supervisor: Supervisor) -> Service:
    """The prediction service (uvicorn, one worker) on the same runtime home and registry."""
    env = os.environ.copy()
    env["AIRLOOP_HOME"] = str(settings.home)
    env.update({f"AIRLOOP_SERVING__{field.upper()}": getattr(settings.serving, field) or "" for field in DEMO_KEYS})
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "serving.main:create_app",
        "--host", settings.serving.host, "--port", str(settings.serving.port), "--workers", "1", "--no-access-log",
    ]  # fmt: skip
    return supervisor.start("serving", command, env)


def send_predictions(settings: Settings, count: int) -> dict[str, Any]:
    """POST ``count`` records from the latest published dataset, one request each; return a sample response."""
    from airloop.data.store import dataset_store
    from airloop.training.features import model_inputs

    frame = dataset_store(settings).load().head(count)
    inputs = model_inputs(settings.spec, frame)
    records = inputs.astype(object).where(inputs.notna(), None).to_dict("records")  # JSON: a missing number is null
    sample: dict[str, Any] = {}
    asks = key_header(settings.serving.predict_key)
    with httpx.Client(base_url=settings.serving.url, timeout=30) as http:
        for record, patient in zip(records, frame[settings.spec.data.entity].tolist(), strict=True):
            response = http.post("/v1/predict", json={"records": [{**record, "entity_id": patient}]}, headers=asks)
            response.raise_for_status()
            sample = sample or {"request": {"records": [{**record, "entity_id": patient}]}, "response": response.json()}
        sample["models"] = http.get("/v1/models").json()
    return sample


def main(settings: Settings, keep_running: bool = True) -> int:
    """Run the demo; with ``keep_running`` the services stay up until Ctrl-C, SIGTERM, SIGHUP or `make stop`."""
    settings.home.mkdir(parents=True, exist_ok=True)
    print(f"airloop demo: runtime folder {settings.home}", flush=True)
    try:
        with Supervisor(state_file(settings), settings.logs_dir) as supervisor:
            return run_loop(settings, supervisor, keep_running)
    except (AlreadyRunning, DemoError) as error:
        print(f"airloop demo: {error}", file=sys.stderr, flush=True)
        return 1
    except (Stopped, KeyboardInterrupt):
        return 0


def run_loop(settings: Settings, supervisor: Supervisor, keep_running: bool) -> int:
    """Start the services under ``supervisor``, run ETL -> training -> 300 predictions once, print where things are."""
    mlflow_server = start_mlflow(settings, supervisor)
    print(f"  MLflow server starting (log: {mlflow_server.log})", flush=True)
    wait_until(
        lambda: httpx.get(f"{settings.mlflow.ui_url}/health", timeout=5).status_code == 200,
        "the MLflow server", 180, mlflow_server,
    )  # fmt: skip
    env = airflow_env(settings)
    airflow = supervisor.start("airflow-standalone", standalone_command(), env)
    print(f"  Airflow standalone starting (log: {airflow.log})", flush=True)
    wait_until(lambda: admin_password(settings)[1], "the generated admin password", 240, airflow)
    user, password = admin_password(settings)
    pw_file = settings.airflow_home / PASSWORD_FILE
    print(f"  Airflow users {users_line(settings)}: passwords generated in {pw_file}", flush=True)
    client = wait_until(lambda: AirflowClient(settings.airflow.url, user, password), "the API server", 240, airflow)
    etl_dag, train_dag = settings.spec.dag_id("etl"), settings.spec.dag_id("train")
    others = [get_settings(name) for name in sorted(settings.catalog.specs) if name != settings.model]
    for model in [settings, *others]:
        for dag_id in dag_ids(model):
            wait_until(lambda d=dag_id: client.dag_exists(d), f"Airflow to parse {dag_id}", 180, airflow)
            client.unpause(dag_id)
    previous_train = client.latest_run(train_dag)
    etl_run = client.trigger(etl_dag, {})
    print(f"  triggered {etl_dag} run {etl_run}", flush=True)
    etl_state = wait_for_run(client, etl_dag, etl_run, settings, airflow)
    train_state = "not triggered (no new dataset version)"
    states = client.task_states(etl_dag, etl_run)
    if etl_state == "success" and states.get("publish") == "success":
        print(f"  {etl_dag} hands the new dataset version to {train_dag} ...", flush=True)
        train = wait_until(
            lambda: (r := client.latest_run(train_dag)) and r != previous_train and r,
            f"{train_dag} to be triggered by {etl_dag}", 120, airflow,
        )  # fmt: skip
        train_state = wait_for_run(client, train_dag, train["dag_run_id"], settings, airflow)
    if etl_state != "success" or train_state == "failed":
        print_summary(settings, etl_state, train_state)
        return 1
    for field in DEMO_KEYS:  # keys the demo makes when none is configured; one service hosts every model: one set
        if not getattr(settings.serving, field):
            setattr(settings.serving, field, secrets.token_urlsafe(24))
        for other in others:
            setattr(other.serving, field, getattr(settings.serving, field))
    serving = start_serving(settings, supervisor)
    print(f"  prediction service starting (log: {serving.log})", flush=True)
    wait_until(
        lambda: httpx.get(f"{settings.serving.url}/ready", timeout=5).status_code == 200,
        "the prediction service to load the champion", 180, serving,
    )  # fmt: skip
    sample = send_predictions(settings, 300)
    print("  sent 300 predictions to /v1/predict", flush=True)
    drift = run_drift(settings, client, airflow)
    timeline = run_stream(settings, client, airflow)
    scored = run_batch_score(settings, client, airflow)
    briefs = [run_brief(other, client, airflow) for other in others]
    print_summary(settings, etl_state, train_state)
    print_serving(settings, sample)
    print(drift, flush=True)
    print(timeline, flush=True)
    print(scored, flush=True)
    for other, text in zip(others, briefs, strict=True):
        print_model(other, text)
    if keep_running:
        print("\nServices keep running; press Ctrl-C here or run `make stop` to stop them.", flush=True)
        exited = supervisor.watch()
        print(f"{exited.name} exited with {exited.process.returncode}; see {exited.log}", flush=True)
        return 1
    return 0


def run_drift(settings: Settings, client: AirflowClient, airflow: Service) -> str:
    """Trigger the model's drift DAG on the predictions just logged; say what it decided and where the report is."""
    from airloop.ledger import Kind, ledger
    from airloop.monitoring.report import monitoring_experiment

    dag_id = settings.spec.dag_id("drift")
    time.sleep(settings.serving.log_flush_interval_s + 1)  # the service flushes its log every interval
    # 300 predictions are fewer than the 500 rows a verdict needs by default: lowered for this run only.
    run = client.trigger(dag_id, {"thresholds": {"min_rows": DEMO_DRIFT_MIN_ROWS}})
    print(f"  triggered {dag_id} run {run} on the prediction log", flush=True)
    state = wait_for_run(client, dag_id, run, settings, airflow)
    book = ledger(settings)
    verdicts = book.rows(kind=Kind.DRIFT_VERDICT)
    latest = next((v for v in verdicts if v.payload.get("source") == "prediction_log"), None)
    if state != "success" or latest is None:
        return f"{dag_id}: {state} (log: {airflow.log})"
    payload = latest.payload
    return f"""{dag_id}: {payload["verdict"]} on {payload["rows"]} predictions ({payload["reason"]})
  outcome         {latest.outcome}{f" ({latest.outcome_detail})" if latest.outcome_detail else ""}
  drift report    {payload["report_url"]}
  in MLflow       {settings.mlflow.ui_url} experiment "{monitoring_experiment(settings)}"
  decision ledger {book.url.render_as_string(hide_password=True)}
"""


def runners(settings: Settings, client: AirflowClient, airflow: Service) -> tuple[Any, Any]:
    """``run(dag_id, conf)``: trigger a run and wait for its success (a DemoError otherwise); ``wait(dag_id,
    run_id)``: wait for a run another one triggered, and return its final state."""

    def run(dag_id: str, conf: dict[str, Any]) -> str:
        run_id = client.trigger(dag_id, conf)
        state = wait_for_run(client, dag_id, run_id, settings, airflow)
        if state != "success":
            raise DemoError(f"{dag_id} run {run_id} ended {state}: see the Airflow UI or {airflow.log}")
        return state

    def wait(dag_id: str, run_id: str) -> str:
        wait_until(lambda: client.run_exists(dag_id, run_id), f"{dag_id} run {run_id}", 120, airflow)
        return wait_for_run(client, dag_id, run_id, settings, airflow)

    return run, wait


def run_stream(settings: Settings, client: AirflowClient, airflow: Service) -> str:
    """Play the loop on the real scheduler (airloop.cli.loop_demo) and return its timeline and the history."""
    from airloop import history
    from airloop.cli import loop_demo

    run, wait = runners(settings, client, airflow)

    print("  the loop: batches 1-2 as before, then drifted batches (covariate and concept drift) ...", flush=True)
    timeline = loop_demo.play(settings, client, run, wait)
    table = history.format_table(history.rows(settings, limit=25))
    return f"""
The loop ({settings.spec.dag_id("train")} is paused: here only a drift verdict starts training):
{timeline}

Decision history (python -m airloop history; GET {settings.serving.url}/v1/history?at=TIME with the history key):
{table}
"""


def run_brief(settings: Settings, client: AirflowClient, airflow: Service) -> str:
    """Another model's loop in less detail on the same scheduler and service (airloop.cli.loop_demo.brief)."""
    from airloop.cli import loop_demo

    print(f"  model {settings.model}: its own loop in less detail ...", flush=True)
    return loop_demo.brief(settings, client, *runners(settings, client, airflow))


def run_batch_score(settings: Settings, client: AirflowClient, airflow: Service) -> str:
    """Trigger the model's batch scoring DAG on the latest dataset version with the (new) champion; say where it
    wrote."""
    from airloop.scoring import batch

    dag_id = settings.spec.dag_id("batch_score")
    run = client.trigger(dag_id, {})
    print(f"  triggered {dag_id} run {run} (the latest dataset version, the champion)", flush=True)
    state = wait_for_run(client, dag_id, run, settings, airflow)
    if state != "success":
        return f"{dag_id}: {state} (log: {airflow.log})"
    found = client.xcom(dag_id, run, "score")  # the published metadata, with the job
    job = found["job"]
    return f"""{dag_id}: {found["rows"]} encounters of dataset {job["input_version"]} scored by \
{job["model_name"]} v{job["model_version"]} ({found["rejected_rows"]} rejected) in {found["seconds"]} s
  predictions     {job["output_url"]}
  lineage         {batch.lineage_link(settings, job["output"]) or "(not logged)"}
"""


def stop(settings: Settings) -> int:
    """Stop a running demo's services, or those a killed demo left behind (`make stop`)."""
    done = stop_recorded(state_file(settings))
    for line in done:
        print(line, flush=True)
    if not done:
        print(f"no demo services recorded in {state_file(settings)}: nothing to stop", flush=True)
    return 1 if any(line.endswith("still running") for line in done) else 0


def registry_table(settings: Settings) -> str:
    """The registry table, or why it could not be read."""
    try:
        from airloop.operations import run_action

        return run_action(settings, "show", "demo")["table"]
    except Exception as error:  # the demo summary must print even when the registry is unreachable
        return f"(registry unavailable: {error})"


def training_link(settings: Settings) -> str:
    """The MLflow UI page of the training experiment, opened on its runs (not the GenAI view)."""
    from airloop.registry.client import connect, ui_link

    experiment = connect(settings).get_experiment_by_name(settings.mlflow.experiment)
    return ui_link(settings.mlflow.ui_url, experiment.experiment_id) if experiment else settings.mlflow.ui_url


def print_summary(settings: Settings, etl_state: str, train_state: str) -> None:
    """The URLs and where to find credentials, and how to trigger a run with curl."""
    from airloop.quality.data_gate import data_docs_index  # Great Expectations loads slowly: only here

    url = settings.airflow.url
    pw_file = settings.airflow_home / PASSWORD_FILE
    user = admin_password(settings)[0]
    datasets = settings.layout.datasets(settings.data.dataset_name).url()
    print(
        f"""
{settings.spec.dag_id("etl")}: {etl_state}; {settings.spec.dag_id("train")}: {train_state}
  Airflow UI      {url}   (users {users_line(settings)}; passwords in {pw_file})
  Model monitor   {url}/plugin/airloop_model_monitor   (the page alone: {url}/airloop/)
  MLflow UI       {settings.mlflow.ui_url}   (registered model "{settings.mlflow.model_name}")
  training runs   {training_link(settings)}
  datasets        {datasets}
  quarantine      {settings.layout.quarantine(settings.data.dataset_name).url()}
  Data Docs       {data_docs_index(settings)}

Model registry:
{registry_table(settings)}

Trigger a run yourself through the REST API v2 (user "{user}"):
  PW=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' {pw_file} {user})
  TOKEN=$(curl -s -X POST {url}/auth/token -H 'Content-Type: application/json' \\
    -d "{{\\"username\\": \\"{user}\\", \\"password\\": \\"$PW\\"}}" \\
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -X POST {url}/api/v2/dags/{settings.spec.dag_id("etl")}/dagRuns -H "Authorization: Bearer $TOKEN" \\
    -H 'Content-Type: application/json' -d '{{"logical_date": null, "conf": {{"seed": 7, "covariate_drift": 1.0}}}}'
""",
        flush=True,
    )


def print_model(settings: Settings, text: str) -> None:
    """Where another model's DAGs, registry entry, service routes and monitor view are, and what its loop did."""
    url, name = settings.airflow.url, settings.model
    about = settings.spec.description.rstrip(".") or "no description"
    print(
        f"""
Model {name} ({about}; spec {settings.models.folder / (name + ".yaml")})
{text}
  Airflow DAGs    {url}/dags?tags={name}   ({", ".join(dag_ids(settings))})
  Model monitor   {url}/airloop/?model={name}
  MLflow          registered model "{settings.mlflow.model_name}", experiment "{settings.mlflow.experiment}"
  service         {settings.serving.url}/v1/models/{name}/predict   (docs: {settings.serving.url}/docs#/{name})
""",
        flush=True,
    )


def print_serving(settings: Settings, sample: dict[str, Any]) -> None:
    """The prediction service's URLs, a sample request/response, and how to call it."""
    url = settings.serving.url
    record = json.dumps(sample["request"])
    print(
        f"""Prediction service {url}   (OpenAPI docs: {url}/docs, metrics: {url}/metrics)
  serving: {json.dumps(sample["models"]["models"])}
  routing: {json.dumps(sample["models"]["routing"])}
  keys (X-API-Key header): admin {settings.serving.api_key}
    predict {settings.serving.predict_key}   feedback {settings.serving.feedback_key}
    history {settings.serving.history_key}
  prediction log: {settings.layout.predictions().url()}
  sample response: {json.dumps(sample["response"])}

  curl -s -X POST {url}/v1/predict -H 'X-API-Key: {settings.serving.predict_key}' \\
    -H 'Content-Type: application/json' -d '{record}'
""",
        flush=True,
    )
