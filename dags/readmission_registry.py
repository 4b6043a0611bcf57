"""
### readmission_registry

Operate the model registry from Airflow (UI "Trigger DAG w/ config" or REST API v2) with the `action` param:

- `show`: log the registry table (versions, aliases, gate decisions, scores, datasets);
- `promote`: `challenger` becomes `champion`, the old champion keeps `previous-champion`;
- `rollback`: undo the last promotion (aliases restored exactly as they were).

Every action leaves an audit tag on the versions it touched. The same actions: `python -m airloop registry ...`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import ExceptionRetryPolicy, Param, RetryAction, RetryRule, dag, task

from airloop.settings import get_settings


@dag(
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args={
        "owner": "airloop",
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(exception="airloop.errors.FinalError", action=RetryAction.FAIL, reason="retrying cannot help")
            ]
        ),
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
    },
    params={"action": Param("show", type="string", enum=["show", "promote", "rollback"])},
    tags=["airloop", "registry", "mlflow"],
)
def readmission_registry():
    @task
    def apply(params=None, dag_run=None) -> dict:
        from airloop.registry import cli

        return cli.run_action(get_settings(), params["action"], f"airflow:{dag_run.dag_id}/{dag_run.run_id}")

    apply()


readmission_registry()
