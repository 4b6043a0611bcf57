"""
### readmission_registry

Operate the model registry from Airflow (UI "Trigger DAG w/ config" or REST API v2) with the `action` param:

- `show`: log the registry table (versions, aliases, gate decisions, scores, datasets);
- `promote`: `challenger` becomes `champion`, the old champion keeps `previous-champion`;
- `rollback`: undo the last promotion (aliases restored exactly as they were);
- `route`: change the live A/B experiment (`weights`, `mode`, `experiment`) that every serving replica follows.

Who triggered the run decides what it may do (`security.users`): `promote` and `rollback` need an `ml_engineer` or
`admin`, `route` an `admin`; anyone else's run fails at once, naming the user, their role and the role needed. Every
action leaves an audit tag naming the user on the versions it touched. The same actions, for whoever holds the
registry's credentials: `python -m airloop registry ...`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from airloop.dag_defaults import default_args
from airloop.settings import get_settings


@dag(
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=default_args(retry_delay=timedelta(seconds=10), execution_timeout=timedelta(minutes=10)),
    params={
        "action": Param("show", type="string", enum=["show", "promote", "rollback", "route"]),
        "weights": Param(
            None, type=["null", "object"], description='action=route: e.g. {"champion": 90, "challenger": 10}'
        ),
        "mode": Param(None, type=["null", "string"], enum=[None, "ab", "shadow"], description="action=route"),
        "experiment": Param(None, type=["null", "string"], description="action=route: a new id reshuffles"),
    },
    tags=["airloop", "registry", "mlflow"],
)
def readmission_registry():
    @task
    def apply(params=None, dag_run=None) -> dict:
        from airloop.registry import actions

        routing = {k: params.get(k) for k in ("weights", "mode", "experiment")}
        actor = f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        return actions.run_action_as(get_settings(), dag_run.triggering_user_name, params["action"], actor, routing)

    apply()


readmission_registry()
