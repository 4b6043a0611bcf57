"""readmission_batch_score run for real with dag.test(): a published dataset version scored by the champion, the
output published, the lineage run in MLflow and the batch-scores Asset event with its extra."""

from __future__ import annotations

import pytest

from tests.champion import settings_env
from tests.dags.conftest import run_dag
from tests.serving.conftest import CHAMPION_VERSION, session_registry

pytestmark = pytest.mark.dag


def test_batch_score_dag_scores_the_latest_version_with_the_champion_and_records_lineage(airflow_db, tmp_path_factory):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from mlflow import MlflowClient

    from airloop.data.store import dataset_store
    from airloop.scoring import batch
    from airloop.usecases.readmission.synthetic import generate
    from airloop.usecases.readmission.transform import prepare

    registry = session_registry(tmp_path_factory)
    env = {
        "AIRLOOP_HOME": str(tmp_path_factory.mktemp("batch-dag-home")),
        "AIRLOOP_MLFLOW__TRACKING_URI": registry.tracking_uri,
        "AIRLOOP_MLFLOW__REGISTRY_URI": registry.tracking_uri,
        "AIRLOOP_BATCH__CHUNK_ROWS": "1000",
    }
    with settings_env(env) as settings:
        frame = prepare(generate(3000, seed=41))
        version = dataset_store(settings).publish(frame, {"source": "test"}).version

        states = run_dag("readmission_batch_score", {})

        assert states == {"resolve": "success", "score": "success", "record_lineage": "success"}, states
        output = f"dataset-{version}--readmission-v{CHAMPION_VERSION}"
        metadata = batch.output_storage(settings).read_json(output, batch.METADATA_FILE)
        assert (metadata["rows"], metadata["chunks"], metadata["scorer"]) == (len(frame), 3, "compiled")
        assert len(batch.read_output(settings, output)) == len(frame)
        client = MlflowClient(tracking_uri=registry.tracking_uri)
        experiment = client.get_experiment_by_name(batch.experiment_name(settings))
        (run,) = client.search_runs([experiment.experiment_id], f"tags.`{batch.TAG_OUTPUT}` = '{output}'")
        with create_session() as session:
            event = (
                session.query(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.name == "airloop_readmission_batch_scores")
                .order_by(AssetEvent.id.desc())
                .first()
            )
            assert event.extra["mlflow_run_id"] == run.info.run_id
            assert event.extra["output"] == batch.output_storage(settings).url(output)
            assert event.extra["rows"] == len(frame) and event.extra["model_version"] == CHAMPION_VERSION
