"""A promotion that needs approval, and the roles around it, on a real Airflow: `airflow standalone` (scheduler,
DAG processor, API server, triggerer) in its own AIRFLOW_HOME on a free port, not dag.test().

The registry (champion v1, challenger v2 in a 50/50 A/B experiment) and labelled traffic in which the challenger is
clearly better are prepared in this process first. Airflow has airloop's users (security.users: viewer, scientist,
engineer, admin), each signing in with the password Airflow generated. The viewer sees the DAGs but may not trigger
readmission_etl (403). The data scientist triggers readmission_ab_evaluate, which evaluates "promote" and parks
`approve` in `awaiting_input`, and readmission_registry `route`, which fails naming the role it needs. Nothing is
promoted while `approve` waits; the data scientist's answer through the REST API (PATCH
.../taskInstances/approve/-1/hitlDetails) is refused (403) and the run keeps waiting; the ML engineer's is taken and
only then does `approve` promote, reading who answered from Airflow's own HITL record (never an XCom): v2 becomes
champion, v1 previous-champion, routing 100/0, and the promotion row of the decision history names the approver.

In the same Airflow, the findings of issue 20 are replayed through the REST API as the users would, each refused:

- the password-file attack: the data scientist triggers readmission_etl with `path` set to Airflow's generated
  password file; `extract` fails at its first try naming the param and the rule (data.access.file_roots), no password
  is in any task log of the run, and nothing was staged, quarantined or published;
- a forged approval: while `approve` waits, the data scientist tries to write an XCom "Approve by engineer" on
  `approve` and to rewrite `choose`'s branch record so that `promote`, the path without an approval, may run (403:
  only admins write XComs under TeamAuthManager), then clears `promote`: it is skipped again, nothing moves, no
  promotion is recorded;
- another team's data scientist (in no team; readmission is team care's) may not trigger or unpause its DAGs (403
  from airloop's TeamAuthManager), though he sees them;
- a replayed approval: the data scientist clears the approved run's `approve`; it fails before asking anyone, naming
  the versions the decision was made for: once after the engineer rolled v2 back (the registry holds champion v1,
  challenger v2 again: the decision was carried out already), once after a newer version became challenger. Nothing
  moves, one promotion row.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.pg_server import free_port
from tests.specs import READMISSION

pytestmark = pytest.mark.dag

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "readmission_ab_evaluate"
REGISTRY = "readmission_registry"
ETL = "readmission_etl"
MODEL = "readmission"
ROWS_PER_ARM = 3500
DRIFT = {"covariate_drift": 2.0, "concept_drift": 2.0}
OUTSIDER = "outsider"  # a data scientist of no team: readmission belongs to team care
AWAITING_INPUT = "awaiting_input"  # airflow.utils.state.TaskInstanceState.AWAITING_INPUT (Airflow 3.3)


def fit(rows: int, seed: int, **drift: float):
    """The production candidate (logistic regression in the airloop Pipeline) fitted on one synthetic batch."""
    from airloop.training import features
    from airloop.usecases.readmission.synthetic import generate
    from airloop.usecases.readmission.transform import prepare

    frame = prepare(generate(rows, seed, **drift))
    model = features.make_pipeline(READMISSION, "logistic_regression", {"C": 0.5}, 42)
    return model.fit(features.model_inputs(READMISSION, frame), frame["readmitted_30d"].to_numpy())


def register(settings, models) -> list[str]:
    """Log and register each model as the next version of the registered model, as training does."""
    import mlflow

    from airloop.registry.client import connect
    from airloop.training import features
    from airloop.training.model_io import log_sklearn_model

    connect(settings, create_experiment=True)
    versions = []
    for model in models:
        with mlflow.start_run():
            info = log_sklearn_model(
                model,
                name="model",
                skops_trusted_types=features.skops_trusted_types(model),
                pip_requirements=["scikit-learn"],
            )
        versions.append(str(mlflow.register_model(info.model_uri, MODEL).version))
    return versions


def write_traffic(settings, experiment: str, champion, challenger) -> None:
    """Labelled A/B traffic on post-drift encounters: half scored by each variant, outcomes fed back."""
    from airloop.predlog import FeedbackRow, PredictionRow, feedback_log, prediction_log
    from airloop.registry.contract import Alias
    from airloop.training import features
    from airloop.usecases.readmission.synthetic import generate
    from airloop.usecases.readmission.transform import prepare

    frame = prepare(generate(int(ROWS_PER_ARM * 2 * 1.5), seed=777, **DRIFT)).head(2 * ROWS_PER_ARM)
    assert len(frame) == 2 * ROWS_PER_ARM, len(frame)
    inputs = features.model_inputs(READMISSION, frame)
    outcomes = frame["readmitted_30d"].astype(int).tolist()
    arms = [
        (Alias.CHAMPION.value, "1", champion, slice(0, ROWS_PER_ARM)),
        (Alias.CHALLENGER.value, "2", challenger, slice(ROWS_PER_ARM, 2 * ROWS_PER_ARM)),
    ]
    predicted_at = time.time()  # after the experiment started: the evaluation window begins there
    predictions, feedback = [], []
    for variant, version, model, rows in arms:
        records = inputs.iloc[rows]
        probabilities = model.predict_proba(records)[:, 1]
        entities = frame["patient_nbr"].iloc[rows].astype(str).tolist()
        for record, probability, entity, outcome in zip(
            records.to_dict("records"), probabilities, entities, outcomes[rows], strict=True
        ):
            request_id = uuid.uuid4().hex
            predictions.append(
                PredictionRow(
                    request_id=request_id,
                    predicted_at=predicted_at,
                    experiment_id=experiment,
                    variant=variant,
                    model_version=version,
                    entity_id=entity,
                    probability=float(probability),
                    predicted_class=int(probability >= 0.5),
                    shadow=False,
                    record=record,
                )
            )
            feedback.append(FeedbackRow(request_id=request_id, outcome=int(outcome), received_at=time.time()))
    for writer, rows in ((prediction_log(settings), predictions), (feedback_log(settings), feedback)):
        writer.append(rows)
        assert writer.flush() == len(rows)


@pytest.fixture
def loop_settings(tmp_path):
    """Settings of the Airflow under test: its own home, a free port, approval required, 100 rows per arm."""
    from airloop.settings import Settings

    return Settings(
        home=tmp_path / "home",
        airflow={
            "port": free_port(),
            "host": "127.0.0.1",
            "dags_folder": REPO / "dags",
            "plugins_folder": REPO / "plugins",
        },
        loop={"require_approval": True, "min_rows": 100},
        security={"users": {OUTSIDER: "data_scientist"}},  # added to the shipped users; in neither team
    )


@pytest.fixture
def experiment(loop_settings):
    """champion v1 (pre-drift), challenger v2 (post-drift) in a 50/50 A/B experiment, with labelled traffic in which
    the challenger is clearly better; checked in process (without recording a look) to decide "promote"."""
    from airloop import history
    from airloop.experiments import evaluation, lifecycle
    from airloop.ledger import Kind
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias

    settings = loop_settings
    champion, challenger = fit(4000, seed=1), fit(4000, seed=2, **DRIFT)
    assert register(settings, [champion, challenger]) == ["1", "2"]
    client = connect(settings)
    client.set_registered_model_alias(MODEL, Alias.CHAMPION, "1")
    client.set_registered_model_alias(MODEL, Alias.CHALLENGER, "2")
    started = lifecycle.start(
        settings, "2", "test", {Alias.CHAMPION.value: 50, Alias.CHALLENGER.value: 50}, "ab", key="start:test"
    )
    experiment_id = started["experiment"]["experiment"]
    time.sleep(0.05)
    write_traffic(settings, experiment_id, champion, challenger)

    start = history.rows(settings, kind=Kind.EXPERIMENT_STARTED)[0].decided_at
    rows = evaluation.labelled_rows(settings, experiment_id, start, datetime.now(UTC) + timedelta(seconds=1))
    assert len(rows) == 2 * ROWS_PER_ARM
    look = evaluation.look(settings, rows, "1", "2", paired=False)
    assert look["action"] == "promote", look
    assert history.rows(settings, kind=Kind.EVALUATION) == []  # the look above recorded nothing
    return experiment_id


def airflow_environment(settings) -> dict[str, str]:
    """The demo's Airflow environment, made independent of this test session's and of any demo's Airflow."""
    from airloop.cli.demo import airflow_env

    env = airflow_env(settings)
    env.update(
        {
            # tests/conftest.py points the session's Airflow at its own DB: this Airflow gets a DB of its own.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{settings.airflow_home / 'airflow.db'}",
            # Task processes reach the Execution API here; the default is http://localhost:8080/execution/.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow.url}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # No scheduled runs: with max_active_runs=1 a scheduled run waiting for approval would hold back ours.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRLOOP_HOME": str(settings.home),
            "AIRLOOP_LOOP__REQUIRE_APPROVAL": "true",
            "AIRLOOP_LOOP__MIN_ROWS": "100",
            "AIRLOOP_SECURITY__USERS": json.dumps({OUTSIDER: "data_scientist"}),
        }
    )
    return env


def log_tail(service, lines: int = 60) -> str:
    try:
        return "\n".join(service.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


def task_logs(settings, dag_id: str, run_id: str, task_id: str = "*", attempt: int | str = "*") -> str:
    """The task logs of a run (every task and try, or one task, or one try of it), as Airflow wrote them under
    AIRFLOW_HOME/logs."""
    run = settings.airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    logs = sorted(run.glob(f"task_id={task_id}/attempt={attempt}.log"))
    return "".join(path.read_text(errors="replace") for path in logs)


def clear(person, dag_id: str, run_id: str, task_ids: list[str], **options):
    """What the UI's "Clear" does for a person: POST .../clearTaskInstances (not a dry run, whatever the state)."""
    body = {"dag_run_id": run_id, "task_ids": task_ids, "dry_run": False, "only_failed": False, **options}
    return person.http.post(f"/api/v2/dags/{dag_id}/clearTaskInstances", json=body)


def parked(airflow, run_id: str, ti_id: str) -> bool:
    """Whether the scheduler has processed the exit of the worker that parked try ``ti_id`` of ``approve``."""
    line = f"TaskInstance Finished: dag_id={DAG_ID}, task_id=approve, run_id={run_id}, map_index=-1, ti_id={ti_id},"
    return line in airflow.log.read_text(errors="replace")


@pytest.mark.security
def test_promotion_waits_for_a_person_and_follows_the_approval_given_by_rest(loop_settings, experiment):
    from airloop import history
    from airloop.cli.demo import (
        PASSWORD_FILE,
        AirflowClient,
        generated_password,
        standalone_command,
        state_file,
        wait_until,
    )
    from airloop.cli.supervisor import Supervisor, members
    from airloop.data.store import dataset_store
    from airloop.experiments.live import get_live
    from airloop.experiments.routing import default_routing
    from airloop.ledger import Kind
    from airloop.registry import aliases as reg
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias

    settings = loop_settings
    registry = connect(settings)

    def aliases() -> dict[Alias, str]:
        return reg.aliases(registry, MODEL)

    began = time.monotonic()
    with Supervisor(state_file(settings), settings.logs_dir) as supervisor:
        airflow = supervisor.start(
            "airflow-standalone", standalone_command(),
            airflow_environment(settings),
        )  # fmt: skip
        groups = [airflow.group]
        # A later model version (no alias yet) for the last replay, registered while Airflow starts.
        (newer,) = register(settings, [fit(4000, seed=3, **DRIFT)])
        team = list(settings.security.users)
        assert team == ["viewer", "scientist", "engineer", "admin", OUTSIDER], team
        wait_until(
            lambda: all(generated_password(settings, name) for name in team), "the generated passwords", 240, airflow
        )

        def login(name: str) -> AirflowClient:
            return AirflowClient(settings.airflow.url, name, generated_password(settings, name))

        viewer = wait_until(lambda: login("viewer"), "the API server", 240, airflow)
        scientist, engineer = login("scientist"), login("engineer")
        client = viewer  # reads below: a viewer sees everything
        for dag_id in (DAG_ID, REGISTRY, ETL):
            wait_until(lambda d=dag_id: viewer.dag_exists(d), f"Airflow to parse {dag_id}", 240, airflow)

        # A viewer sees but may not trigger.
        refused = viewer.http.post(f"/api/v2/dags/{ETL}/dagRuns", json={"logical_date": None, "conf": {}})
        assert refused.status_code == 403, refused.text
        assert viewer.latest_run(ETL) is None

        # Replay: another team's data scientist. Airflow's `user` role may trigger any DAG; airloop's auth manager
        # (TeamAuthManager) refuses it on team care's model: no trigger, no unpause, but he sees it (a viewer there).
        outsider = login(OUTSIDER)
        for dag_id in (ETL, DAG_ID, REGISTRY):
            run = outsider.http.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {}})
            assert run.status_code == 403, run.text
        assert outsider.http.patch(f"/api/v2/dags/{ETL}", json={"is_paused": False}).status_code == 403
        assert outsider.http.get(f"/api/v2/dags/{ETL}").status_code == 200
        assert viewer.latest_run(ETL) is None

        # A data scientist triggers the evaluation, and a routing change that its run refuses (it needs an admin).
        scientist.unpause(DAG_ID)
        run_id = scientist.trigger(DAG_ID, {})
        scientist.unpause(REGISTRY)
        route_run = scientist.trigger(REGISTRY, {"action": "route", "weights": {"champion": 0, "challenger": 100}})
        run_api = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}"
        hitl = f"{run_api}/taskInstances/approve/-1/hitlDetails"

        # Replay: the password-file attack. The data scientist (who may trigger the ETL) points its source at the
        # file of passwords Airflow generated; checked once the run is over, below.
        secret = settings.airflow_home / PASSWORD_FILE
        scientist.unpause(ETL)
        etl_run = scientist.trigger(ETL, {"source": "file", "path": str(secret)})

        def approve_waiting() -> bool:
            if client.run_state(DAG_ID, run_id) == "failed":
                raise AssertionError(f"{run_id} failed: {client.task_states(DAG_ID, run_id)}\n{log_tail(airflow)}")
            return client.task_states(DAG_ID, run_id).get("approve") == AWAITING_INPUT

        wait_until(approve_waiting, "approve to wait for a person", 240, airflow, every=2)
        waiting_since = time.monotonic()

        # Waiting for a person: evaluated "promote", nothing promoted yet.
        states = client.task_states(DAG_ID, run_id)
        assert states["evaluate"] == "success" and states["choose"] == "success", states
        assert states["promote"] == "skipped" and states["reject"] == "skipped", states
        assert client.run_state(DAG_ID, run_id) == "running"
        assert aliases() == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"}
        evaluations = history.rows(settings, kind=Kind.EVALUATION)
        assert len(evaluations) == 1, evaluations
        look = evaluations[0]
        assert look.payload["action"] == "promote" and look.outcome == "promote", look
        assert look.decided_by == f"airflow:{DAG_ID}/{run_id}"
        assert history.rows(settings, kind=Kind.PROMOTION) == []

        detail = client.http.get(hitl)
        assert detail.status_code == 200, detail.text
        request = detail.json()
        assert request["options"] == ["Approve", "Reject"] and not request["response_received"], request
        assert {u["id"] for u in request["assigned_users"]} == {"engineer", "admin"}, request["assigned_users"]
        assert request["subject"] == "Promote readmission v2 to champion?", request["subject"]
        assert "labelled" in request["body"] and f"| challenger | {ROWS_PER_ARM} |" in request["body"], request["body"]

        # Replay: a forged approval. SimpleAuthManager lets Airflow's `user` role write any XCom of a run; airloop's
        # auth manager lets admins only (403): the data scientist can neither write an "Approve" by engineer as
        # approve's result nor rewrite choose's branch record so that `promote` (the path without an approval) counts
        # as followed. Clearing `promote` then only skips it again. Nothing moves.
        forged = {
            "chosen_options": ["Approve"],
            "params_input": {},
            "responded_at": datetime.now(UTC).isoformat(),
            "responded_by_user": {"id": "engineer", "name": "engineer"},
        }
        wrote = scientist.http.post(
            f"{run_api}/taskInstances/approve/xcomEntries", json={"key": "return_value", "value": forged}
        )
        assert wrote.status_code == 403, wrote.text
        followed = {"followed": ["approve", "promote"]}
        branch = scientist.http.patch(
            f"{run_api}/taskInstances/choose/xcomEntries/skipmixin_key", json={"value": followed}
        )
        assert branch.status_code == 403, branch.text
        viewer_wrote = viewer.http.post(f"{run_api}/taskInstances/approve/xcomEntries", json={"key": "x", "value": 1})
        assert viewer_wrote.status_code == 403, viewer_wrote.text  # a viewer writes nothing
        assert clear(viewer, DAG_ID, run_id, ["promote"]).status_code == 403
        cleared = clear(scientist, DAG_ID, run_id, ["promote"], reset_dag_runs=False)
        assert cleared.status_code == 200, cleared.text
        assert [ti["task_id"] for ti in cleared.json()["task_instances"]] == ["promote"], cleared.text

        def promote_done() -> str | None:
            state = client.task_states(DAG_ID, run_id).get("promote")
            return state if state in ("success", "failed", "skipped", "upstream_failed") else None

        forged_promote = wait_until(promote_done, "the cleared promote to run", 180, airflow)
        assert forged_promote == "skipped", (
            f"{client.task_states(DAG_ID, run_id)}\n{task_logs(settings, DAG_ID, run_id, 'promote')[-3000:]}"
        )
        assert aliases() == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"}
        assert history.rows(settings, kind=Kind.PROMOTION) == []
        assert client.task_states(DAG_ID, run_id)["approve"] == AWAITING_INPUT
        assert not client.http.get(hitl).json()["response_received"]

        # Answer only once the scheduler has processed the exit of the worker that parked the task (about 5 s after
        # parking here). Airflow 3.3.2 races otherwise: an answer that resumes the task first gets it re-queued with
        # the same try number, the late "success" event of the parking worker then marks it up_for_retry, and the
        # retry asks again (the answer is lost). A person never answers that fast; a script could.
        first_ask = client.http.get(f"{run_api}/taskInstances/approve").json()
        wait_until(lambda: parked(airflow, run_id, first_ask["id"]), "the parked worker's exit", 120, airflow)
        assert client.task_states(DAG_ID, run_id)["approve"] == AWAITING_INPUT  # still waiting: nothing times out
        assert aliases() == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"}

        # Only the approvers may answer: the viewer and the data scientist are refused, the run keeps waiting.
        for person in (viewer, scientist):
            denied = person.http.patch(hitl, json={"chosen_options": ["Approve"], "params_input": {}})
            assert denied.status_code == 403, denied.text
        assert "User=scientist (id=scientist) is not a respondent" in denied.json()["detail"], denied.text
        assert not client.http.get(hitl).json()["response_received"]
        assert client.task_states(DAG_ID, run_id)["approve"] == AWAITING_INPUT
        assert aliases() == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"}

        answer = engineer.http.patch(hitl, json={"chosen_options": ["Approve"], "params_input": {}})
        assert answer.status_code == 200, answer.text
        assert answer.json()["responded_by"]["name"] == "engineer" and answer.json()["chosen_options"] == ["Approve"]

        def finished() -> str | None:
            approve = client.task_states(DAG_ID, run_id).get("approve")
            if approve in ("up_for_retry", "failed", AWAITING_INPUT):  # asked again: the answer was lost
                raise AssertionError(f"approve is {approve} after the approval\n{log_tail(airflow)}")
            state = client.run_state(DAG_ID, run_id)
            return state if state in ("success", "failed") else None

        state = wait_until(finished, f"{DAG_ID} run {run_id} to finish after the approval", 180, airflow)
        states = client.task_states(DAG_ID, run_id)
        assert states == {
            "evaluate": "success",
            "choose": "success",
            "approve": "success",
            "promote": "skipped",  # cleared by the forged replay above, skipped again
            "reject": "skipped",
        }, f"{states}\n{log_tail(airflow)}"
        assert state == "success", states
        assert aliases() == {Alias.CHAMPION: "2", Alias.PREVIOUS: "1"}
        approve = client.http.get(f"{run_api}/taskInstances/approve").json()
        assert approve["try_number"] == 1, approve  # approved at the first ask, not after a retry
        answered = client.http.get(hitl).json()
        assert answered["response_received"] and answered["chosen_options"] == ["Approve"], answered
        assert answered["responded_by_user"]["name"] == "engineer"
        again = engineer.http.patch(hitl, json={"chosen_options": ["Reject"], "params_input": {}})
        assert again.status_code == 409, again.text  # one answer only

        approved_after = time.monotonic() - began
        live = get_live(registry, MODEL, default_routing(settings))
        assert live.weights == {Alias.CHAMPION.value: 100.0, Alias.CHALLENGER.value: 0.0}
        assert live.experiment == f"{MODEL}-v2"

        # Replays of the approved decision. Each time the data scientist clears the finished run's `approve`, it
        # fails before asking anyone (no new approval request): the decision can no longer be carried out, and the
        # refusal names the versions it was made for. Nothing moves.
        def replay_approval(try_number: int) -> str:
            """The log of the approve try that the data scientist's clear made."""
            assert clear(viewer, DAG_ID, run_id, ["approve"]).status_code == 403
            cleared = clear(scientist, DAG_ID, run_id, ["approve"])
            assert cleared.status_code == 200, cleared.text
            assert [ti["task_id"] for ti in cleared.json()["task_instances"]] == ["approve"], cleared.text

            def refused() -> str | None:
                ti = client.http.get(f"{run_api}/taskInstances/approve").json()
                if ti["state"] in ("up_for_retry", AWAITING_INPUT):
                    raise AssertionError(f"the replayed approve is {ti['state']}: it asked\n{log_tail(airflow)}")
                return ti["state"] if ti["state"] in ("success", "failed") and ti["try_number"] >= try_number else None

            done = wait_until(refused, "the replayed approve to finish", 180, airflow)
            logged = task_logs(settings, DAG_ID, run_id, "approve", try_number)
            assert done == "failed", logged[-3000:]
            return logged

        # 1. The engineer rolls v2 back: the registry holds exactly the versions the decision was made for again.
        rollback_run = engineer.trigger(REGISTRY, {"action": "rollback"})
        rolled_back = wait_until(
            lambda: (s := client.run_state(REGISTRY, rollback_run)) in ("success", "failed") and s,
            f"{REGISTRY} run {rollback_run}", 120, airflow,
        )  # fmt: skip
        assert rolled_back == "success", client.task_states(REGISTRY, rollback_run)
        assert aliases() == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"}
        refusal = replay_approval(2)
        carried_out = (
            "RegistryActionError: cannot promote: it was decided for readmission champion v1, challenger v2 and "
            "carried out already (history #"
        )
        assert carried_out in refusal, refusal[-3000:]
        assert aliases() == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"}
        assert len(history.rows(settings, kind=Kind.PROMOTION)) == 1

        # 2. Training makes a newer version challenger.
        registry.set_registered_model_alias(MODEL, Alias.CHALLENGER, newer)
        refusal = replay_approval(3)
        changed = (
            "RegistryActionError: cannot promote: it was decided for readmission challenger v2, and the registry's "
            f"challenger is now v{newer}"
        )
        assert changed in refusal, refusal[-3000:]
        assert aliases() == {Alias.CHAMPION: "1", Alias.CHALLENGER: newer}
        assert len(history.rows(settings, kind=Kind.PROMOTION)) == 1

        # The data scientist's routing change failed at once (no retry), naming who, their role and the role needed.
        routed = wait_until(
            lambda: (s := client.run_state(REGISTRY, route_run)) in ("success", "failed") and s,
            f"{REGISTRY} run {route_run}", 120, airflow,
        )  # fmt: skip
        assert routed == "failed", client.task_states(REGISTRY, route_run)
        apply = client.http.get(f"/api/v2/dags/{REGISTRY}/dagRuns/{route_run}/taskInstances/apply").json()
        assert apply["state"] == "failed" and apply["try_number"] == 1, apply
        logged = task_logs(settings, REGISTRY, route_run)
        assert "user 'scientist' may not route: it has role data_scientist" in logged, logged[-3000:]
        assert "route needs admin" in logged, logged[-3000:]

        # The password-file attack failed at extract at once, naming the param and the rule, not the value; it read
        # nothing: no password in any task log of the run, nothing staged, quarantined or published.
        etl_state = wait_until(
            lambda: (s := client.run_state(ETL, etl_run)) in ("success", "failed") and s, f"{ETL} run {etl_run}", 120,
            airflow,
        )  # fmt: skip
        etl_states = client.task_states(ETL, etl_run)
        assert etl_state == "failed" and etl_states.pop("extract") == "failed", etl_states
        assert set(etl_states.values()) == {"upstream_failed"}, etl_states
        extract = client.http.get(f"/api/v2/dags/{ETL}/dagRuns/{etl_run}/taskInstances/extract").json()
        assert extract["try_number"] == 1, extract
        etl_logged = task_logs(settings, ETL, etl_run)
        rule = "SourceRefused: param path: not below an allowed folder (data.access.file_roots"
        assert rule in etl_logged, etl_logged[-3000:]
        assert PASSWORD_FILE not in etl_logged  # the refusal names the param and the rule, never the value
        passwords = json.loads(secret.read_text())
        assert set(passwords) == set(team), passwords.keys()
        assert [name for name, password in passwords.items() if password in etl_logged] == []
        assert settings.layout.staging(etl_run).walk_files() == []
        assert settings.layout.quarantine(settings.data.dataset_name).published_dirs() == []
        assert dataset_store(settings).versions() == []
        total = time.monotonic() - began
        print(
            f"approval test: Airflow up and waiting after {waiting_since - began:.0f}s, promoted after "
            f"{approved_after:.0f}s, replays done after {total:.0f}s"
        )

    assert not any(members(groups).values()), members(groups)  # nothing of Airflow is left running

    assert aliases() == {Alias.CHAMPION: "1", Alias.CHALLENGER: newer}
    live = get_live(registry, MODEL, default_routing(settings))  # the rollback restored the experiment
    assert live.weights == {Alias.CHAMPION.value: 50.0, Alias.CHALLENGER.value: 50.0}
    assert live.experiment == f"{MODEL}-v1-vs-v2"
    promotions = history.rows(settings, kind=Kind.PROMOTION)
    assert len(promotions) == 1, promotions
    promotion = promotions[0]
    assert promotion.decided_by == "approved by engineer", promotion.decided_by
    assert promotion.key == f"promotion:{look.key}" and promotion.payload["evaluation_key"] == look.key
    assert promotion.payload["approval"]["chosen_options"] == ["Approve"], promotion.payload
    assert promotion.payload["promoted"] == "2"
    (rollback,) = history.rows(settings, kind=Kind.ROLLBACK)
    assert rollback.decided_by == f"airflow:{REGISTRY}/{rollback_run} by engineer", rollback.decided_by
    routings = history.rows(settings, kind=Kind.ROUTING_CHANGED)
    assert not [r for r in routings if r.decided_by.endswith(" by scientist")], routings  # the refused route
