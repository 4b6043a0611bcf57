"""A real MLflow registry for the serving tests: two models trained by airloop's own code on synthetic encounters.

Version 1 (HistGradientBoosting) is the champion and version 2 (LogisticRegression) the challenger, so the two
variants give different probabilities. Both are trained and registered once per session, in a SQLite store under
pytest's temp folder; a test that moves an alias puts it back. ``tests/training/test_compiled.py`` reuses the same
registry through ``session_registry``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.specs import READMISSION

NAME = "readmission"
CHAMPION_VERSION, CHALLENGER_VERSION = "1", "2"
THRESHOLDS = {CHAMPION_VERSION: 0.3, CHALLENGER_VERSION: 0.2}
# The champion's threshold was chosen as F1-optimal (no operating point recorded: a version older than them); the
# challenger's catches 80% of readmissions.
OPERATING_POINTS = {CHALLENGER_VERSION: '{"kind": "recall", "target": 0.8}'}
API_KEY = "test-admin-key"
MLFLOW = Path(sys.executable).with_name("mlflow")


@dataclass(frozen=True)
class TrainedRegistry:
    """Where the session's registry lives and request records the models have not seen."""

    home: Path
    tracking_uri: str
    records: tuple[dict[str, Any], ...]

    def client(self):
        """A client bound to this registry (no process-wide MLflow URIs involved)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def pipeline(self, version: str):
        """The registered scikit-learn Pipeline of ``version``, loaded back from the registry."""
        return _load(self.tracking_uri, version)


@functools.cache
def _load(tracking_uri: str, version: str):
    import mlflow
    from mlflow import MlflowClient

    uri = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version_download_uri(
        NAME, version
    )
    return mlflow.sklearn.load_model(uri)


def encounters(rows: int, seed: int):
    """Model inputs (raw encounter records) and target of synthetic encounters, prepared as the ETL publishes them."""
    from airloop.training import features
    from airloop.usecases.readmission.synthetic import generate
    from airloop.usecases.readmission.transform import prepare

    frame = prepare(generate(rows, seed))
    return features.model_inputs(READMISSION, frame), features.target(READMISSION, frame)


@functools.cache
def _train_and_register(home: Path) -> TrainedRegistry:
    import mlflow
    from mlflow.models import infer_signature
    from threadpoolctl import threadpool_limits

    from airloop.explanations import remember_training_rows
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias, VersionRecord
    from airloop.settings import Settings
    from airloop.training import features

    settings = Settings(home=home)
    client = connect(settings, create_experiment=True)
    x, y = encounters(3000, seed=1)
    candidates = [("hist_gradient_boosting", {"max_iter": 30}), ("logistic_regression", {})]
    for (kind, params), version in zip(candidates, (CHAMPION_VERSION, CHALLENGER_VERSION), strict=True):
        with threadpool_limits(1):  # OpenMP spin-waits crawl when the 2 cores are shared with other processes
            pipeline = features.make_pipeline(READMISSION, kind, params, seed=0).fit(x, y)
            remember_training_rows(pipeline, x)  # as training does: the linear version explains with a band
        example = x.head(5)
        with mlflow.start_run(run_name=kind):
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=infer_signature(example, pipeline.predict_proba(example)[:, 1]),
                pyfunc_predict_fn="predict_proba",
                skops_trusted_types=features.skops_trusted_types(pipeline),
                pip_requirements=features.pip_requirements(),
            )
        tags = VersionRecord(threshold=THRESHOLDS[version], operating_point=OPERATING_POINTS.get(version, "")).to_tags()
        registered = mlflow.register_model(info.model_uri, NAME, tags=tags)
        assert str(registered.version) == version
    client.set_registered_model_alias(NAME, Alias.CHAMPION, CHAMPION_VERSION)
    client.set_registered_model_alias(NAME, Alias.CHALLENGER, CHALLENGER_VERSION)
    requests, _ = encounters(600, seed=2)
    return TrainedRegistry(home, settings.tracking_uri, tuple(requests.to_dict("records")))


def session_registry(tmp_path_factory: pytest.TempPathFactory) -> TrainedRegistry:
    """The session's registry, trained on first use (shared by every test module that asks)."""
    return _train_and_register(tmp_path_factory.getbasetemp() / "registry")


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> TrainedRegistry:
    return session_registry(tmp_path_factory)


def register_copy(registry: TrainedRegistry, name: str, threshold: float, source: str | None = None) -> str:
    """Register model ``name`` in the session registry with one champion version: readmission's champion artifact
    (nothing trained again) or the artifact at ``source``, with its own ``threshold``. Its version number."""
    return _register_copy(registry.tracking_uri, name, threshold, source)


@functools.cache
def _register_copy(tracking_uri: str, name: str, threshold: float, source: str | None) -> str:
    import mlflow
    from mlflow import MlflowClient

    from airloop.registry.contract import Alias, VersionRecord

    # MLflow resolves a logged model's source through the process-wide URIs, which an earlier test may have pointed at
    # a server it has since stopped.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    champion = client.get_model_version(NAME, CHAMPION_VERSION)
    client.create_registered_model(name)
    version = client.create_model_version(
        name,
        source=source or champion.source,
        run_id=None if source else champion.run_id,
        tags=VersionRecord(threshold=threshold).to_tags(),
    ).version
    client.set_registered_model_alias(name, Alias.CHAMPION, str(version))
    return str(version)


def write_spec(folder: Path, name: str, extra: str = "") -> Path:
    """``models/readmission.yaml`` copied into ``folder`` as the spec of model ``name`` (``extra`` YAML appended)."""
    text = (Path(__file__).resolve().parents[2] / "models" / f"{NAME}.yaml").read_text()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(re.sub(r"^name: .*$", f"name: {name}", text, count=1, flags=re.MULTILINE) + extra)
    return path


# Scoring, feedback and history tests run as behind a gateway that authenticates callers (``serving.open_scopes``);
# tests/serving/test_auth.py and the integration suite run with the default, where every one of them needs its key.
OPEN_SCOPES = ["predict", "feedback", "history"]


def app_settings(
    home: Path,
    registry: TrainedRegistry,
    mlflow: dict[str, Any] | None = None,
    security: dict[str, Any] | None = None,
    **serving: Any,
):
    """Settings for one app: the readmission model alone (whatever other specs the repository gains), its own home
    (prediction and feedback logs), the session registry unless ``mlflow`` says otherwise, the admin key set, the
    client scopes open (``OPEN_SCOPES``), and ``serving`` overrides."""
    from airloop.settings import Settings

    return Settings(
        model=NAME,
        models={"serve": [NAME]},
        home=home,
        mlflow=mlflow or {"tracking_uri": registry.tracking_uri, "registry_uri": registry.tracking_uri},
        serving={"api_key": API_KEY, "open_scopes": OPEN_SCOPES, **serving},
        **({"security": security} if security else {}),
    )


@pytest.fixture
def make_settings(tmp_path, registry):
    """``app_settings`` with this test's tmp_path as home; a live experiment the test recorded is removed after it."""
    from airloop.registry.contract import Tag

    yield functools.partial(app_settings, tmp_path / "home", registry)
    client = registry.client()
    if Tag.ROUTING in client.get_registered_model(NAME).tags:
        client.delete_registered_model_tag(NAME, Tag.ROUTING)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MlflowServer:
    """A real ``mlflow server`` subprocess on the session registry's SQLite store."""

    process: subprocess.Popen
    url: str
    log: Path

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}: {self.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"mlflow server at {self.url} not up after {timeout} s: {self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM to the server's own process group (it runs uvicorn as a child), SIGKILL if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


@pytest.fixture
def mlflow_server(registry, tmp_path) -> Iterator[MlflowServer]:
    """Serves the session registry until the test ends (or until the test stops it)."""
    port = free_port()
    log = tmp_path / "mlflow-server.log"
    # No job runner: it starts half a dozen huey worker processes the registry API does not need.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        str(MLFLOW), "server",
        "--backend-store-uri", registry.tracking_uri,
        "--default-artifact-root", (registry.home / "mlflow" / "artifacts").as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = MlflowServer(process, f"http://127.0.0.1:{port}", log)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RunningApp:
    """The app served by a real uvicorn in a thread, on a loopback socket it was handed."""

    url: str
    server: Any
    thread: threading.Thread


@contextlib.contextmanager
def uvicorn_app(app: Any) -> Iterator[RunningApp]:
    """Serve ``app`` with uvicorn (lifespan included) until the block ends, then shut it down."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        yield RunningApp(f"http://127.0.0.1:{port}", server, thread)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
