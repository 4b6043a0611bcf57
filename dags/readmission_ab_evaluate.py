"""
### readmission_ab_evaluate

Looks at the live champion/challenger experiment every `loop.evaluation_interval_minutes` (and when triggered by REST):
the prediction log joined with the fed-back outcomes, per variant: labelled rows, ROC AUC, log loss, Brier, positive
rate with intervals, and an always-valid sequential test on `loop.metric` that stays valid however often it looks
(paired on the same requests in shadow mode).

- **promote**: better by at least `loop.min_effect` with confidence `1 - loop.alpha` → the challenger becomes champion
  (the old one `previous-champion`), routing goes 100% to it and the experiment ends. With `loop.require_approval`,
  **approve** waits for a person first (Required Actions in the UI, or REST), showing the evidence: it is assigned to
  the users holding `loop.approver_role` or above (`security.users`), Airflow refuses anyone else's answer, and
  `promote` refuses an `approve` that was marked successful instead of answered by one of them.
- **reject**: significantly worse, or its calibration guardrail fails → routing back to 100% champion, the challenger
  tagged rejected.
- otherwise the experiment keeps running; the evaluation says how many more labelled rows it needs.

Every look, promotion and rejection is a row of the decision history (`python -m airloop history`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task
from airflow.sdk.definitions.timetables.trigger import DeltaTriggerTimetable

from airloop import security
from airloop.dag_defaults import default_args
from airloop.settings import get_settings

SETTINGS = get_settings()
EVALUATION = "ti.xcom_pull(task_ids='evaluate')"


@dag(
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=DeltaTriggerTimetable(timedelta(minutes=SETTINGS.loop.evaluation_interval_minutes)),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=default_args(retry_delay=timedelta(seconds=20)),
    tags=["airloop", "loop", "experiment"],
)
def readmission_ab_evaluate():
    @task
    def evaluate(dag_run=None) -> dict:
        from airloop.experiments import evaluation

        actor = f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        result = evaluation.evaluate(get_settings(), actor, now=dag_run.run_after)
        return {**result, "evidence": evaluation.evidence(result)}

    @task.branch
    def choose(result: dict) -> list[str]:
        if result["action"] == "promote":
            return ["approve"] if get_settings().loop.require_approval else ["promote"]
        return ["reject"] if result["action"] == "reject" else []

    approve = ApprovalOperator(
        task_id="approve",
        subject="Promote readmission v{{ " + EVALUATION + "['challenger_version'] }} to champion?",
        body="{{ " + EVALUATION + "['evidence'] }}",
        assigned_users=security.approvers(SETTINGS),  # fixed when the DAG is parsed; Airflow checks each answer
        execution_timeout=None,  # a HITL task waits for a person; a time limit would be response_timeout
    )

    @task(trigger_rule="none_failed_min_one_success")
    def promote(result: dict, dag_run=None, ti=None) -> dict:
        import json

        from airloop.experiments import lifecycle

        settings = get_settings()
        approval = json.loads(json.dumps(ti.xcom_pull(task_ids="approve") or {}, default=str))
        person = security.approved_by(settings, approval)
        actor = f"approved by {person}" if person else f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        details = {"evaluation_key": result["key"], "reason": result["reason"], "approval": approval or None}
        return lifecycle.promote(settings, actor, details, key=f"promotion:{result['key']}")

    @task
    def reject(result: dict, dag_run=None) -> dict:
        from airloop.experiments import lifecycle

        actor = f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        details = {"evaluation_key": result["key"]}
        return lifecycle.reject(get_settings(), actor, result["reason"], details, key=f"rejection:{result['key']}")

    result = evaluate()
    branch = choose(result)
    promoted = promote(result)
    branch >> approve >> promoted
    branch >> promoted
    branch >> reject(result)


readmission_ab_evaluate()
