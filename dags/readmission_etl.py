"""
### readmission_etl

Extract hospital encounters (diabetic_data.csv schema), gate them with Great Expectations, turn them into model
features, gate those, and publish a content-hashed dataset version that emits the `readmission` Asset.

- **extract**: the source comes from airloop settings (`data.source`: synthetic, file, s3, postgres); any param below
  overrides it for one run. S3 and PostgreSQL credentials come from the Airflow connections named in settings.
- **validate_raw / validate_features**: a failing batch is moved to quarantine with its validation result, the task
  fails naming each failed expectation and the values seen, and nothing is published. Data Docs are rebuilt.
- **publish**: writes the version atomically; the same content published before is skipped (nothing new, no Asset
  event), so re-running is safe.
- **hand_off / trigger_training**: the new version is recorded in the decision ledger and `readmission_train` is
  triggered for it under a run id derived from the version, so every version is trained exactly once (or recorded as
  superseded) even when Airflow collapses Asset events. The Asset stays for lineage and the UI.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, Param, dag, task

from airloop.dag_defaults import default_args
from airloop.settings import get_settings

DATASET = Asset(name=get_settings().dataset_asset)


@dag(
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    default_args=default_args(),
    params={
        "source": Param(None, type=["null", "string"], enum=[None, "synthetic", "file", "s3", "postgres"]),
        "path": Param(None, type=["null", "string"], description="local diabetic_data.csv (source=file)"),
        "s3_uri": Param(None, type=["null", "string"], description="s3://bucket/key (source=s3)"),
        "postgres_table": Param(None, type=["null", "string"], description="table name (source=postgres)"),
        "rows": Param(None, type=["null", "integer"], minimum=1, description="synthetic rows"),
        "seed": Param(None, type=["null", "integer"], description="synthetic seed"),
        "covariate_drift": Param(None, type=["null", "number"], minimum=0, maximum=3),
        "concept_drift": Param(None, type=["null", "number"], minimum=0, maximum=3),
    },
    tags=["airloop", "etl", "data-quality"],
)
def readmission_etl():
    @task
    def extract(run_id=None, params=None) -> dict:
        from airloop import etl

        return etl.extract(get_settings(), run_id, params)

    @task
    def validate_raw(raw: dict, run_id=None) -> dict:
        from airloop import etl

        return etl.validate_raw(get_settings(), run_id)

    @task
    def transform(raw: dict, raw_validation: dict, run_id=None) -> dict:
        from airloop import etl

        return etl.transform(get_settings(), run_id)

    @task
    def validate_features(features: dict, run_id=None) -> dict:
        from airloop import etl

        return etl.validate_features(get_settings(), run_id)

    @task(outlets=[DATASET])
    def publish(
        features: dict, raw: dict, raw_validation: dict, feature_validation: dict, run_id=None, outlet_events=None
    ) -> dict:
        from dataclasses import asdict

        from airflow.sdk.exceptions import AirflowSkipException

        from airloop import etl

        result = etl.publish(get_settings(), raw["source"], [raw_validation, feature_validation], run_id)
        if not result.created:
            raise AirflowSkipException(f"dataset version {result.version} is already published: nothing new")
        outlet_events[DATASET].extra = {"version": result.version, "rows": result.rows, "url": result.url}
        return asdict(result)

    @task
    def hand_off(published: dict, dag_run=None) -> dict:
        from airloop.training import handoff

        return handoff.published(get_settings(), published, f"airflow:{dag_run.dag_id}/{dag_run.run_id}")

    trigger_training = TriggerDagRunOperator(
        task_id="trigger_training",
        trigger_dag_id="readmission_train",
        trigger_run_id="{{ ti.xcom_pull(task_ids='hand_off')['train_run_id'] }}",
        conf={"dataset_version": "{{ ti.xcom_pull(task_ids='hand_off')['version'] }}"},
        skip_when_already_exists=True,
    )

    raw = extract()
    raw_validation = validate_raw(raw)
    features = transform(raw, raw_validation)
    hand_off(publish(features, raw, raw_validation, validate_features(features))) >> trigger_training


readmission_etl()
