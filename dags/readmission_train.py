"""
### readmission_train

Triggered by `readmission_etl` for each version it publishes (run id derived from the version: exactly once), by REST
or by hand with a `dataset_version` param (latest if empty). It first claims the version in the decision ledger: a
hand-off run whose version was superseded by a newer one before it started is skipped and the ledger says so.

It then loads the published version, validates it with Great Expectations, splits it by patient, trains the configured
candidates (HistGradientBoosting and LogisticRegression trials as nested MLflow runs), logs metrics, plots, the
reference profile, the validation result and the dataset lineage, registers the best model as `readmission`, and
applies the gate:

- no `champion` yet → the new version becomes `champion`;
- better than the champion on the same test set by the configured margin → `challenger`;
- otherwise kept, tagged `rejected` with both scores.

Re-running for the same dataset version and configuration registers nothing new.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from airloop.dag_defaults import default_args
from airloop.dag_tasks import train_and_register
from airloop.settings import get_settings

DATASET = Asset(name=get_settings().dataset_asset)


@dag(
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,  # triggered per version by readmission_etl; the Asset is an inlet, for lineage and the UI
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
    @task(inlets=[DATASET])
    def load_dataset(params=None, run_id=None, dag_run=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from airloop.training import handoff, pipeline

        actor = f"airflow:{dag_run.dag_id}/{run_id}"
        claimed = handoff.claim(get_settings(), params.get("dataset_version"), run_id, actor)
        if not claimed["train"]:
            raise AirflowSkipException(claimed["reason"])
        return pipeline.load(get_settings(), claimed["version"])

    train_and_register(load_dataset())


readmission_train()
