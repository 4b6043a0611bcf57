"""Where MLflow lives: the experiments airloop makes open as classic model development in the MLflow UI, and the
registered model says what it is."""

from __future__ import annotations

import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

from airloop.registry.client import (
    CLASSIC_ML,
    EXPERIMENT_KIND_TAG,
    connect,
    describe_model,
    ensure_experiment,
    model_description,
)
from airloop.settings import Settings
from tests.specs import READMISSION


def test_training_experiment_is_created_as_classic_model_development_and_an_old_one_is_tagged(tmp_path):
    settings = Settings(home=tmp_path / "home")
    client = connect(settings, create_experiment=True)
    created = client.get_experiment_by_name(settings.mlflow.experiment)
    old = client.create_experiment("made-before-the-tag")

    assert created.tags[EXPERIMENT_KIND_TAG] == CLASSIC_ML
    assert ensure_experiment(client, "made-before-the-tag", None) == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == CLASSIC_ML


def test_registered_model_describes_itself_and_where_the_decision_history_is(tmp_path):
    settings = Settings(home=tmp_path / "home")
    client = connect(settings, create_experiment=True)
    x = np.random.default_rng(0).normal(size=(20, 2))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, x[:, 0] > 0), name="m", pip_requirements=["x"])
    mlflow.register_model(info.model_uri, "readmission")

    describe_model(client, "readmission", READMISSION)
    describe_model(client, "readmission", READMISSION)  # idempotent

    description = client.get_registered_model("readmission").description
    assert description == model_description(READMISSION)
    assert READMISSION.description in description and "`<30`" in description
    assert "python -m airloop history --model readmission" in description and "/history" in description
