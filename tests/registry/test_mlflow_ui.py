"""The MLflow UI as an ML team sees it, in headless Chromium against a real ``mlflow server``: the training
experiment opens on its runs (not 3.17's GenAI view), a run shows its metrics, and the registered model its
description."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from airloop.registry.client import connect, describe_model, ui_link
from airloop.settings import Settings
from tests.browser import page_text
from tests.pg_server import free_port
from tests.specs import READMISSION

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A registry with one training run (metrics, a plot) and a described model, served by ``mlflow server``."""
    home = tmp_path_factory.mktemp("mlflow-ui")
    settings = Settings(home=home)
    client = connect(settings, create_experiment=True)
    x = np.random.default_rng(0).normal(size=(40, 2))
    with mlflow.start_run(run_name="train-ui-check") as run:
        mlflow.log_metrics({"test_roc_auc": 0.734, "test_log_loss": 0.321})
        mlflow.log_text("plot", "plots/roc_curve.txt")
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, x[:, 0] > 0), name="model", pip_requirements=["x"])
    mlflow.register_model(info.model_uri, "readmission")
    describe_model(client, "readmission", READMISSION)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment).experiment_id
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--backend-store-uri", settings.tracking_uri, "--default-artifact-root", settings.artifact_location,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = home / "mlflow.log"
    with log.open("wb") as out:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no huey job workers
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)
        yield base, experiment, run.info.run_id
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_training_experiment_opens_on_its_runs_not_the_genai_view(ui):
    base, experiment, _ = ui

    text = page_text(ui_link(base, experiment))

    assert text.startswith("Runs - Experiment"), text[:300]
    assert "train-ui-check" in text and "1 matching run" in text, text[:1500]
    assert "Token Usage" not in text and "Tokens per Trace" not in text  # the GenAI overview


def test_a_training_run_shows_its_metrics(ui):
    base, experiment, run_id = ui

    text = page_text(ui_link(base, experiment, run_id))

    assert "Metrics (2)" in text and "test_roc_auc 0.734" in text and "test_log_loss 0.321" in text


def test_the_registered_model_says_what_it_is_and_where_the_decision_history_is(ui):
    base, _, _ = ui

    text = page_text(f"{base}/#/models/readmission?workflowType=machine_learning")

    assert "30-day hospital readmission risk" in text and "python -m airloop history" in text
