"""ETL -> train end to end with dag.test() against a temporary MLflow store, then the gate's two outcomes."""

from __future__ import annotations

import json

import mlflow
import pytest

from tests.dags.conftest import load_dag, run_dag
from tests.specs import READMISSION

pytestmark = pytest.mark.dag

ARTIFACTS = {
    "baseline/baseline_stats.json",
    "validation/ge_validation_result.json",
    "plots/roc_curve.png",
    "plots/pr_curve.png",
    "plots/confusion_matrix.png",
    "plots/calibration.png",
    "plots/feature_importance.png",
}
TEST_METRICS = {f"test_{m}" for m in ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall", "f1")}


@pytest.fixture(scope="module")
def env(airflow_db, tmp_path_factory):
    """Settings and an MLflow client on this module's own runtime home."""
    import os

    from airloop.registry.client import connect
    from airloop.settings import get_settings

    old = os.environ["AIRLOOP_HOME"]
    os.environ["AIRLOOP_HOME"] = str(tmp_path_factory.mktemp("train-home"))
    # A smaller search than the shipped config: the DAG's wiring is under test here, not model quality.
    os.environ["AIRLOOP_TRAINING__CANDIDATES"] = json.dumps(
        {"hist_gradient_boosting": [{"max_iter": 60}], "logistic_regression": [{"C": 0.5}]}
    )
    os.environ["AIRLOOP_TRAINING__IMPORTANCE_ROWS"] = "300"
    get_settings.cache_clear()
    settings = get_settings()
    yield settings, connect(settings, create_experiment=True)
    os.environ["AIRLOOP_HOME"] = old
    del os.environ["AIRLOOP_TRAINING__CANDIDATES"], os.environ["AIRLOOP_TRAINING__IMPORTANCE_ROWS"]
    get_settings.cache_clear()


def publish_directly(settings, seed: int, covariate: float = 0.0, concept: float = 0.0) -> str:
    """Publish a synthetic dataset version through the ETL stages (the ETL DAG itself is tested elsewhere)."""
    from airloop import etl

    params = {"rows": 4000, "seed": seed, "covariate_drift": covariate, "concept_drift": concept}
    run_id = f"setup-{seed}"
    raw = etl.extract(settings, run_id, params)
    etl.transform(settings, run_id)
    return etl.publish(settings, raw["source"], [], run_id).version


def versions(client, name="readmission"):
    return {str(v.version): v for v in client.search_model_versions(f"name = '{name}'")}


def test_train_reads_the_asset_etl_emits_and_is_triggered_per_version(env):
    etl_dag, train_dag = load_dag("readmission_etl"), load_dag("readmission_train")

    emitted = {o.name for t in etl_dag.tasks for o in t.outlets}
    read = {i.name for t in train_dag.tasks for i in t.inlets}
    trigger = etl_dag.get_task("trigger_training")

    assert emitted == {env[0].dataset_asset}
    assert read == emitted  # lineage in the UI; the hand-off itself is the triggered run, exactly once
    assert train_dag.schedule is None
    assert trigger.trigger_dag_id == train_dag.dag_id and trigger.skip_when_already_exists


def test_etl_then_train_registers_a_champion_with_metrics_artifacts_tags_and_lineage(env):
    settings, client = env
    states = run_dag("readmission_etl", {"rows": 4000, "seed": 101})
    assert states["publish"] == "success", states
    from airloop.data.store import dataset_store

    dataset_version = dataset_store(settings).latest()

    states = run_dag("readmission_train", {"dataset_version": dataset_version})

    assert set(states.values()) == {"success"}, states
    (version,) = versions(client).values()
    tags = version.tags
    assert tags["airloop.decision"] == "champion"
    assert tags["airloop.dataset_version"] == dataset_version
    assert tags["airloop.git_commit"] and tags["airloop.decided_by"].startswith("airflow:readmission_train/")
    assert client.get_model_version_by_alias("readmission", "champion").version == version.version
    run = client.get_run(tags["airloop.training_run_id"])
    assert set(run.data.metrics) >= TEST_METRICS
    assert 0.55 < run.data.metrics["test_roc_auc"] < 0.99
    assert run.data.params["dataset_version"] == dataset_version
    listed = {a.path for d in ("baseline", "validation", "plots") for a in client.list_artifacts(run.info.run_id, d)}
    assert listed >= ARTIFACTS
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == dataset_version
    nested = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert {r.data.params["kind"] for r in nested} == {"hist_gradient_boosting", "logistic_regression"}
    # The drift reference profile is stored with the version: features, predicted probabilities, test figures.
    from airloop.monitoring.baseline import load_profile

    profile = load_profile(mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/baseline/baseline_stats.json"))
    assert profile["prediction"] is not None and profile["test_metrics"]["roc_auc"] == run.data.metrics["test_roc_auc"]
    # Judged per group: every group of the spec with its figures and counts, as an artifact and as flat metrics, and
    # the operating point the threshold was chosen at, with the version.
    by_group = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/evaluation/groups.json")
    assert set(by_group["groups"]) == {"age_band", "gender", "race", "admission_type_id"}
    assert (
        sum(level["rows"] for level in by_group["groups"]["gender"].values()) == int(run.data.params["rows_test"]) > 0
    )
    assert by_group["operating_point"] == {"kind": "f1", "target": None, "threshold": float(tags["airloop.threshold"])}
    assert 0 < run.data.metrics["group.gender.Female.roc_auc"] < 1
    assert json.loads(tags["airloop.operating_point"]) == {"kind": "f1", "target": None}
    # The registered model takes the published record as the hospital has it; the transform travels inside it.
    from airloop.training.features import model_inputs
    from airloop.training.model_io import load_sklearn_model

    uri = f"models:/readmission/{version.version}"
    assert [c.name for c in mlflow.models.get_model_info(uri).signature.inputs] == READMISSION.data.input_columns
    raw = model_inputs(READMISSION, dataset_store(settings).load(dataset_version).head(3))
    assert raw["age"].str.startswith("[").all()
    assert load_sklearn_model(uri).predict_proba(raw).shape == (3, 2)


def test_rerun_on_same_dataset_registers_nothing(env):
    settings, client = env
    from airloop.data.store import dataset_store

    before = set(versions(client))

    states = run_dag("readmission_train", {"dataset_version": dataset_store(settings).latest()})

    assert states["register"] == "success", states
    assert set(versions(client)) == before


def train_with_margin(settings, client, monkeypatch, margin: float, seed: int) -> tuple[str, dict[str, str]]:
    """Publish a drifted version, train on it with ``training.margin`` set; the new version and its tags."""
    from airloop.settings import get_settings

    dataset_version = publish_directly(settings, seed=seed, covariate=1.0, concept=0.5)
    monkeypatch.setenv("AIRLOOP_TRAINING__MARGIN", str(margin))
    get_settings.cache_clear()
    before = set(versions(client))
    try:
        states = run_dag("readmission_train", {"dataset_version": dataset_version})
    finally:
        get_settings.cache_clear()
    assert set(states.values()) == {"success"}, states
    (new,) = set(versions(client)) - before
    return new, versions(client)[new].tags


@pytest.mark.parametrize(("margin", "outcome"), [(-1.0, "challenger"), (1.0, "rejected")])
def test_drifted_data_registers_a_new_version_decided_by_the_margin(env, monkeypatch, margin, outcome):
    settings, client = env
    champion_before = client.get_model_version_by_alias("readmission", "champion").version

    new, tags = train_with_margin(settings, client, monkeypatch, margin, seed=200 + int(margin))

    assert tags["airloop.decision"] == outcome
    assert tags["airloop.champion_score"] and tags["airloop.candidate_score"]
    assert str(margin) in tags["airloop.decision_reason"]
    assert client.get_model_version_by_alias("readmission", "champion").version == champion_before
    if outcome == "challenger":
        assert str(client.get_model_version_by_alias("readmission", "challenger").version) == new


def test_a_better_model_trained_while_an_experiment_runs_is_held_and_the_experiment_is_undisturbed(env, monkeypatch):
    settings, client = env
    from airloop.experiments import lifecycle
    from airloop.experiments.live import current

    challenger = client.get_model_version_by_alias("readmission", "challenger").version  # from the test above
    lifecycle.start(settings, str(challenger), "test", {"champion": 90, "challenger": 10}, "ab")
    aliases_before, routing_before = current(settings)

    _, tags = train_with_margin(settings, client, monkeypatch, -1.0, seed=300)  # any candidate is "better"

    assert tags["airloop.decision"] == "held"
    running = f"experiment {routing_before.experiment} (ab) with challenger v{challenger} is running"
    assert running in tags["airloop.decision_reason"]
    assert current(settings) == (aliases_before, routing_before)
    lifecycle.reject(settings, "test", "end of the test's experiment")


def test_registry_dag_shows_the_state(env):
    states = run_dag("readmission_registry", {"action": "show"})

    assert states == {"apply": "success"}


def test_a_register_retried_after_a_failure_registers_no_second_version(env, monkeypatch):
    settings, client = env
    from airloop.registry import aliases
    from airloop.training import pipeline

    dataset = pipeline.load(settings, publish_directly(settings, seed=303, covariate=2.0))
    validation = pipeline.validate(settings, dataset["version"], "retry")
    split_info = pipeline.split(settings, dataset["version"], "retry")
    trained = pipeline.train(settings, dataset, split_info, validation, "retry")
    before = set(versions(client))
    real_audit = aliases.audit

    def audit_fails_once(*args, **kwargs):
        monkeypatch.setattr(aliases, "audit", real_audit)
        raise ConnectionError("registry went away after the version was created")

    monkeypatch.setattr(aliases, "audit", audit_fails_once)
    with pytest.raises(ConnectionError):
        pipeline.register(settings, dataset, split_info, trained, "test")
    retried = pipeline.register(settings, dataset, split_info, trained, "test")

    (new,) = set(versions(client)) - before
    assert retried["version"] == new and retried["created"] is False
    if retried["decision"] in ("champion", "challenger"):
        assert str(client.get_model_version_by_alias("readmission", retried["decision"]).version) == new
