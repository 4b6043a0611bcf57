"""DAG tests run real DAGs with dag.test() against the session's temporary AIRFLOW_HOME (SQLite metadata DB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the session's Airflow metadata DB once (a few seconds)."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, env=os.environ.copy(), capture_output=True)
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def load_dag(dag_id: str):
    """Parse dags/<dag_id>.py as Airflow would and return its DAG."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def run_dag(dag_id: str, conf: dict | None = None) -> dict[str, str]:
    """Run a DAG once with dag.test() and return {task_id: final state}."""
    dag = load_dag(dag_id)
    run = dag.test(run_conf=conf or {})
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
