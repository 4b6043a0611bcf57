"""
### readmission_drift

Compares live traffic with the champion's reference profile (stored with the model version at training), every
`monitoring.interval_minutes` and whenever `readmission_etl` publishes a dataset version.

- **load_window**: the prediction log rows the model version scored since the last completed verdict (a watermark in
  the decision ledger: no row counted twice or skipped after a failed run), or the newly published dataset version;
  turned into the model's features. An empty window, or no version under the alias yet, skips the rest: no report,
  no verdict.
- **compare**: PSI, KS / chi-square, Jensen-Shannon per feature (missing is a bin of its own), prediction drift,
  realised ROC AUC / log loss where outcomes have arrived; verdict `no_drift | drift | insufficient_data`.
- **report**: JSON + self-contained HTML to the artifact store (`reports/`), logged to the MLflow experiment
  `<experiment>-monitoring` with per-feature PSI as metrics.
- **decide**: the verdict becomes a ledger row with its outcome; drift on live traffic starts `readmission_retrain`
  once (run id derived from the verdict) unless cooling down, already running, or not deployed (then it says so).
- **alert**: always a log line; on drift, the `DriftAlertNotifier` posts to the webhook and sends e-mail when their
  Airflow Connections exist.

Params (Trigger DAG w/ config, or REST): `variant` (champion | challenger), `window_start` / `window_end` (ISO),
`dataset_version`, `thresholds` (e.g. `{"psi": 0.1, "min_rows": 200}`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, AssetOrTimeSchedule, Param, dag, task
from airflow.sdk.definitions.timetables.trigger import DeltaTriggerTimetable

from airloop.dag_defaults import default_args
from airloop.registry.contract import SERVED_ALIASES
from airloop.settings import get_settings

SETTINGS = get_settings()
DATASET = Asset(name=SETTINGS.dataset_asset)


@dag(
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=AssetOrTimeSchedule(
        timetable=DeltaTriggerTimetable(timedelta(minutes=SETTINGS.monitoring.interval_minutes)), assets=DATASET
    ),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=default_args(retry_delay=timedelta(seconds=20)),
    render_template_as_native_obj=True,
    params={
        "variant": Param(None, type=["null", "string"], enum=[None, *(a.value for a in SERVED_ALIASES)]),
        "window_start": Param(None, type=["null", "string"], description="ISO time; default: the last verdict's end"),
        "window_end": Param(None, type=["null", "string"], description="ISO time; default: when the run is due"),
        "dataset_version": Param(None, type=["null", "string"], description="compare a published version instead"),
        "thresholds": Param(None, type=["null", "object"], description='overrides, e.g. {"psi": 0.1}'),
    },
    tags=["airloop", "monitoring", "drift"],
)
def readmission_drift():
    @task
    def load_window(run_id=None, dag_run=None, params=None, triggering_asset_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from airloop.monitoring import job

        events = (triggering_asset_events or {}).get(DATASET) or []
        published = events[-1].extra.get("version") if events else None
        try:
            window = job.load_window(get_settings(), run_id, dag_run.run_after, params, published)
        except job.NoModelVersion as nothing_served:
            raise AirflowSkipException(str(nothing_served)) from nothing_served
        if not window["rows"]:
            raise AirflowSkipException(f"no rows in {window['source']} {window['start']} .. {window['end']}")
        return window

    @task
    def compare(window: dict, run_id=None, params=None) -> dict:
        from airloop.monitoring import job

        return job.compare_window(get_settings(), run_id, window, params.get("thresholds"))

    @task
    def report(compared: dict, run_id=None) -> dict:
        from airloop.monitoring import job

        return job.publish(get_settings(), run_id)

    @task
    def decide(window: dict, published: dict, dag_run=None) -> dict:
        from airloop.dag_defaults import dag_status
        from airloop.monitoring import job

        settings = get_settings()
        dag_id = settings.monitoring.retrain_dag_id
        target = job.RetrainTarget(dag_id, *dag_status(dag_id, job.retrain_run_id(window)))
        return job.decide(settings, window, published, f"airflow:{dag_run.dag_id}/{dag_run.run_id}", target)

    @task
    def alert(published: dict, decision: dict, **context) -> list:
        from airloop.monitoring import job

        return job.alert(get_settings(), published, decision, context)

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def retrain_due(decision: dict) -> bool:
        return bool(decision["retrain_run_id"])

    trigger_retrain = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id=SETTINGS.monitoring.retrain_dag_id,
        trigger_run_id="{{ ti.xcom_pull(task_ids='decide')['retrain_run_id'] }}",
        conf="{{ ti.xcom_pull(task_ids='decide')['retrain_conf'] }}",
        skip_when_already_exists=True,
    )

    @task(trigger_rule="none_failed_min_one_success")
    def record_outcome(decision: dict) -> dict:
        from airloop.monitoring import job

        return job.record_retrain(get_settings(), decision)

    window = load_window()
    published = report(compare(window))
    decision = decide(window, published)
    alert(published, decision)
    retrain_due(decision) >> trigger_retrain >> record_outcome(decision)


readmission_drift()
