"""DAG tests run real DAGs with dag.test() against the session's temporary AIRFLOW_HOME (SQLite metadata DB)."""

from __future__ import annotations

import importlib.util
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
    """Import dags/<dag_id>.py as Airflow would and return its DAG."""
    spec = importlib.util.spec_from_file_location(f"dagfile_{dag_id}", DAGS / f"{dag_id}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from airflow.sdk import DAG

    dags = [v for v in vars(module).values() if isinstance(v, DAG)]
    if not dags:  # the @dag-decorated function registers the DAG when called at the bottom of the file
        from airflow.models.dagbag import DagBag

        bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
        return bag.get_dag(dag_id)
    return dags[0]


def run_dag(dag_id: str, conf: dict | None = None) -> dict[str, str]:
    """Run a DAG once with dag.test() and return {task_id: final state}."""
    dag = load_dag(dag_id)
    run = dag.test(run_conf=conf or {})
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
