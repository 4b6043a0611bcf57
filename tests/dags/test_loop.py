"""The loop scenario: a stream of batches through the real ETL, predictions through the real serving app, outcomes back
through /v1/feedback, the DAGs run with dag.test(): no drift before the drift, drift within one batch, one retrain, a
challenger in A/B, promoted by the evaluation with no human step, better than the old champion on post-drift data and
close to an oracle, every step in the decision history."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.champion import settings_env
from tests.dags.conftest import dag_runs, delete_runs, run_dag
from tests.specs import READMISSION

pytestmark = pytest.mark.dag

ROWS = 6000  # generated per batch, nearly all published: enough that 65% of one batch trains near the oracle
UNDRIFTED = 1  # batches 1..k (the demo streams two; one no-drift verdict before the drift is the point here)
DRIFT = {"covariate_drift": 2.0, "concept_drift": 2.0}
API_KEY = "loop-test-key"
ENV = {
    "AIRLOOP_TRAINING__CANDIDATES": json.dumps({"logistic_regression": [{"C": 0.5}]}),
    "AIRLOOP_TRAINING__IMPORTANCE_ROWS": "300",
    "AIRLOOP_LOOP__SPLIT": json.dumps({"champion": 50, "challenger": 50}),
    "AIRLOOP_LOOP__MIN_ROWS": "200",
    "AIRLOOP_SERVING__API_KEY": API_KEY,
    "AIRLOOP_SERVING__PREDICT_KEY": "loop-test-predict-key",  # the stream scores with the client's key
    "AIRLOOP_SERVING__FEEDBACK_KEY": "loop-test-feedback-key",  # and sends outcomes with the outcome system's
    "AIRLOOP_SERVING__LOG_FLUSH_INTERVAL_S": "0.2",
    "AIRLOOP_SERVING__POLL_INTERVAL_S": "3600",
}


@pytest.fixture(scope="module")
def env(airflow_db, tmp_path_factory):
    with settings_env({**ENV, "AIRLOOP_HOME": str(tmp_path_factory.mktemp("loop-home"))}) as settings:
        yield settings


def publish(seed: int, **drift: float) -> str:
    """One batch through readmission_etl (dag.test); returns the published version."""
    from airloop.ledger import Kind, ledger
    from airloop.settings import get_settings

    states = run_dag("readmission_etl", {"rows": ROWS, "seed": seed, **drift})
    assert states["publish"] == "success", states
    return ledger(get_settings()).rows(kind=Kind.DATASET_PUBLISHED)[0].payload["version"]


def serve(client, settings, version: str) -> dict[str, int]:
    """Every encounter of a published batch to /v1/predict, then its outcome to /v1/feedback, as the demo does."""
    from airloop.cli.loop_demo import stream

    return stream(settings, version, client)


def reload(client) -> dict:
    response = client.post("/v1/reload", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200, response.text
    return client.get("/v1/models").json()


def latest(settings, kind: str):
    from airloop.ledger import ledger

    return ledger(settings).rows(kind=kind)[0]


def test_drift_retrain_ab_promotion_loop(env):
    from fastapi.testclient import TestClient
    from sklearn.metrics import roc_auc_score

    from airloop import history
    from airloop.ledger import Kind, Resolution
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias
    from airloop.training import features
    from airloop.training.model_io import load_sklearn_model
    from airloop.usecases.readmission import transform as tf
    from airloop.usecases.readmission.synthetic import generate
    from serving.main import create_app

    settings = env
    delete_runs("readmission_retrain")
    first = publish(seed=500)
    assert run_dag("readmission_train", {"dataset_version": first})["register"] == "success"
    client_mlflow = connect(settings)
    old = str(client_mlflow.get_model_version_by_alias("readmission", Alias.CHAMPION).version)
    timeline = []

    with TestClient(create_app(settings)) as client:
        for batch in range(1, UNDRIFTED + 1):
            version = publish(seed=500 + batch)
            served = serve(client, settings, version)
            run_dag("readmission_drift", {}, run_after=datetime.now(UTC))
            verdict = latest(settings, Kind.DRIFT_VERDICT)
            timeline.append((batch, verdict.payload["verdict"], verdict.payload["drifted_share"], served))
            assert verdict.payload["verdict"] == "no_drift", timeline

        drifted = publish(seed=600, **DRIFT)
        serve(client, settings, drifted)
        states = run_dag("readmission_drift", {}, run_after=datetime.now(UTC))
        verdict = latest(settings, Kind.DRIFT_VERDICT)
        timeline.append((UNDRIFTED + 1, verdict.payload["verdict"], verdict.payload["drifted_share"], {}))
        assert verdict.payload["verdict"] == "drift", timeline  # within one batch of the drift
        assert states["trigger_retrain"] == "success" and verdict.outcome == Resolution.RETRAIN_STARTED
        assert list(dag_runs("readmission_retrain")) == [verdict.outcome_detail]  # one retrain

        window = verdict.payload["window"]
        conf = {"verdict_key": verdict.key, "verdict_id": verdict.id, "model_version": old}
        conf.update(window_start=window["start"], window_end=window["end"])  # as the drift DAG's trigger sends it
        states = run_dag("readmission_retrain", conf)
        assert states["start_experiment"] == "success", states
        retrain = latest(settings, Kind.RETRAIN)
        assert retrain.outcome == "experiment_started" and retrain.payload["verdict_key"] == verdict.key
        new = str(client_mlflow.get_model_version_by_alias("readmission", Alias.CHALLENGER).version)
        models = reload(client)
        assert set(models["models"]) == {Alias.CHAMPION.value, Alias.CHALLENGER.value}
        assert models["routing"]["weights"] == {"champion": 50.0, "challenger": 50.0}

        promoted = None
        for batch in range(UNDRIFTED + 2, UNDRIFTED + 5):
            served = serve(client, settings, publish(seed=600 + batch, **DRIFT))
            states = run_dag("readmission_ab_evaluate", {}, run_after=datetime.now(UTC))
            evaluation = latest(settings, Kind.EVALUATION)
            timeline.append((batch, evaluation.payload["action"], evaluation.payload["reason"], served))
            if states.get("promote") == "success":
                promoted = batch
                break
            assert evaluation.payload["action"] == "continue", timeline
        assert promoted is not None, timeline
        assert states["approve"] == "skipped"  # no human step: loop.require_approval is false

        models = reload(client)
        assert models["models"][Alias.CHAMPION.value]["version"] == new
        assert models["routing"]["weights"] == {"champion": 100.0, "challenger": 0.0}

    # Better than the old champion on post-drift data, and close to an oracle trained on post-drift data directly.
    holdout = tf.prepare(generate(20_000, seed=999, **DRIFT))
    x, y = features.model_inputs(READMISSION, holdout), holdout["readmitted_30d"].to_numpy()
    # The oracle: the same candidate fitted on every post-drift labelled row there was at retrain time, no hold-out.
    from airloop.data.store import dataset_store

    post = dataset_store(settings).load(drifted)
    oracle = features.make_pipeline(READMISSION, "logistic_regression", {"C": 0.5}, 42).fit(
        features.model_inputs(READMISSION, post), post["readmitted_30d"].to_numpy()
    )
    auc = {
        name: roc_auc_score(y, model.predict_proba(x)[:, 1])
        for name, model in (
            ("old", load_sklearn_model(f"models:/readmission/{old}")),
            ("new", load_sklearn_model(f"models:/readmission/{new}")),
            ("oracle", oracle),
        )
    }
    assert auc["new"] > auc["old"] + 0.05, auc
    assert auc["new"] >= auc["oracle"] - 0.01, auc

    kinds = [r.kind for r in history.rows(settings)]
    for kind in (Kind.DRIFT_VERDICT, Kind.RETRAIN, Kind.EXPERIMENT_STARTED, Kind.EVALUATION, Kind.PROMOTION):
        assert kind in kinds, kinds
    assert kinds.count(Kind.RETRAIN) == 1
    assert history.state_at(settings, datetime.now(UTC)).aliases[Alias.CHAMPION.value] == new
