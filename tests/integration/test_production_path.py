"""The production path on real parts: PostgreSQL and S3 behind every store, Airflow as separate processes, its tasks
run by two Celery workers that share no local path.

One PostgreSQL server (Debian's package) holds three databases: Airflow's metadata (also Celery's result backend),
MLflow's backend store and airloop's decision ledger. One S3 server (moto in server mode) holds three buckets: the
runtime root (datasets, staging, quarantine, Data Docs and validation results, reports, the prediction and feedback
logs), MLflow's artifacts and Airflow's task logs (remote logging). One Redis server (Debian's package) is the Celery
broker. Airflow runs as ``api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` processes with the
CeleryExecutor, and two ``airflow celery worker`` processes, each in a folder of its own (working directory, HOME,
AIRFLOW_HOME, AIRLOOP_HOME, TMPDIR) under a name of its own (``worker-a``, ``worker-b``: Airflow records it as the task
instance's hostname), as two pods would: nothing a task writes to a local disk is seen by a task on the other worker,
so every hand-off between tasks has to go through S3, PostgreSQL or MLflow (helm-values/airflow.yaml deploys this
shape). MLflow runs as ``mlflow server`` on PostgreSQL + S3; two prediction service replicas (each in a folder of its
own too) against that MLflow. Nothing is configured but environment variables, as a deployment would do it. The tasks
reach S3 with the credentials of the Airflow connection ``airloop_storage`` (no AWS_* variable in Airflow's
environment); MLflow's server and the service with the standard AWS chain.

Faults, on the same deployment: S3 unplugged during an ETL run (retries, then a failure naming the bucket); then,
while the cleared run re-runs, PostgreSQL restarted under it (it recovers or fails cleanly and is cleared again);
either way nothing is published, registered or trained twice.

The walk: a token from the Airflow API; ``readmission_etl`` triggered through REST API v2 and polled to success, its
tasks spread over both workers; it hands the version to ``readmission_train``, which registers the champion; two
service replicas load it (artifacts from S3), score encounters and their prediction logs land in the bucket;
``readmission_drift`` runs on that log. Asserted on objects in the buckets and rows in the databases, not only on run
states: every validation's Data Docs page is in the bucket and the site's index lists them all, whichever worker built
it; and no task log (in the bucket or on a worker's disk) holds the S3 secret or the database password.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import pytest

from tests.integration import worker_host
from tests.pg_server import PostgresServer, free_port
from tests.redis_server import RedisServer
from tests.s3_server import REGION, S3Server
from tests.specs import READMISSION
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATA_BUCKET, ARTIFACT_BUCKET, LOG_BUCKET = "airloop-runtime", "airloop-mlflow", "airloop-logs"
WORKERS = ("worker-a", "worker-b")  # Celery workers, one task at a time each
REPLICAS = ("serving-a", "serving-b")  # prediction service replicas, each logging to S3 on its own
CONTROL = ("api-server", "scheduler", "dag-processor", "triggerer")
PREFIX = "prod"
DATABASES = ("airflow", "mlflow", "ledger")
ROWS = 3000
PREDICTIONS = 160
RUN_TIMEOUT_S = 600
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def wait_for(check: Callable[[], Any], what: str, timeout: float, logs: list[Path], every: float = 2.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` and the tail of each log."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError) as error:
            value, last = None, error
        if value:
            return value
        time.sleep(every)
    tails = "\n".join(f"--- {log} ---\n{tail(log)}" for log in logs)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})\n{tails}")


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else "(no log)"


@dataclass
class Stack:
    """The running deployment: URLs, credentials and where each process logs."""

    root: Path
    env: dict[str, str]
    pg: PostgresServer
    s3: S3Server
    redis: RedisServer
    db_password: str
    s3_secret: str
    airflow_url: str
    mlflow_url: str
    serving_urls: dict[str, str]
    api_key: str
    proxy: TcpProxy
    logs: dict[str, Path] = field(default_factory=dict)
    supervisor: Any = None
    # How each process was started (command, environment, working directory), to start it again after a crash.
    launches: dict[str, tuple[list[str], dict[str, str], Path | None]] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> Any:
        """Start a process under the supervisor, logging to ``logs[name]``; its service."""
        self.launches[name] = (command, env, cwd)
        service = self.supervisor.start(name, command, env, cwd)
        self.logs[name] = service.log
        return service

    def pod_env(self, name: str, env: dict[str, str]) -> tuple[dict[str, str], Path]:
        """``env`` with every local path (HOME, AIRFLOW_HOME, AIRLOOP_HOME, TMPDIR) in a folder of its own, which is
        also the working directory: what a process sees in a pod of its own."""
        folder = self.root / name
        paths = {"HOME": "home", "AIRFLOW_HOME": "airflow", "AIRLOOP_HOME": "scratch", "TMPDIR": "tmp"}
        for sub in paths.values():
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {**env, **{variable: str(folder / sub) for variable, sub in paths.items()}}, folder

    def worker_env(self, name: str) -> tuple[dict[str, str], Path]:
        """A Celery worker's environment (its own paths, its name as Airflow's hostname) and working directory."""
        env, folder = self.pod_env(name, self.env)
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = f"{worker_host.__name__}.{worker_host.hostname.__name__}"
        env[worker_host.VARIABLE] = name
        return env, folder

    def aws_env(self) -> dict[str, str]:
        """S3 credentials as the standard AWS chain reads them (for MLflow's server and the prediction service)."""
        keys = {"AWS_ACCESS_KEY_ID": "airloop-production", "AWS_SECRET_ACCESS_KEY": self.s3_secret}
        return {**keys, "AWS_DEFAULT_REGION": REGION}

    def database_url(self, name: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.pg.user}:{self.db_password}@{self.pg.host}:{self.pg.port}/{name}"

    def query(self, database: str, sql: str, *args: Any) -> list[tuple]:
        import psycopg2

        dsn = self.pg.dsn.replace(f"dbname={self.pg.dbname}", f"dbname={database}")
        with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.s3.client().get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]


class Airflow:
    """REST API v2 with a token from ``/auth/token``."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client(base_url=stack.airflow_url, timeout=30)
        passwords = stack.root / "airflow" / "simple_auth_manager_passwords.json.generated"
        users = json.loads(passwords.read_text())
        token = self.http.post("/auth/token", json={"username": "admin", "password": users["admin"]})
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/api/v2{path}", **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json() if response.content else None

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after"})["dag_runs"]

    def ended(self, dag_id: str, run_id: str, supervise: bool = False) -> tuple[str, list[dict[str, Any]]]:
        """Wait for the run to end: its state and its task instances. With ``supervise``, every Airflow or MLflow
        process that exits meanwhile is started again, as Kubernetes restarts a pod whose process exited."""
        logs = list(self.stack.logs.values())

        def state() -> str | None:
            if supervise:
                restart_crashed(self.stack, settle_s=0)
            found = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return found if found in ("success", "failed") else None

        state = wait_for(state, f"{dag_id} run {run_id}", RUN_TIMEOUT_S, logs, every=3)
        return state, self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def ended_or_now(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances as they are now."""
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def hosts(self, dag_id: str, run_id: str) -> dict[str, str]:
        """Where each task of the run ran: the hostname Airflow recorded (the worker's name), by task id."""
        return {t["task_id"]: t["hostname"] for t in self.ended_or_now(dag_id, run_id) if t["hostname"]}

    def finished(self, dag_id: str, run_id: str, supervise: bool = False) -> dict[str, str]:
        """Wait for the run to succeed; its task states (the test fails with them when it failed)."""
        state, tasks = self.ended(dag_id, run_id, supervise)
        states = {t["task_id"]: t["state"] for t in tasks}
        assert state == "success", f"{dag_id} {run_id} {state}: {states}; task logs under {self.stack.root / 'airflow'}"
        return states

    def task_log(self, dag_id: str, run_id: str, task_id: str, attempt: int) -> str:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{attempt}"
        return json.dumps(self.call("GET", path, params={"full_content": True}))


def _databases(pg: PostgresServer) -> None:
    import psycopg2

    conn = psycopg2.connect(pg.dsn)
    conn.autocommit = True
    with conn.cursor() as cursor:
        for name in DATABASES:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
            cursor.execute(f"CREATE DATABASE {name}")
    conn.close()


@pytest.fixture(scope="module")
def stack(postgres_server, s3_server, redis_server, tmp_path_factory) -> Iterator[Stack]:
    from airloop.cli.supervisor import Supervisor

    root = Path(tmp_path_factory.mktemp("production"))
    _databases(postgres_server)
    for bucket in (DATA_BUCKET, ARTIFACT_BUCKET, LOG_BUCKET):
        s3_server.client().create_bucket(Bucket=bucket)
    stack = Stack(
        root=root,
        env={},
        pg=postgres_server,
        s3=s3_server,
        redis=redis_server,
        # The server trusts loopback connections, so any password connects; these are the values a leak would show.
        db_password=f"pg-{secrets.token_hex(8)}",
        s3_secret=f"s3-{secrets.token_hex(12)}",
        airflow_url=f"http://127.0.0.1:{free_port()}",
        mlflow_url=f"http://127.0.0.1:{free_port()}",
        serving_urls={name: f"http://127.0.0.1:{free_port()}" for name in REPLICAS},
        api_key=secrets.token_hex(16),
        # airloop's S3 traffic goes through a proxy the fault test can unplug (MLflow's artifacts do not).
        proxy=TcpProxy(urlparse(s3_server.endpoint_url).hostname, urlparse(s3_server.endpoint_url).port).start(),
    )
    airflow_port = stack.airflow_url.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AIRLOOP_", "AWS_", "MLFLOW_"))}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "GX_ANALYTICS_ENABLED": "False",
            # S3 for tasks: credentials only in the Airflow connection storage.s3_conn_id (read with the Amazon
            # provider's hook); no AWS_* variable in Airflow's environment.
            "AIRFLOW_CONN_AIRLOOP_STORAGE": json.dumps(
                {
                    "conn_type": "aws",
                    "login": "airloop-production",
                    "password": stack.s3_secret,
                    "extra": {"endpoint_url": stack.proxy.url, "region_name": REGION},
                }
            ),
            # Airflow: metadata on PostgreSQL, the CeleryExecutor (Redis as the broker; the result backend is derived
            # from the metadata database, as with the chart), the repo's DAGs, a token-protected API.
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": stack.database_url("airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": redis_server.url(),
            # An idle worker waits on Redis for 30 s before it asks again (kombu: 1 s), so it keeps its place at the
            # head of Redis's queue of waiting clients: the next task goes to it, not to the worker that just became
            # free, and the tasks of one run alternate between the workers instead of clustering on one.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__POLLING_INTERVAL": "30",
            "AIRFLOW__CORE__PARALLELISM": str(len(WORKERS)),
            # Task logs on S3 (remote logging), as the workers share no disk with the API server; straight to the
            # S3 server, not through the proxy the fault test unplugs.
            "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
            "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{LOG_BUCKET}/airflow",
            "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "airloop_logs",
            "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "True",
            "AIRFLOW_CONN_AIRLOOP_LOGS": json.dumps(
                {
                    "conn_type": "aws",
                    "login": "airloop-production",
                    "password": stack.s3_secret,
                    "extra": {"endpoint_url": s3_server.endpoint_url, "region_name": REGION},
                }
            ),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{stack.airflow_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": airflow_port,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # airloop: the config and model specs at absolute paths, as the image's ENV sets them (a worker's working
            # directory is its own); every store remote; the local home is scratch only.
            "AIRLOOP_CONFIG": str(REPO / "config" / "airloop.yaml"),
            "AIRLOOP_MODELS__FOLDER": str(REPO / "models"),
            "AIRLOOP_HOME": str(root / "scratch"),
            "AIRLOOP_STORAGE__URL": f"s3://{DATA_BUCKET}/{PREFIX}",
            "AIRLOOP_STORAGE__S3_ENDPOINT_URL": stack.proxy.url,
            "AIRLOOP_STORAGE__S3_REGION": REGION,
            "AIRLOOP_LEDGER__URL": stack.database_url("ledger"),
            "AIRLOOP_MLFLOW__TRACKING_URI": stack.mlflow_url,
            "AIRLOOP_SERVING__PORT": stack.serving_urls[REPLICAS[0]].rsplit(":", 1)[1],
            "AIRLOOP_SERVING__API_KEY": stack.api_key,
            "AIRLOOP_SERVING__REQUEST_ID_KEY": secrets.token_hex(16),
            "AIRLOOP_SERVING__POLL_INTERVAL_S": "2",
            "AIRLOOP_MONITORING__MIN_ROWS": "100",
            "AIRLOOP_AIRFLOW__RETRY_DELAY_SCALE": "0.05",  # 30 s -> 1.5 s: the retries of the fault test, quickly
        }
    )
    stack.env = env
    mlflow_env = {**env, **stack.aws_env(), "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint_url}
    mlflow_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no huey workers: airloop runs no MLflow jobs
    import subprocess

    migrate = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    with Supervisor(root / "processes.json", root / "logs") as supervisor:
        stack.supervisor = supervisor
        mlflow_port = stack.mlflow_url.rsplit(":", 1)[1]
        mlflow_command = [
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", stack.database_url("mlflow"),
            "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}/artifacts",
            "--serve-artifacts", "--host", "127.0.0.1", "--port", mlflow_port, "--workers", "1",
        ]  # fmt: skip
        stack.start("mlflow", mlflow_command, mlflow_env)
        for component in CONTROL:
            stack.start(component, [str(BIN / "airflow"), component], env)
        for name in WORKERS:
            # One task at a time each; no log server (two on one machine would share its port): logs are on S3.
            command = [
                str(BIN / "airflow"), "celery", "worker",
                "--concurrency", "1", "--celery-hostname", name, "--skip-serve-logs",
            ]  # fmt: skip
            stack.start(name, command, *stack.worker_env(name))
        logs = list(stack.logs.values())
        wait_for(lambda: httpx.get(f"{stack.mlflow_url}/health", timeout=5).status_code == 200, "MLflow", 180, logs)
        wait_for(
            lambda: httpx.get(f"{stack.airflow_url}/api/v2/monitor/health", timeout=5).status_code == 200,
            "the Airflow API server",
            240,
            logs,
        )
        wait_for(
            lambda: (root / "airflow" / "simple_auth_manager_passwords.json.generated").is_file(),
            "the generated passwords",
            60,
            logs,
        )
        try:
            yield stack
        finally:
            stack.proxy.stop()


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def start_serving(stack: Stack, name: str) -> Any:
    """Start the serving replica ``name`` (its own port and local paths)."""
    port = stack.serving_urls[name].rsplit(":", 1)[1]
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "serving.main:create_app",
        "--host", "127.0.0.1", "--port", port, "--workers", "1", "--no-access-log",
    ]  # fmt: skip
    # Nothing is flushed before shutdown: what reaches the bucket is what SIGTERM's graceful shutdown wrote.
    # The service is no Airflow task: its S3 credentials come from the standard AWS chain (here its environment).
    env = {**stack.env, **stack.aws_env(), "AIRLOOP_SERVING__LOG_FLUSH_INTERVAL_S": "3600"}
    env.update({"AIRLOOP_SERVING__LOG_FLUSH_ROWS": "100000", "AIRLOOP_SERVING__PORT": port})
    return stack.start(name, command, *stack.pod_env(name, env))


def remote_storage(stack: Stack) -> dict[str, Any]:
    """Settings of the runtime root in the bucket, for reading it from this process."""
    endpoint = stack.s3.endpoint_url
    return {"storage": {"url": f"s3://{DATA_BUCKET}/{PREFIX}", "s3_endpoint_url": endpoint, "s3_region": REGION}}


def test_etl_by_rest_trains_serves_from_s3_logs_to_s3_and_monitors_drift_on_postgres(stack, monkeypatch):
    from airloop.predlog import load_predictions
    from airloop.settings import Settings
    from airloop.training.features import model_inputs
    from airloop.training.handoff import training_run_id
    from airloop.usecases.readmission.synthetic import generate
    from airloop.usecases.readmission.transform import prepare

    airflow = Airflow(stack)
    for dag_id in ("readmission_etl", "readmission_train", "readmission_drift"):
        wait_for(
            lambda d=dag_id: airflow.http.get(f"/api/v2/dags/{d}").status_code == 200,
            f"{dag_id} parsed",
            180,
            list(stack.logs.values()),
        )
        airflow.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    for name in WORKERS:  # started with the stack, so ready by now as a rule (a task would wait for them in Redis)
        wait_for(
            lambda n=name: f"@{n} ready." in stack.logs[n].read_text(errors="replace"),
            name,
            120,
            list(stack.logs.values()),
        )

    # ETL through the REST API: the batch is published to S3 and handed to training exactly once.
    etl_run = airflow.trigger("readmission_etl", {"rows": ROWS, "seed": 11})
    etl_tasks = airflow.finished("readmission_etl", etl_run)
    assert set(etl_tasks.values()) <= {"success", "skipped"}, etl_tasks
    # One run, both workers: each stage found what the one before wrote on the other machine (staging on S3).
    etl_hosts = airflow.hosts("readmission_etl", etl_run)
    assert set(etl_hosts.values()) == set(WORKERS), etl_hosts
    # The workers' results went through Celery's result backend: the metadata database on PostgreSQL.
    ((done,),) = stack.query("airflow", "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
    assert done >= len(etl_hosts), done
    datasets = stack.objects(DATA_BUCKET, f"{PREFIX}/datasets/")
    manifests = [k for k in datasets if k.endswith("/_MANIFEST.json")]
    assert len(manifests) == 1, datasets
    version = manifests[0].split("/")[-2]
    assert any(k.endswith(".parquet") and f"/{version}/" in k for k in datasets), datasets
    train_run = training_run_id(Settings(), version)  # the run id the hand-off derives from the version
    wait_for(
        lambda: [r["dag_run_id"] for r in airflow.runs("readmission_train")] == [train_run],
        f"readmission_train run {train_run}, triggered once",
        120,
        list(stack.logs.values()),
    )
    train_tasks = airflow.finished("readmission_train", train_run)
    assert train_tasks["register"] == "success", train_tasks
    train_hosts = airflow.hosts("readmission_train", train_run)
    assert set(train_hosts.values()) == set(WORKERS), train_hosts

    # Data Docs, built by whichever worker validated: each validation's result and page are in the bucket, and the
    # site's index (written last by one worker) lists the validations of both.
    results = [k for k in stack.objects(DATA_BUCKET, f"{PREFIX}/validations/readmission_") if k.endswith(".json")]
    assert len(results) == 3, results  # raw and features in the ETL run, features again in training
    site = stack.objects(DATA_BUCKET, f"{PREFIX}/data_docs/")
    index = unquote(
        stack.s3.client().get_object(Bucket=DATA_BUCKET, Key=f"{PREFIX}/data_docs/index.html")["Body"].read().decode()
    )
    for key in results:
        page = "validations/" + key.removeprefix(f"{PREFIX}/validations/").removesuffix(".json") + ".html"
        assert f"{PREFIX}/data_docs/{page}" in site, (page, site)
        assert page in index, (page, {**etl_hosts, **train_hosts})

    # The registry on PostgreSQL, the model's files in the artifact bucket.
    alias = "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = %s"
    champion = stack.query("mlflow", alias, "readmission", "champion")
    assert champion == [(1,)]
    (source,) = stack.query("mlflow", "SELECT source FROM model_versions WHERE name = %s", "readmission")[0]
    artifacts = stack.objects(ARTIFACT_BUCKET, "artifacts/")
    assert any(k.endswith("/MLmodel") for k in artifacts), artifacts[:20]
    decided = stack.query("ledger", "SELECT kind, outcome, outcome_detail FROM decisions ORDER BY id")
    assert decided == [("dataset_published", "training_started", train_run), ("model_registered", "done", None)]
    runs = stack.query("airflow", "SELECT dag_id, state FROM dag_run WHERE dag_id LIKE 'readmission_%%'")
    assert ("readmission_etl", "success") in runs and ("readmission_train", "success") in runs, runs

    # Two replicas load the champion through the MLflow server (artifacts from S3) and log to S3, each on its own.
    services = {name: start_serving(stack, name) for name in REPLICAS}
    logs = list(stack.logs.values())
    for name, url in stack.serving_urls.items():
        wait_for(lambda u=url: httpx.get(f"{u}/ready", timeout=5).status_code == 200, f"{name} ready", 180, logs)
    frame = prepare(generate(PREDICTIONS, seed=12))
    records = model_inputs(READMISSION, frame).to_dict("records")
    answered = []
    headers = {"X-API-Key": stack.api_key}
    clients = [httpx.Client(base_url=url, timeout=30, headers=headers) for url in stack.serving_urls.values()]
    for number, start in enumerate(range(0, PREDICTIONS, 20)):  # the chunks alternate, as a load balancer would
        chunk = [{**r, "entity_id": str(i)} for i, r in enumerate(records[start : start + 20], start)]
        response = clients[number % len(clients)].post("/v1/predict", json={"records": chunk})
        assert response.status_code == 200, response.text
        assert {p["model_version"] for p in response.json()["predictions"]} == {"1"}
        answered += [p["request_id"] for p in response.json()["predictions"]]
    for client in clients:
        client.close()
    assert stack.objects(DATA_BUCKET, f"{PREFIX}/predictions/") == []  # all still buffered in the replicas

    # SIGTERM (what Kubernetes sends) loses nothing: each replica's shutdown flushes every buffered row to the bucket.
    for service in services.values():
        os.killpg(service.group, signal.SIGTERM)
    for name, service in services.items():
        code = service.process.wait(timeout=60)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: the exit status says "terminated by
        # SIGTERM".
        assert code in (0, -signal.SIGTERM), f"{name} exited with {code}:\n{tail(service.log, 15)}"
        assert "Application shutdown complete." in service.log.read_text(), tail(service.log, 15)
    parts = [k for k in stack.objects(DATA_BUCKET, f"{PREFIX}/predictions/") if k.endswith(".parquet")]
    assert parts and all("/date=" in k and "/hour=" in k and "/part-" in k for k in parts), parts
    writers = {k.rsplit("/part-", 1)[1].rsplit("-", 1)[0] for k in parts}  # part-<writer id>-<uuid>.parquet
    assert len(writers) == len(REPLICAS), parts
    for name, value in stack.aws_env().items():
        monkeypatch.setenv(name, value)
    logged = load_predictions(Settings(**remote_storage(stack)).layout.predictions(), *EVER, columns=["request_id"])
    assert sorted(logged["request_id"]) == sorted(answered)

    # The drift DAG reads that log from S3, publishes its report there and its verdict in the ledger.
    drift_run = airflow.trigger("readmission_drift", {})
    drift_tasks = airflow.finished("readmission_drift", drift_run)
    assert drift_tasks["compare"] == "success", drift_tasks
    verdict = "SELECT payload::json ->> 'rows', outcome FROM decisions WHERE kind = %s"
    verdicts = stack.query("ledger", verdict, "drift_verdict")
    why = stack.query("ledger", "SELECT payload FROM decisions WHERE kind = %s", "drift_verdict")
    assert verdicts == [(str(PREDICTIONS), "no_action")], (verdicts, str(why)[:3000])
    reports = stack.objects(DATA_BUCKET, f"{PREFIX}/reports/")
    assert any(k.endswith(".html") for k in reports) and any(k.endswith(".json") for k in reports), reports

    # No secret in any task log (in the log bucket, or left on a worker's disk) or service log.
    task_logs = stack.objects(LOG_BUCKET)
    assert any(f"dag_id=readmission_etl/run_id={etl_run}/" in k for k in task_logs), task_logs[:20]
    secrets_ = (stack.s3_secret, stack.db_password)
    leaks = [
        key
        for key in task_logs
        if any(s in stack.s3.client().get_object(Bucket=LOG_BUCKET, Key=key)["Body"].read().decode() for s in secrets_)
    ]
    logged = [*stack.root.glob("*/logs/**/*"), *stack.root.glob("*/airflow/logs/**/*"), *stack.logs.values()]
    leaks += [str(p) for p in logged if p.is_file() and any(s in p.read_text(errors="replace") for s in secrets_)]
    assert not leaks, f"secrets written to {leaks}"
    assert source.startswith(("models:/", "mlflow-artifacts:/")), source  # served by the MLflow server from S3


def test_s3_outage_then_a_postgresql_restart_fail_or_recover_cleanly_and_the_rerun_duplicates_nothing(stack):
    import subprocess

    # After the walk above: one dataset version, one model version, one training run.
    airflow = Airflow(stack)
    manifests = sorted(k for k in stack.objects(DATA_BUCKET, f"{PREFIX}/datasets/") if k.endswith("_MANIFEST.json"))
    versions = stack.query("mlflow", "SELECT name, version FROM model_versions")
    trainings = [r["dag_run_id"] for r in airflow.runs("readmission_train")]

    stack.proxy.stop()  # the S3 endpoint refuses every connection
    try:
        run = airflow.trigger("readmission_etl", {"rows": ROWS, "seed": 11})  # the same batch as before
        state, tasks = airflow.ended("readmission_etl", run)
    finally:
        stack.proxy.start()

    assert state == "failed"
    (failed,) = [t for t in tasks if t["state"] == "failed"]
    assert failed["try_number"] == 3, failed  # the first try and airflow.retries (2) retries
    text = airflow.task_log("readmission_etl", run, failed["task_id"], 3)
    assert "AWS Error NETWORK_CONNECTION" in text and f"in bucket '{DATA_BUCKET}'" in text, text[-3000:]
    assert f"readmission_etl.{failed['task_id']} (try 3) failed: OSError" in text, text[-3000:]

    # S3 is back: the failed tasks are cleared and run again, and PostgreSQL (Airflow's metadata, the ledger, MLflow's
    # store) restarts while one of them runs. The run recovers, or fails cleanly and is cleared once more.
    clear = {"dag_run_id": run, "only_failed": True, "dry_run": False, "reset_dag_runs": True}
    airflow.call("POST", "/dags/readmission_etl/clearTaskInstances", json=clear)
    wait_for(  # a task running (or, on a very fast machine, the run already over: then the restart comes after it)
        lambda: any(t["state"] in ("running", "success") for t in airflow.ended_or_now("readmission_etl", run)),
        "a running task of the cleared readmission_etl run",
        120,
        list(stack.logs.values()),
        every=0.5,
    )
    log = str(stack.pg.root / "server.log")  # without -l the server would keep our stdout pipe open
    restart = [str(stack.pg.bindir / "pg_ctl"), "-D", str(stack.pg.datadir), "-l", log, "-m", "fast", "-w", "restart"]
    done = subprocess.run(_as_postgres(restart), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    restarted = restart_crashed(stack)  # what Kubernetes does for a pod whose process exited
    # A process may also lose its database later, under load: keep restarting whatever exits while the run goes on.
    state, _ = airflow.ended("readmission_etl", run, supervise=True)
    if state == "failed":
        airflow.call("POST", "/dags/readmission_etl/clearTaskInstances", json=clear)
    airflow.finished("readmission_etl", run, supervise=True)
    print(f"after the PostgreSQL restart: the run first ended {state}; components restarted: {restarted or 'none'}")

    # The batch is the one already published: nothing new anywhere.
    again = sorted(k for k in stack.objects(DATA_BUCKET, f"{PREFIX}/datasets/") if k.endswith("_MANIFEST.json"))
    assert again == manifests
    assert stack.query("mlflow", "SELECT name, version FROM model_versions") == versions
    assert [r["dag_run_id"] for r in airflow.runs("readmission_train")] == trainings


def _as_postgres(command: list[str]) -> list[str]:
    from tests.pg_server import _as_system_user

    return _as_system_user(command)


def restart_crashed(stack: Stack, settle_s: float = 5) -> list[str]:
    """Start again every Airflow or MLflow process that exited (a crashed pod is restarted); their names."""
    time.sleep(settle_s)  # give a process that lost its database a moment to exit
    restarted = []
    latest = {s.name: s for s in stack.supervisor.services}  # a restart is appended
    for service in latest.values():
        if not service.name.startswith("serving") and service.process.poll() is not None:
            stack.start(service.name, *stack.launches[service.name])
            restarted.append(service.name)
    return restarted
