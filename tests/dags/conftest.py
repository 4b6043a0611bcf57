"""DAG tests run real DAGs with dag.test() against the session's temporary AIRFLOW_HOME (SQLite metadata DB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
FACTORY = DAGS / "airloop_models.py"  # the one DAG file: every model spec's DAGs


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the session's Airflow metadata DB once (a few seconds). dag.test() deploys the DAGs folder beside the
    DAG it runs, so a TriggerDagRunOperator finds its targets there."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, env=os.environ.copy(), capture_output=True)
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def dag_runs(dag_id: str) -> dict[str, str]:
    """{run_id: state} of every run of ``dag_id`` in the metadata DB."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return {r.run_id: str(r.state) for r in session.query(DagRun).filter(DagRun.dag_id == dag_id)}


def load_dag(dag_id: str):
    """Parse the DAG factory file as Airflow would and return the DAG ``dag_id`` (``<model>_<stage>``)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(FACTORY))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def run_dag(dag_id: str, conf: dict | None = None, run_after=None) -> dict[str, str]:
    """Run a DAG once with dag.test() (due at ``run_after``, default now) and return {task_id: final state}; a mapped
    task's instances as ``task_id[map_index]``."""
    dag = load_dag(dag_id)
    run = dag.test(run_conf=conf or {}, run_after=run_after)
    return {
        ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
        for ti in run.get_task_instances()
    }


def delete_runs(dag_id: str) -> None:
    """Forget every run of ``dag_id``: a run another test triggered (and dag.test() never ran) stays queued and would
    count as an active run."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run in session.query(DagRun).filter(DagRun.dag_id == dag_id):
            session.delete(run)
