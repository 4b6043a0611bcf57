"""The DAG factory: every model spec becomes seven DAGs with the same task graphs, params, Assets and hand-offs.

``dags/airloop_models.py`` calls ``build_all``; each builder here only wires tasks (each task body is one call into
airloop, made with the settings of its own model), so this module is DAG-file code: it is imported while Airflow
parses, with ``airflow.sdk``, the standard provider's operators and the spec loader at the top and nothing heavy.

Per model ``<name>``: ``<name>_etl``, ``<name>_train``, ``<name>_drift``, ``<name>_retrain``, ``<name>_ab_evaluate``,
``<name>_registry``, ``<name>_batch_score``, each tagged with the model's name so the Airflow UI filters by model.
A spec file that is broken adds no DAG of its own: it is listed, with the key and what was expected, by the DAG
``airloop_broken_specs`` (tag ``broken-spec``) and in the parse log, while every other model's DAGs still parse and
run. It is deliberately not an import error: Airflow 3 marks every DAG of a file with an import error stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, Param, dag, task
from airflow.sdk.definitions.timetables.trigger import DeltaTriggerTimetable

from airloop import security
from airloop.dag_defaults import default_args
from airloop.registry.contract import SERVED_ALIASES
from airloop.settings import Settings, get_settings
from airloop.spec import Catalog, ModelSpec
from airloop.spec.schema import STAGES

log = logging.getLogger(__name__)

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def _dag(
    *, schedule: Any, params: dict[str, Param] | None = None, **kwargs: Any
) -> Callable[[Callable[[], None]], Callable[[], DAG]]:
    """``@dag`` whose ``params`` are set once its tasks exist.

    Airflow deep-copies a DAG's params into every operator as it is made (once per ``apply_defaults`` level, four
    times for a TaskFlow task), and validates a scheduled DAG's defaults with jsonschema at every parse: together
    close to half of this file's parse time. A task does not need its own copy: when it runs, Airflow resolves the
    DAG's params, then the task's, then the run's conf, and validates the result (``process_params``), so every task
    sees the same values, and the trigger form is the same as with ``@dag(params=...)``. The defaults are constants
    of this module: ``tests/dags/test_dag_integrity.py`` validates every DAG's, once, instead of every parse."""

    def decorate(function: Callable[[], None]) -> Callable[[], DAG]:
        factory = dag(schedule=schedule, **kwargs)(function)

        def build() -> DAG:
            built = factory()
            if params:
                built.params.update(params)
            return built

        return build

    return decorate


def _tags(spec: ModelSpec, *stage: str) -> list[str]:
    return list(dict.fromkeys(["airloop", spec.name, *stage, *spec.tags]))


def _actor(dag_run: Any) -> str:
    return f"airflow:{dag_run.dag_id}/{dag_run.run_id}"


def _authorize(name: str, dag_run: Any, what: str) -> Any:
    """The model's settings, once the user who triggered ``dag_run`` (if a person did) may ``what`` it: per team
    (``airloop.security.authorize_run``). The first task of every DAG asks, so a refused run does nothing."""
    settings = get_settings(name)
    security.authorize_run(settings, dag_run.triggering_user_name, what)
    return settings


def _doc(spec: ModelSpec, text: str) -> str:
    stage, _, body = text.strip().partition("\n")
    about = f"**Model `{spec.name}`**" + (f": {spec.description}" if spec.description else "")
    body = body.replace("<name>", spec.name)
    return f"### {spec.name}_{stage}\n\n{about} (spec `models/{spec.name}.yaml`)\n{body}\n"


class PromotionApproval(ApprovalOperator):
    """The approval of a model's promotion, which promotes once it is approved.

    Who answered, and with which option, is Airflow's own record of the answer: the HITL detail of this very task
    instance (which only an assigned approver could write), read by Airflow's trigger and handed to this task as the
    trigger event when it resumes; never an XCom, which anyone with task rights can write. The decision promoted is
    the evaluation the history recorded."""

    def __init__(self, *, model: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def execute(self, context: Any) -> Any:
        """Ask only while the decision can still be carried out (a cleared task of an old decision fails here, before
        anyone is asked), and ask about what the history recorded: the subject and evidence come from the
        evaluation's history row, not from the ``evaluate`` XCom, which anyone with task rights can rewrite."""
        from airloop import operations
        from airloop.experiments import evaluation

        result = context["ti"].xcom_pull(task_ids="evaluate") or {}
        row = operations.promotable(get_settings(self.model), str(result.get("key")))
        self.subject = f"Promote {self.model} v{row.payload.get('challenger_version')} to champion?"
        self.body = evaluation.evidence(row.payload)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        answered = super().execute_complete(context=context, event=event)  # a Reject skips, a timeout fails
        if answered["chosen_options"] != [self.APPROVE]:
            return answered
        import json

        from airloop import operations

        fields = ("chosen_options", "responded_by_user", "responded_at")
        approval = json.loads(json.dumps({k: event.get(k) for k in fields}, default=str))
        evaluation = context["ti"].xcom_pull(task_ids="evaluate") or {}
        actor = _actor(context["dag_run"])
        return operations.promote_decided(get_settings(self.model), str(evaluation.get("key")), actor, approval)


# --- the training stages shared by <name>_train and <name>_retrain ------------------------------------------------


def train_and_register(name: str, dataset: Any) -> Any:
    """validate → split → train → register (+ gate) of model ``name`` on the published version in ``dataset``
    (``pipeline.load``'s dict, as an XComArg); returns register's XComArg."""

    @task
    def validate(dataset: dict, run_id=None) -> dict:
        from airloop.training import pipeline

        return pipeline.validate(get_settings(name), dataset["version"], run_id)

    @task
    def split(dataset: dict, validation: dict, run_id=None) -> dict:
        from airloop.training import pipeline

        return pipeline.split(get_settings(name), dataset["version"], run_id)

    @task
    def train(dataset: dict, split_info: dict, validation: dict, run_id=None) -> dict:
        from airloop.training import pipeline

        return pipeline.train(get_settings(name), dataset, split_info, validation, run_id)

    @task
    def register(dataset: dict, split_info: dict, trained: dict, dag_run=None) -> dict:
        from airloop.training import pipeline

        return pipeline.register(get_settings(name), dataset, split_info, trained, _actor(dag_run))

    validation = validate(dataset)
    split_info = split(dataset, validation)
    return register(dataset, split_info, train(dataset, split_info, validation))


# --- one builder per DAG -------------------------------------------------------------------------------------------

ETL_DOC = """etl

Extract records, gate them with Great Expectations, turn them into model features, gate those, and publish a
content-hashed dataset version that emits the model's dataset Asset.

- **extract**: the source comes from the spec (`data.source`: synthetic, file, s3, postgres); any param below
  overrides it for one run. S3 and PostgreSQL credentials come from the Airflow connections the spec names.
- **validate_raw / validate_features**: the suites derived from the spec's schema (plus its own expectations); a
  failing batch is moved to quarantine with its validation result, the task fails naming each failed expectation and
  the values seen, and nothing is published. Data Docs are rebuilt.
- **publish**: writes the version atomically; the same content published before is skipped (nothing new, no Asset
  event), so re-running is safe.
- **hand_off / trigger_training**: the new version is recorded in the model's decision ledger and `<name>_train` is
  triggered for it under a run id derived from the version, so every version is trained exactly once (or recorded as
  superseded) even when Airflow collapses Asset events. The Asset stays for lineage and the UI.
"""


def etl(spec: ModelSpec, settings: Settings) -> DAG:
    """``<name>_etl``: extract → validate_raw → transform → validate_features → publish → hand_off → trigger."""
    name, dataset = spec.name, Asset(name=spec.asset_name)

    @_dag(
        dag_id=spec.dag_id("etl"),
        start_date=START,
        schedule=None,
        catchup=False,
        doc_md=_doc(spec, ETL_DOC),
        default_args=default_args(),
        params={
            "source": Param(None, type=["null", "string"], enum=[None, "synthetic", "file", "s3", "postgres"]),
            "path": Param(None, type=["null", "string"], description="local CSV file (source=file)"),
            "s3_uri": Param(None, type=["null", "string"], description="s3://bucket/key (source=s3)"),
            "postgres_table": Param(None, type=["null", "string"], description="table name (source=postgres)"),
            "rows": Param(None, type=["null", "integer"], minimum=1, description="synthetic rows"),
            "seed": Param(None, type=["null", "integer"], description="synthetic seed"),
            "covariate_drift": Param(None, type=["null", "number"], minimum=0, maximum=3),
            "concept_drift": Param(None, type=["null", "number"], minimum=0, maximum=3),
        },
        tags=_tags(spec, "etl", "data-quality"),
    )
    def build():
        @task
        def extract(run_id=None, params=None, dag_run=None) -> dict:
            from airloop import etl

            settings = _authorize(name, dag_run, "extract data for")
            return etl.extract(settings, run_id, params, dag_run.triggering_user_name)

        @task
        def validate_raw(raw: dict, run_id=None) -> dict:
            from airloop import etl

            return etl.validate_raw(get_settings(name), run_id)

        @task
        def transform(raw: dict, raw_validation: dict, run_id=None) -> dict:
            from airloop import etl

            return etl.transform(get_settings(name), run_id)

        @task
        def validate_features(features: dict, run_id=None) -> dict:
            from airloop import etl

            return etl.validate_features(get_settings(name), run_id)

        @task(outlets=[dataset])
        def publish(
            features: dict, raw: dict, raw_validation: dict, feature_validation: dict, run_id=None, outlet_events=None
        ) -> dict:
            from dataclasses import asdict

            from airflow.sdk.exceptions import AirflowSkipException

            from airloop import etl

            result = etl.publish(get_settings(name), raw["source"], [raw_validation, feature_validation], run_id)
            if not result.created:
                raise AirflowSkipException(f"dataset version {result.version} is already published: nothing new")
            outlet_events[dataset].extra = {"version": result.version, "rows": result.rows, "url": result.url}
            return asdict(result)

        @task
        def hand_off(published: dict, dag_run=None) -> dict:
            from airloop.training import handoff

            return handoff.published(get_settings(name), published, _actor(dag_run))

        trigger_training = TriggerDagRunOperator(
            task_id="trigger_training",
            trigger_dag_id=spec.dag_id("train"),
            trigger_run_id="{{ ti.xcom_pull(task_ids='hand_off')['train_run_id'] }}",
            conf={"dataset_version": "{{ ti.xcom_pull(task_ids='hand_off')['version'] }}"},
            skip_when_already_exists=True,
        )

        raw = extract()
        raw_validation = validate_raw(raw)
        features = transform(raw, raw_validation)
        hand_off(publish(features, raw, raw_validation, validate_features(features))) >> trigger_training

    return build()


TRAIN_DOC = """train

Triggered by `<name>_etl` for each version it publishes (run id derived from the version: exactly once), by REST or
by hand with a `dataset_version` param (latest if empty). It first claims the version in the model's decision ledger:
a hand-off run whose version was superseded by a newer one before it started is skipped and the ledger says so.

It then loads the published version, validates its features with Great Expectations, splits it by the spec's entity,
trains the spec's candidates (or its search) as nested MLflow runs, logs metrics, plots, the reference profile, the
validation result and the dataset lineage, registers the best model under the model's name, and applies the gate:

- no `champion` yet → the new version becomes `champion`;
- better than the champion on the same test set by the spec's margin → `challenger`;
- otherwise kept, tagged `rejected` with both scores.

Re-running for the same dataset version and configuration registers nothing new.
"""


def train(spec: ModelSpec, settings: Settings) -> DAG:
    """``<name>_train``: claim → validate → split → train → register (+ gate)."""
    name, dataset = spec.name, Asset(name=spec.asset_name)

    @_dag(
        dag_id=spec.dag_id("train"),
        start_date=START,
        schedule=None,  # triggered per version by <name>_etl; the Asset is an inlet, for lineage and the UI
        catchup=False,
        max_active_runs=1,
        doc_md=_doc(spec, TRAIN_DOC),
        default_args=default_args(),
        params={
            "dataset_version": Param(None, type=["null", "string"], description="published version; latest if empty"),
        },
        tags=_tags(spec, "training", "mlflow"),
    )
    def build():
        @task(inlets=[dataset])
        def load_dataset(params=None, run_id=None, dag_run=None) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from airloop.training import handoff, pipeline

            settings = _authorize(name, dag_run, "train")
            claimed = handoff.claim(settings, params.get("dataset_version"), run_id, _actor(dag_run))
            if not claimed["train"]:
                raise AirflowSkipException(claimed["reason"])
            return pipeline.load(settings, claimed["version"])

        train_and_register(name, load_dataset())

    return build()


DRIFT_DOC = """drift

Compares live traffic with the champion's reference profile (stored with the model version at training), every
`monitoring.interval_minutes` and whenever `<name>_etl` publishes a dataset version.

- **compact_logs**: the settled hours of the prediction, feedback and error logs become one file each
  (`storage.log_compact_*`), so every later read of them is a handful of requests; a failure shows here and the
  window is read all the same.
- **plan_window → profile_part (mapped) → load_window**: the prediction log rows the model version scored since the
  last completed verdict (a watermark in the decision ledger: no row counted twice or skipped after a failed run), or
  the newly published dataset version. The window is cut at whole hours into parts of at most
  `monitoring.window_part_mb` of log, one mapped task each (on any worker): each makes the model's features of its
  rows and stages only their summary
  (counts per feature bin and CDF point, probabilities, outcomes, a bounded sample); `load_window` counts the rows.
  An empty window, or no version under the alias yet, skips the rest.
- **compare**: PSI, KS / chi-square, Jensen-Shannon per feature (missing is a bin of its own), prediction drift,
  realised ROC AUC / log loss where outcomes have arrived; verdict `no_drift | drift | insufficient_data`.
- **report**: JSON + self-contained HTML to the artifact store, logged to the MLflow experiment
  `<experiment>-monitoring` with per-feature PSI as metrics.
- **decide**: the verdict becomes a ledger row with its outcome; drift on live traffic starts `<name>_retrain` once
  (run id derived from the verdict) unless cooling down, already running, or not deployed (then it says so).
- **alert**: always a log line; on drift, the webhook and e-mail when their Airflow Connections exist.

Params: `variant` (champion | challenger), `window_start` / `window_end` (ISO), `dataset_version`, `thresholds`.
"""


def drift(spec: ModelSpec, settings: Settings) -> DAG:
    """``<name>_drift``: plan_window → profile_part (mapped) → load_window → compare → report → decide → alert /
    trigger the retrain."""
    name, dataset = spec.name, Asset(name=spec.asset_name)
    retrain_dag_id = settings.monitoring.retrain_dag_id or spec.dag_id("retrain")

    @_dag(
        dag_id=spec.dag_id("drift"),
        start_date=START,
        schedule=AssetOrTimeSchedule(
            timetable=DeltaTriggerTimetable(timedelta(minutes=settings.monitoring.interval_minutes)), assets=dataset
        ),
        catchup=False,
        max_active_runs=1,
        doc_md=_doc(spec, DRIFT_DOC),
        default_args=default_args(retry_delay=timedelta(seconds=20)),
        render_template_as_native_obj=True,
        params={
            "variant": Param(None, type=["null", "string"], enum=[None, *(a.value for a in SERVED_ALIASES)]),
            "window_start": Param(
                None, type=["null", "string"], description="ISO time; default: the last verdict's end"
            ),
            "window_end": Param(None, type=["null", "string"], description="ISO time; default: when the run is due"),
            "dataset_version": Param(None, type=["null", "string"], description="compare a published version instead"),
            "thresholds": Param(None, type=["null", "object"], description='overrides, e.g. {"psi": 0.1}'),
        },
        tags=_tags(spec, "monitoring", "drift"),
    )
    def build():
        @task
        def compact_logs(dag_run=None) -> dict:
            from airloop.predlog.compact import compact_logs

            return compact_logs(_authorize(name, dag_run, "compact the logs of"), dag_run.run_after)

        # A failed compaction is shown, and the window is read all the same (from the parts it left).
        @task(trigger_rule="all_done")
        def plan_window(dag_run=None, params=None, triggering_asset_events=None) -> list:
            from airflow.sdk.exceptions import AirflowSkipException

            from airloop.monitoring import job

            events = (triggering_asset_events or {}).get(dataset) or []
            published = events[-1].extra.get("version") if events else None
            try:
                settings = _authorize(name, dag_run, "check drift of")
                return job.plan_window(settings, dag_run.run_after, params, published)
            except job.NoModelVersion as nothing_served:
                raise AirflowSkipException(str(nothing_served)) from nothing_served

        @task(map_index_template="{{ part_span }}")
        def profile_part(part: dict, run_id=None) -> dict:
            from airflow.sdk import get_current_context

            from airloop.monitoring import job

            get_current_context()["part_span"] = f"{part['start']} .. {part['end']}"  # the name in the UI
            return job.profile_part(get_settings(name), run_id, part)

        @task
        def load_window(parts: list, profiled: list) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from airloop.monitoring import job

            window = job.gather_window(parts, list(profiled))
            if not window["rows"]:
                raise AirflowSkipException(f"no rows in {window['source']} {window['start']} .. {window['end']}")
            return window

        @task
        def compare(window: dict, run_id=None, params=None) -> dict:
            from airloop.monitoring import job

            return job.compare_window(get_settings(name), run_id, window, params.get("thresholds"))

        @task
        def report(compared: dict, run_id=None) -> dict:
            from airloop.monitoring import job

            return job.publish(get_settings(name), run_id)

        @task
        def decide(window: dict, published: dict, dag_run=None) -> dict:
            from airloop.dag_defaults import dag_status
            from airloop.monitoring import job

            settings = get_settings(name)
            target = job.RetrainTarget(retrain_dag_id, *dag_status(retrain_dag_id, job.retrain_run_id(window)))
            return job.decide(settings, window, published, _actor(dag_run), target)

        @task
        def alert(published: dict, decision: dict, **context) -> list:
            from airloop.monitoring import job

            return job.alert(get_settings(name), published, decision, context)

        @task.short_circuit(ignore_downstream_trigger_rules=False)
        def retrain_due(decision: dict) -> bool:
            return bool(decision["retrain_run_id"])

        trigger_retrain = TriggerDagRunOperator(
            task_id="trigger_retrain",
            trigger_dag_id=retrain_dag_id,
            trigger_run_id="{{ ti.xcom_pull(task_ids='decide')['retrain_run_id'] }}",
            conf="{{ ti.xcom_pull(task_ids='decide')['retrain_conf'] }}",
            skip_when_already_exists=True,
        )

        @task(trigger_rule="none_failed_min_one_success")
        def record_outcome(decision: dict) -> dict:
            from airloop.monitoring import job

            return job.record_retrain(get_settings(name), decision)

        parts = plan_window()
        compact_logs() >> parts
        window = load_window(parts, profile_part.expand(part=parts))
        published = report(compare(window))
        decision = decide(window, published)
        alert(published, decision)
        retrain_due(decision) >> trigger_retrain >> record_outcome(decision)

    return build()


RETRAIN_DOC = """retrain

Started by `<name>_drift` when live traffic drifts (run conf: `verdict_key`, `verdict_id`, the window and the
report), by REST, or by hand.

- **build_dataset**: the training set by `loop.retrain_policy` (or the `policy` param): the latest dataset
  `<name>_etl` published plus the labelled recent predictions (`latest_plus_window`), only those (`sliding_window`),
  `latest`, or `all_history`; published as a dataset version of its own, so a re-run adds nothing.
- **validate → split → train → register**: the very stages of `<name>_train`, gate included.
- **start_experiment**: a registered challenger gets live traffic at `loop.split` (or shadow) under a new experiment
  id; the retrain's ledger row, linked to the verdict, says what came of it.
"""


def retrain(spec: ModelSpec, settings: Settings) -> DAG:
    """``<name>_retrain``: build_dataset → the training stages → start_experiment."""
    name = spec.name

    @_dag(
        dag_id=spec.dag_id("retrain"),
        start_date=START,
        schedule=None,
        catchup=False,
        max_active_runs=1,
        doc_md=_doc(spec, RETRAIN_DOC),
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
        tags=_tags(spec, "training", "loop"),
    )
    def build():
        @task
        def build_dataset(run_id=None, params=None, dag_run=None) -> dict:
            from airloop.training import retrain

            settings = _authorize(name, dag_run, "retrain")
            return retrain.build(settings, run_id, params.get("policy"), params)

        @task
        def start_experiment(registered: dict, dataset: dict, params=None, dag_run=None) -> dict:
            from airloop.training import retrain

            return retrain.start_experiment(get_settings(name), registered, dataset, params, _actor(dag_run))

        dataset = build_dataset()
        start_experiment(train_and_register(name, dataset), dataset)

    return build()


AB_DOC = """ab_evaluate

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

Every look, promotion and rejection is a row of the model's decision history (`python -m airloop history`).
"""


def ab_evaluate(spec: ModelSpec, settings: Settings) -> DAG:
    """``<name>_ab_evaluate``: evaluate → promote (or approve → promote) / reject / keep running."""
    name = spec.name

    @_dag(
        dag_id=spec.dag_id("ab_evaluate"),
        start_date=START,
        schedule=DeltaTriggerTimetable(timedelta(minutes=settings.loop.evaluation_interval_minutes)),
        catchup=False,
        max_active_runs=1,
        doc_md=_doc(spec, AB_DOC),
        default_args=default_args(retry_delay=timedelta(seconds=20)),
        tags=_tags(spec, "loop", "experiment"),
    )
    def build():
        @task
        def evaluate(dag_run=None) -> dict:
            from airloop.experiments import evaluation

            settings = _authorize(name, dag_run, "evaluate the A/B test of")
            result = evaluation.evaluate(settings, _actor(dag_run), now=dag_run.run_after)
            return {**result, "evidence": evaluation.evidence(result)}

        @task.branch
        def choose(result: dict) -> list[str]:
            if result["action"] == "promote":
                return ["approve"] if get_settings(name).loop.require_approval else ["promote"]
            return ["reject"] if result["action"] == "reject" else []

        approve = PromotionApproval(
            model=name,
            task_id="approve",
            subject=f"Promote {name} to champion?",  # with its version and evidence from the history when it asks
            assigned_users=security.approvers(settings),  # fixed when the DAG is parsed; Airflow checks each answer
            execution_timeout=None,  # a HITL task waits for a person; a time limit would be response_timeout
        )

        @task
        def promote(result: dict, dag_run=None) -> dict:
            from airloop import operations

            # Without an approval only: with loop.require_approval on, `approve` promotes (and this refuses).
            return operations.promote_decided(get_settings(name), result["key"], _actor(dag_run))

        @task
        def reject(result: dict, dag_run=None) -> dict:
            from airloop.experiments import lifecycle

            details = {"evaluation_key": result["key"]}
            key, decided = f"rejection:{result['key']}", lifecycle.decided_versions(result)
            return lifecycle.reject(get_settings(name), _actor(dag_run), result["reason"], details, key, decided)

        result = evaluate()
        branch = choose(result)
        branch >> approve
        branch >> promote(result)
        branch >> reject(result)

    return build()


REGISTRY_DOC = """registry

Operate the model's registry entry from Airflow (UI "Trigger DAG w/ config" or REST API v2) with the `action` param:

- `show`: log the registry table (versions, aliases, gate decisions, scores, datasets);
- `promote`: `challenger` becomes `champion`, the old champion keeps `previous-champion`;
- `rollback`: undo the last promotion (aliases restored exactly as they were);
- `route`: change the live A/B experiment (`weights`, `mode`, `experiment`) that every serving replica follows.

Who triggered the run decides what it may do (`security.users`): `promote` and `rollback` need an `ml_engineer` or
`admin`, `route` an `admin`; anyone else's run fails at once, naming the user, their role and the role needed. Every
action leaves an audit tag naming the user on the versions it touched. The same actions, for whoever holds the
registry's credentials: `python -m airloop registry --model <name> ...`.
"""


def registry(spec: ModelSpec, settings: Settings) -> DAG:
    """``<name>_registry``: apply one registry action as the user who triggered the run."""
    name = spec.name

    @_dag(
        dag_id=spec.dag_id("registry"),
        start_date=START,
        schedule=None,
        catchup=False,
        max_active_runs=1,
        doc_md=_doc(spec, REGISTRY_DOC),
        default_args=default_args(retry_delay=timedelta(seconds=10), execution_timeout=timedelta(minutes=10)),
        params={
            "action": Param("show", type="string", enum=["show", "promote", "rollback", "route"]),
            "weights": Param(
                None, type=["null", "object"], description='action=route: e.g. {"champion": 90, "challenger": 10}'
            ),
            "mode": Param(None, type=["null", "string"], enum=[None, "ab", "shadow"], description="action=route"),
            "experiment": Param(None, type=["null", "string"], description="action=route: a new id reshuffles"),
        },
        tags=_tags(spec, "registry", "mlflow"),
    )
    def build():
        @task
        def apply(params=None, dag_run=None) -> dict:
            from airloop import operations

            routing = {k: params.get(k) for k in ("weights", "mode", "experiment")}
            user = dag_run.triggering_user_name
            return operations.run_action_as(get_settings(name), user, params["action"], _actor(dag_run), routing)

        apply()

    return build()


BATCH_DOC = """batch_score

Scores a whole input with one registered model version and publishes the predictions (ids, probability, class at the
version's threshold, model version) to the artifact store, with the lineage in MLflow.

- **resolve**: fixes the job on the first attempt: the input (the latest published dataset version unless
  `dataset_version` names one; or the configured `file`, `s3` object, `postgres` table or `synthetic` generator,
  `path` / `s3_uri` / `postgres_table` overriding the configured ones), the model version (the `champion`'s unless
  `model_version` names one) and the output's name. A retry scores the same, even after a promotion.
- **score**: reads `chunk_rows` records at a time (default `batch.chunk_rows`), scores each chunk with serving's
  compiled fast path and writes it as a Parquet part; records that cannot be scored go to `rejected-*.parquet` with
  the reason. With `explain_top` N, each row also gets its base value, its score in log-odds and its top N risk
  factors (`airloop.explanations`, the version that scored it), in an output of its own (`...-topN`). The folder
  `<storage>/batch-scores/<dataset>/<job>/` is published all at once.
- **record_lineage**: one run of the MLflow experiment `<experiment>-batch-scoring`: the input dataset and the model
  version as its inputs, the output URL, rows, rejected records and rows per second. Emits the
  `airloop_<dataset>_batch_scores` Asset; skipped (no event) when the output and its run already existed.
"""


def batch_score(spec: ModelSpec, settings: Settings) -> DAG:
    """``<name>_batch_score``: resolve → score (chunk by chunk) → record_lineage."""
    name, dataset = spec.name, Asset(name=spec.asset_name)
    scores = Asset(name=f"airloop_{spec.dataset_name}_batch_scores")

    @_dag(
        dag_id=spec.dag_id("batch_score"),
        start_date=START,
        schedule=None,
        catchup=False,
        max_active_runs=1,  # one job writes batch-scores/ at a time (see airloop.scoring.batch.score)
        doc_md=_doc(spec, BATCH_DOC),
        default_args=default_args(retry_delay=timedelta(seconds=20), execution_timeout=timedelta(hours=2)),
        params={
            "source": Param(
                "dataset", type="string", enum=["dataset", "file", "s3", "postgres", "synthetic"], description="input"
            ),
            "dataset_version": Param(None, type=["null", "string"], description="source=dataset; default: the latest"),
            "path": Param(None, type=["null", "string"], description="source=file; default: data.path"),
            "s3_uri": Param(None, type=["null", "string"], description="source=s3; default: data.s3_uri"),
            "postgres_table": Param(None, type=["null", "string"], description="source=postgres; default: the spec's"),
            "model_version": Param(None, type=["null", "string"], description="default: the champion's version"),
            "chunk_rows": Param(None, type=["null", "integer"], minimum=1, description="default: batch.chunk_rows"),
            "explain_top": Param(
                None,
                type=["null", "integer"],
                minimum=0,
                maximum=50,
                description="write each row's top N risk factors (base value, log-odds score, factors); none: off",
            ),
        },
        tags=_tags(spec, "scoring", "mlflow"),
    )
    def build():
        @task(inlets=[dataset])
        def resolve(params=None, run_id=None, dag_run=None) -> dict:
            from airloop.scoring import batch

            settings = _authorize(name, dag_run, "batch-score with")
            return batch.resolve(settings, params, run_id, dag_run.triggering_user_name)

        @task(execution_timeout=timedelta(hours=2))
        def score(job: dict) -> dict:
            from airloop.scoring import batch

            return batch.score(get_settings(name), job)

        @task(outlets=[scores])
        def record_lineage(job: dict, result: dict, outlet_events=None) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from airloop.scoring import batch

            lineage = batch.record_lineage(get_settings(name), job, result)
            if not (result["created"] or lineage["created"]):  # nothing new: no Asset event for the same output again
                raise AirflowSkipException(f"already scored and logged: {job['output_url']} ({lineage['url']})")
            outlet_events[scores].extra = {
                "output": job["output_url"],
                "input": job["input_uri"],
                "model_version": job["model_version"],
                "rows": result["rows"],
                "mlflow_run_id": lineage["run_id"],
            }
            return lineage

        job = resolve()
        record_lineage(job, score(job))

    return build()


BUILDERS: dict[str, Callable[[ModelSpec, Settings], DAG]] = {
    "etl": etl,
    "train": train,
    "drift": drift,
    "retrain": retrain,
    "ab_evaluate": ab_evaluate,
    "registry": registry,
    "batch_score": batch_score,
}


class BrokenSpecs(ValueError):
    """Model spec files that cannot be used, each named with its key and what was expected."""


BROKEN_DAG_ID = "airloop_broken_specs"
BROKEN_DOC = """### airloop_broken_specs

**These model spec files cannot be used**, so they have no DAGs; every other model's DAGs are unaffected. Fix the
file (each line names it, the key and what was expected) and its seven DAGs appear at the next parse, this DAG goes.
Running this DAG fails with the same errors. `python -m airloop models` lists them too.

"""


def broken_specs(errors: list[str]) -> DAG:
    """The DAG that shows broken spec files in the Airflow UI (tag ``broken-spec``): its docs list them, its one task
    fails with them. Not an import error on purpose: Airflow marks every DAG of a file with an import error stale,
    which would stop every other model's DAGs from being scheduled."""
    text = "\n".join(errors)

    @_dag(
        dag_id=BROKEN_DAG_ID,
        start_date=START,
        schedule=None,
        catchup=False,
        doc_md=BROKEN_DOC + "\n".join(f"- `{e}`" for e in errors),
        default_args=default_args(retries=0),
        tags=["airloop", "broken-spec"],
    )
    def build():
        @task
        def report() -> None:
            raise BrokenSpecs(text)

        report()

    return build()


def dags_of(spec: ModelSpec, settings: Settings) -> dict[str, DAG]:
    """The seven DAGs of one model, by dag id."""
    return {spec.dag_id(stage): BUILDERS[stage](spec, settings) for stage in STAGES}


def build_all(catalog: Catalog | None = None, models: Iterable[str] | None = None) -> dict[str, DAG]:
    """Every valid spec's DAGs by dag id (only ``models`` when given), plus ``airloop_broken_specs`` when some spec file
    is broken (its docs and its task name each file, key and what was expected; the parse log says so too).

    A worker that parses the file to run one task builds that task's DAG alone (Airflow's parsing context names it),
    not the seven DAGs of every model."""
    from airflow.sdk import get_parsing_context

    base = get_settings()
    catalog = catalog or base.catalog
    wanted = set(models) if models is not None else None
    running = get_parsing_context().dag_id
    if not catalog.folder.is_dir():  # else silence: a worker would only say its task's DAG is missing, and retry
        log.error(
            "models.folder %s is not a folder, so no model has DAGs (a relative one is resolved against the working"
            " directory, here %s: set AIRLOOP_MODELS__FOLDER to an absolute path, as the images do)",
            catalog.folder,
            Path.cwd(),
        )
    out: dict[str, DAG] = {}

    def settings_of(name: str) -> Settings:  # the default model's are the base settings: not read twice
        return base if base.model == name else get_settings(name)

    for name, spec in sorted(catalog.specs.items()):
        if wanted is not None and name not in wanted:
            continue
        if running is None:
            out.update(dags_of(spec, settings_of(name)))
            continue
        for stage in STAGES:
            if spec.dag_id(stage) == running:
                out[running] = BUILDERS[stage](spec, settings_of(name))
    if catalog.errors and running in (None, BROKEN_DAG_ID):
        errors = [str(error) for error in catalog.errors.values()]
        for error in errors:
            log.error("%s: it has no DAGs until it is fixed", error)
        out[BROKEN_DAG_ID] = broken_specs(errors)
    return out
