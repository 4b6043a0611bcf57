"""
### readmission_train

Scheduled on the dataset Asset that `readmission_etl` emits (or triggered with a `dataset_version` param): loads the
published version, validates it with Great Expectations, splits it by patient, trains the configured candidates
(HistGradientBoosting and LogisticRegression trials as nested MLflow runs), logs metrics, plots, baseline statistics,
the validation result and the dataset lineage, registers the best model as `readmission`, and applies the gate:

- no `champion` yet → the new version becomes `champion`;
- better than the champion on the same test set by the configured margin → `challenger`;
- otherwise kept, tagged `rejected` with both scores.

Re-running for the same dataset version and configuration registers nothing new.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from airloop.dag_defaults import default_args
from airloop.settings import get_settings

DATASET = Asset(name=get_settings().dataset_asset)


@dag(
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=[DATASET],
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=default_args(),
    params={
        "dataset_version": Param(None, type=["null", "string"], description="published version; latest if empty"),
    },
    tags=["airloop", "training", "mlflow"],
)
def readmission_train():
    @task
    def load_dataset(params=None, triggering_asset_events=None) -> dict:
        from airloop.training import pipeline

        version = params.get("dataset_version")
        if not version and triggering_asset_events:
            events = triggering_asset_events.get(DATASET) or []
            version = events[-1].extra.get("version") if events else None
        return pipeline.load(get_settings(), version)

    @task
    def validate(dataset: dict, run_id=None) -> dict:
        from airloop.training import pipeline

        return pipeline.validate(get_settings(), dataset["version"], run_id)

    @task
    def split(dataset: dict, validation: dict, run_id=None) -> dict:
        from airloop.training import pipeline

        return pipeline.split(get_settings(), dataset["version"], run_id)

    @task
    def train(dataset: dict, split_info: dict, validation: dict, run_id=None) -> dict:
        from airloop.training import pipeline

        return pipeline.train(get_settings(), dataset, split_info, validation, run_id)

    @task
    def register(dataset: dict, split_info: dict, trained: dict, dag_run=None) -> dict:
        from airloop.training import pipeline

        return pipeline.register(
            get_settings(), dataset, split_info, trained, f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        )

    dataset = load_dataset()
    validation = validate(dataset)
    split_info = split(dataset, validation)
    register(dataset, split_info, train(dataset, split_info, validation))


readmission_train()
