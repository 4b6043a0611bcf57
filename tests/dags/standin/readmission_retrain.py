"""Stand-in for the retrain DAG the drift DAG triggers (settings: monitoring.retrain_dag_id) until it is built.

Only its existence matters to the drift tests: the trigger must find it deployed; its runs are never executed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), schedule=None, catchup=False, tags=["test"])
def readmission_retrain():
    @task
    def record_conf(params=None) -> dict:
        return dict(params or {})

    record_conf()


readmission_retrain()
