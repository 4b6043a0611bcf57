"""
### readmission_batch_score

Scores a whole input with one registered model version and publishes the predictions (ids, probability, class at the
version's threshold, model version) to the artifact store, with the lineage in MLflow.

- **resolve**: fixes the job on the first attempt: the input (the latest published dataset version unless
  `dataset_version` names one; or the configured `file`, `s3` object, `postgres` table or `synthetic` generator,
  `path` / `s3_uri` / `postgres_table` overriding the configured ones), the model version (the `champion`'s unless
  `model_version` names one) and the output's name. A retry scores the same, even after a promotion.
- **score**: reads `chunk_rows` records at a time (default `batch.chunk_rows`), scores each chunk with serving's
  compiled fast path and writes it as a Parquet part; records that cannot be scored go to `rejected-*.parquet` with
  the reason. The folder `<storage>/batch-scores/<dataset>/<job>/` is published all at once; a dataset version
  already scored by the same model version is not scored again.
- **record_lineage**: one run of the MLflow experiment `<experiment>-batch-scoring`: the input dataset and the model
  version as its inputs, the output URL, rows, rejected records and rows per second. Emits the
  `airloop_<dataset>_batch_scores` Asset; skipped (no event) when the output and its run already existed.

Params (Trigger DAG w/ config, or REST): `source`, `dataset_version`, `path`, `s3_uri`, `postgres_table`,
`model_version`, `chunk_rows`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

from airloop.dag_defaults import default_args
from airloop.settings import get_settings

SETTINGS = get_settings()
DATASET = Asset(name=SETTINGS.dataset_asset)
SCORES = Asset(name=f"airloop_{SETTINGS.data.dataset_name}_batch_scores")


@dag(
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    max_active_runs=1,  # one job writes batch-scores/ at a time (see airloop.scoring.batch.score)
    doc_md=__doc__,
    default_args=default_args(retry_delay=timedelta(seconds=20), execution_timeout=timedelta(hours=2)),
    params={
        "source": Param(
            "dataset", type="string", enum=["dataset", "file", "s3", "postgres", "synthetic"], description="the input"
        ),
        "dataset_version": Param(None, type=["null", "string"], description="source=dataset; default: the latest"),
        "path": Param(None, type=["null", "string"], description="source=file; default: data.path"),
        "s3_uri": Param(None, type=["null", "string"], description="source=s3; default: data.s3_uri"),
        "postgres_table": Param(None, type=["null", "string"], description="source=postgres; default: the configured"),
        "model_version": Param(None, type=["null", "string"], description="default: the champion's version"),
        "chunk_rows": Param(None, type=["null", "integer"], minimum=1, description="default: batch.chunk_rows"),
    },
    tags=["airloop", "scoring", "mlflow"],
)
def readmission_batch_score():
    @task(inlets=[DATASET])
    def resolve(params=None, run_id=None) -> dict:
        from airloop.scoring import batch

        return batch.resolve(get_settings(), params, run_id)

    @task(execution_timeout=timedelta(hours=2))
    def score(job: dict) -> dict:
        from airloop.scoring import batch

        return batch.score(get_settings(), job)

    @task(outlets=[SCORES])
    def record_lineage(job: dict, result: dict, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from airloop.scoring import batch

        lineage = batch.record_lineage(get_settings(), job, result)
        if not (result["created"] or lineage["created"]):  # nothing new: no Asset event for the same output again
            raise AirflowSkipException(f"already scored and logged: {job['output_url']} ({lineage['url']})")
        outlet_events[SCORES].extra = {
            "output": job["output_url"],
            "input": job["input_uri"],
            "model_version": job["model_version"],
            "rows": result["rows"],
            "mlflow_run_id": lineage["run_id"],
        }
        return lineage

    job = resolve()
    record_lineage(job, score(job))


readmission_batch_score()
