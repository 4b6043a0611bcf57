"""
### readmission_retrain

Started by `readmission_drift` when live traffic drifts (run conf: `verdict_key`, `verdict_id`, the window and the
report), by REST, or by hand.

- **build_dataset**: the training set by `loop.retrain_policy` (or the `policy` param): the latest dataset
  `readmission_etl` published plus the labelled recent predictions (`latest_plus_window`), only those
  (`sliding_window`), `latest`, or `all_history`; published as a dataset version of its own, so a re-run adds nothing.
- **validate → split → train → register**: the very stages of `readmission_train`, gate included.
- **start_experiment**: a registered challenger gets live traffic at `loop.split` (or shadow) under a new experiment
  id; the retrain's ledger row, linked to the verdict, says what came of it (experiment, gate rejection, ...).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from airloop.dag_defaults import default_args
from airloop.dag_tasks import train_and_register
from airloop.settings import get_settings


@dag(
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=default_args(retry_delay=timedelta(seconds=20)),
    params={
        "policy": Param(
            None,
            type=["null", "string"],
            enum=[None, "latest_plus_window", "sliding_window", "latest", "all_history"],
            description="training set; default loop.retrain_policy",
        ),
        "verdict_key": Param(None, type=["null", "string"], description="the drift verdict that asked for it"),
        "verdict_id": Param(None, type=["null", "integer"]),
        "model_version": Param(None, type=["null", "string"]),
        "window_start": Param(None, type=["null", "string"]),
        "window_end": Param(None, type=["null", "string"]),
        "report_url": Param(None, type=["null", "string"]),
    },
    tags=["airloop", "training", "loop"],
)
def readmission_retrain():
    @task
    def build_dataset(run_id=None, params=None) -> dict:
        from airloop.training import retrain

        return retrain.build(get_settings(), run_id, params.get("policy"), params)

    @task
    def start_experiment(registered: dict, dataset: dict, params=None, dag_run=None) -> dict:
        from airloop.training import retrain

        actor = f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        return retrain.start_experiment(get_settings(), registered, dataset, params, actor)

    dataset = build_dataset()
    start_experiment(train_and_register(dataset), dataset)


readmission_retrain()
