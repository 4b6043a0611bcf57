"""Airflow's side of the monitor tests: DAGs written to the metadata DB as the DAG processor writes them, and runs
executed in this process with the task runner ``dag.test()`` uses (no scheduler, no executor).

``dag.test()`` only runs a run it creates itself; the monitor triggers its runs through the REST API, so
``execute_run`` drives that very run with the same loop and the same ``_run_task``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DAGS = Path(__file__).resolve().parents[2] / "dags"
BUNDLE = "dags-folder"  # the default bundle: [core] dags_folder


def sync_dags(*dag_ids: str) -> dict[str, Any]:
    """Parse the DAG factory file (``dags/airloop_models.py``) and write each DAG (serialized, with its version) to the
    metadata DB, as the DAG processor does; returns the parsed DAGs by id (the task code ``execute_run`` runs)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle(BUNDLE)
    if not bundle.is_initialized:
        bundle.initialize()
    bag = BundleDagBag(dag_folder=str(DAGS / "airloop_models.py"), bundle_path=bundle.path, bundle_name=BUNDLE)
    # A broken spec in the models folder is an import error of the factory file; the other models' DAGs are there.
    assert set(dag_ids) <= set(bag.dags), bag.import_errors
    for dag_id in list(bag.dags):
        if dag_id not in dag_ids:
            bag.dags.pop(dag_id)
    sync_bag_to_db(bag, BUNDLE, None)
    return {dag_id: bag.dags[dag_id] for dag_id in dag_ids}


def dag_run(dag_id: str, run_id: str) -> Any:
    """The run's row in the metadata DB (detached, with its conf, state and triggering user), or None."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        found = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        if found is not None:
            session.expunge(found)
        return found


def execute_run(dag: Any, run_id: str, timeout: float = 120) -> dict[str, str]:
    """Run the queued run ``run_id`` of ``dag`` (the parsed DAG) to its end in this process, as ``dag.test()`` runs
    its own: the scheduler's state update picks the ready tasks, ``_run_task`` runs each through the in-process
    execution API. Returns {task_id: final state}."""
    from airflow.models import DagRun
    from airflow.models.dagbag import DBDagBag
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    deadline = time.monotonic() + timeout
    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id).one()
        run.dag = DBDagBag().get_dag_for_run(run, session=session)
        run.state = DagRunState.RUNNING  # what the scheduler does to a queued run when it starts it
        run.start_date = datetime.now(UTC)
        session.commit()
        while run.state == DagRunState.RUNNING:
            assert time.monotonic() < deadline, f"{dag.dag_id} {run_id} still running after {timeout} s"
            session.expire_all()
            ready, _ = run.update_state(session=session)
            for ti in ready:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in ready:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id])
        return {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}


def run_task(dag: Any, run_id: str, task_id: str) -> str:
    """Run one task of a run in this process (its upstream tasks are not checked), as ``dag.test()`` runs a ready
    task; returns the state it ends in (``awaiting_input`` for a Human-in-the-loop task waiting for a person)."""
    from airflow.models import TaskInstance
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)
            .one()
        )
        ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        _run_task(ti=ti, task=dag.task_dict[task_id])
        session.expire_all()
        return str(session.scalar(select(TaskInstance.state).where(TaskInstance.id == ti.id)))


def mark_done(dag_id: str, run_id: str, returns: dict[str, Any]) -> None:
    """Mark the tasks ``returns`` names successful with those return values (their XCom), as if they had run."""
    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        for task_id, value in returns.items():
            ti = (
                session.query(TaskInstance)
                .filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)
                .one()
            )
            ti.try_number += 1
            ti.state = TaskInstanceState.SUCCESS
            XComModel.set(  # as the execution API stores a task's return value (already plain JSON)
                key="return_value",
                value=value,
                dag_id=dag_id,
                task_id=task_id,
                run_id=run_id,
                serialize=False,
                session=session,
            )
