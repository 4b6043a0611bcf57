"""The second model, end to end, beside the first: churn (``models/churn.yaml``, a spec with no code of its own) goes
through its own ETL → gate → train → serve → drift → retrain → A/B → promote with dag.test() and the real service,
in the same Airflow, registry, ledger and storage as readmission, whose champion, aliases, routing, ledger rows and
logs stay exactly as they were."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.champion import register_champion, settings_env
from tests.dags.conftest import dag_runs, delete_runs, run_dag

pytestmark = pytest.mark.dag

ROWS = 5000  # generated per batch; the spec filters out ~2% (staff test accounts)
DRIFT = {"covariate_drift": 2.0, "concept_drift": 2.0}
API_KEY = "churn-loop-key"
ENV = {
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
    with settings_env({**ENV, "AIRLOOP_HOME": str(tmp_path_factory.mktemp("churn-home"))}) as settings:
        yield settings


def readmission_champion() -> str:
    """A readmission champion registered by its pipeline's own stages (its DAGs are tested in test_loop.py)."""
    from airloop.settings import get_settings

    return register_champion(get_settings("readmission"), rows=3000)


def snapshot(name: str) -> dict:
    """Everything of model ``name`` another model's loop must not touch: aliases and tags of its versions, its live
    routing, its ledger rows, the files under its log, report and staging folders."""
    from airloop.ledger import ledger
    from airloop.registry.client import connect
    from airloop.settings import get_settings

    settings = get_settings(name)
    client = connect(settings)
    model = client.get_registered_model(name)
    versions = {v.version: dict(v.tags) for v in client.search_model_versions(f"name='{name}'")}
    layout = settings.layout
    reports = layout.reports().child(name)  # one reports root; each model's reports in a folder of its name
    folders = (layout.predictions(), layout.feedback(), layout.errors(), reports, layout.baselines())
    return {
        "aliases": dict(model.aliases),
        "tags": dict(model.tags),
        "versions": versions,
        "ledger": [(r.id, r.key, r.outcome) for r in ledger(settings).rows()],
        "files": sorted(f for folder in folders if folder.exists() for f in folder.walk_files()),
    }


def publish(seed: int, **drift: float) -> str:
    """One batch through churn_etl (dag.test); returns the published version."""
    from airloop.ledger import Kind, ledger
    from airloop.settings import get_settings

    states = run_dag("churn_etl", {"rows": ROWS, "seed": seed, **drift})
    assert states["publish"] == "success", states
    return ledger(get_settings("churn")).rows(kind=Kind.DATASET_PUBLISHED)[0].payload["version"]


def publish_by_stages(seed: int, **drift: float) -> str:
    """One more batch through the very stages churn_etl's tasks call (its DAG already ran twice here; dag.test costs
    seconds per task)."""
    from airloop import etl
    from airloop.settings import get_settings

    settings, run_id = get_settings("churn"), f"stages-{seed}"
    raw = etl.extract(settings, run_id, {"rows": ROWS, "seed": seed, **drift})
    checks = [etl.validate_raw(settings, run_id)]
    etl.transform(settings, run_id)
    checks.append(etl.validate_features(settings, run_id))
    return etl.publish(settings, raw["source"], checks, run_id).version


def latest(settings, kind: str):
    from airloop.ledger import ledger

    return ledger(settings).rows(kind=kind)[0]


def test_churn_runs_its_whole_loop_and_leaves_readmission_untouched(env):
    from fastapi.testclient import TestClient

    from airloop import history
    from airloop.cli.loop_demo import stream
    from airloop.ledger import Kind, Resolution
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias
    from airloop.settings import get_settings
    from serving.main import create_app

    readmission_champion()
    before = snapshot("readmission")
    settings = get_settings("churn")
    assert settings.mlflow.model_name == "churn" and settings.data.dataset_name == "churn"

    delete_runs("churn_retrain")
    first = publish(seed=100)
    states = run_dag("churn_train", {"dataset_version": first})
    assert states["register"] == "success", states
    registry = connect(settings)
    old = str(registry.get_model_version_by_alias("churn", Alias.CHAMPION).version)
    signature = registry.get_model_version("churn", old)
    assert signature.tags["airloop.dataset_version"] == first

    with TestClient(create_app(get_settings())) as client:  # one service, every model (readmission by default)
        # Restraint: an undrifted batch raises no alarm.
        stream(settings, publish_by_stages(seed=101), client)
        run_dag("churn_drift", {}, run_after=datetime.now(UTC))
        assert latest(settings, Kind.DRIFT_VERDICT).payload["verdict"] == "no_drift"

        drifted = publish(seed=200, **DRIFT)
        stream(settings, drifted, client)
        states = run_dag("churn_drift", {}, run_after=datetime.now(UTC))
        verdict = latest(settings, Kind.DRIFT_VERDICT)
        assert verdict.payload["verdict"] == "drift", verdict.payload
        assert states["trigger_retrain"] == "success" and verdict.outcome == Resolution.RETRAIN_STARTED
        assert list(dag_runs("churn_retrain")) == [verdict.outcome_detail]

        window = verdict.payload["window"]
        conf = {"verdict_key": verdict.key, "verdict_id": verdict.id, "model_version": old}
        conf.update(window_start=window["start"], window_end=window["end"])
        assert run_dag("churn_retrain", conf)["start_experiment"] == "success"
        new = str(registry.get_model_version_by_alias("churn", Alias.CHALLENGER).version)
        assert client.post("/v1/models/churn/reload", headers={"X-API-Key": API_KEY}).status_code == 200
        hosted = client.get("/v1/models").json()["hosted"]
        assert set(hosted) == {"churn", "readmission"}, hosted

        promoted = False
        for batch in range(201, 204):
            stream(settings, publish_by_stages(seed=batch, **DRIFT), client)
            states = run_dag("churn_ab_evaluate", {}, run_after=datetime.now(UTC))
            if states.get("promote") == "success":
                promoted = True
                break
            assert latest(settings, Kind.EVALUATION).payload["action"] == "continue"
        assert promoted, latest(settings, Kind.EVALUATION).payload

    assert str(registry.get_model_version_by_alias("churn", Alias.CHAMPION).version) == new
    kinds = [r.kind for r in history.rows(settings)]
    for kind in (Kind.DRIFT_VERDICT, Kind.RETRAIN, Kind.EXPERIMENT_STARTED, Kind.EVALUATION, Kind.PROMOTION):
        assert kind in kinds, kinds
    # Isolation: readmission's registry entry, routing, ledger and logs are exactly as they were.
    assert snapshot("readmission") == before
    assert not [r for r in history.rows(get_settings("readmission")) if "churn" in r.key]
