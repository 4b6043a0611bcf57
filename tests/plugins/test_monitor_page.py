"""The model monitor page: what it shows of a real registry and ledger, for each of two models (readmission and a
second spec, churn, with a broken spec file beside them) and nothing of one in the other's view, that Airflow's API
server mounts it only for signed-in users, the drift reports it serves, and, in headless Chromium: the page alone
(with a screenshot for the README), the switch to another model, its Promote and Roll back buttons through the
readmission_registry runs they start, a waiting approval, the page inside the Airflow UI, and all of it under an
``[api] base_url`` sub-path (a real ``airflow api-server``)."""

from __future__ import annotations

import base64
import functools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.champion import settings_env
from tests.conftest import REPO
from tests.pg_server import free_port
from tests.plugins import airflow_runs
from tests.plugins.devtools import chromium_page, wait
from tests.s3_server import ACCESS_KEY, SECRET_KEY, s3_server
from tests.specs import READMISSION

__all__ = ["s3_server"]  # the session fixture, imported so pytest finds it here

README_SCREENSHOT = REPO / "docs" / "images" / "model-monitor.png"


def screenshot_path(tmp_path: Path) -> Path:
    """Where the browser test saves its screenshot: the README's image only when AIRLOOP_UPDATE_SCREENSHOTS=1 (so a
    test run never changes a tracked file), else the test's temp folder."""
    return README_SCREENSHOT if os.environ.get("AIRLOOP_UPDATE_SCREENSHOTS") == "1" else tmp_path / "model-monitor.png"


CHAMPION, CHALLENGER = "champion", "challenger"
REGISTRY_DAG, APPROVAL_DAG = "readmission_registry", "readmission_ab_evaluate"
SECOND = "churn"  # a second valid spec: a copy of models/readmission.yaml under another name
BROKEN = "broken"  # a spec file that does not validate
BROKEN_SPEC = "name: broken\ndescription: no data, no features\nwidgets: 3\n"
SECOND_VERDICT_REASON = "1% of churn's features drifted"
REPORT_TITLE = "Drift report: readmission v1"
NEWEST_WINDOW_END = datetime(2026, 11, 25, 10, tzinfo=UTC)


@functools.cache
def drifted_window():
    """The drift comparison the monitor's reports show (computed once): a covariate-drifted window of synthetic
    encounters, scored by a fitted pipeline, every other outcome arrived, against the reference profile of that
    pipeline's training rows and test-set probabilities."""
    from sklearn import metrics

    from airloop.monitoring.drift import compare
    from airloop.training import features
    from airloop.usecases.readmission import synthetic
    from airloop.usecases.readmission import transform as tf

    def batch(rows: int, seed: int, drift: float = 0.0):
        return tf.prepare(synthetic.generate(rows, seed=seed, covariate_drift=drift))

    # Enough training rows for calibrated probabilities, which the estimate assumes (the training DAG's candidates).
    train, test, window = batch(12_000, 1), batch(2_000, 2), batch(1_000, 3, drift=1.5)
    model = features.make_pipeline(READMISSION, "hist_gradient_boosting", {}, seed=0)
    model.fit(features.model_inputs(READMISSION, train), features.target(READMISSION, train))
    x_test, y_test = features.model_inputs(READMISSION, test), features.target(READMISSION, test).to_numpy()
    test_proba = model.predict_proba(x_test)[:, 1]
    profile = features.reference_profile_of(
        model,
        features.model_inputs(READMISSION, train),
        test_proba,
        {"roc_auc": metrics.roc_auc_score(y_test, test_proba)},
        features.feature_importance(model, x_test, y_test, seed=0),
        y_test,
    )
    outcomes = features.target(READMISSION, window).to_numpy(dtype=float)
    outcomes[::2] = np.nan  # the other half is still within its 30 days
    return compare(
        json.loads(json.dumps(profile)),
        features.feature_step(model).transform(features.model_inputs(READMISSION, window)),
        probabilities=model.predict_proba(features.model_inputs(READMISSION, window))[:, 1],
        outcomes=outcomes,
    )


def publish_drift_report(settings, window_end: datetime) -> dict[str, Any]:
    """The report of ``drifted_window`` for champion v1, published below the runtime root's reports as the drift DAG
    publishes it. Returns the summary the drift DAG keeps in the ledger (``airloop.monitoring.job.summary``), with the
    HTML report's URL."""
    from airloop.monitoring.job import summary
    from airloop.monitoring.report import ReportContext, publish_report, render_html, render_json

    context = ReportContext(
        model_name=settings.mlflow.model_name,
        model_version="1",
        window_start=window_end - timedelta(hours=1),
        window_end=window_end,
        source="prediction_log",
        variant=CHAMPION,
        created_at=window_end,
    )
    report = render_json(drifted_window(), context)
    return summary(report, publish_report(settings.layout.root, report, render_html(report)).html_url)


def _prepare_registry(settings) -> dict[str, Any]:
    """Two registered versions with their records, champion v1 / challenger v2 under a 90/10 A/B experiment, two
    drift verdicts (the newest with a published HTML report) and one evaluation in the ledger."""
    from airloop.experiments import lifecycle
    from airloop.ledger import Kind, ledger
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias, VersionRecord
    from airloop.training.evaluate import importance_metrics

    name = settings.mlflow.model_name
    connect(settings, create_experiment=True)
    x = np.random.default_rng(0).normal(size=(40, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    runs = []
    for version, auc in (("1", 0.71), ("2", 0.74)):
        with mlflow.start_run() as run:
            mlflow.log_metrics({"test_roc_auc": auc, "validation_roc_auc": auc - 0.01})
            mlflow.log_metrics({"group.age_band.60-80.roc_auc": auc - 0.02, "group.age_band.60-80.rows": 400})
            mlflow.log_metrics(importance_metrics({"number_inpatient": 0.04, "age": 0.01, "diag_1": auc / 10}))
            info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        mlflow.register_model(info.model_uri, name)
        record = VersionRecord(
            dataset_version=f"2026-11-2{version}T00-00-00Z",
            training_run_id=run.info.run_id,
            decision="champion" if version == "1" else "challenger",
            decided_by="dag:readmission_train",
            decided_at=f"2026-11-2{version}T01:00:00+00:00",
        )
        client = connect(settings)
        for key, value in record.to_tags().items():
            client.set_model_version_tag(name, version, key, value)
        runs.append(run.info.run_id)
    client.set_registered_model_alias(name, Alias.CHAMPION, "1")
    client.set_registered_model_alias(name, Alias.CHALLENGER, "2")
    lifecycle.start(settings, "2", "test", {CHAMPION: 90, CHALLENGER: 10}, "ab", {"verdict_id": 1})
    book = ledger(settings)
    newest = publish_drift_report(settings, NEWEST_WINDOW_END)
    for hour, (verdict, share) in enumerate((("no_drift", 0.05), ("drift", 0.4))):
        end = NEWEST_WINDOW_END - timedelta(hours=1 - hour)
        book.record(
            Kind.DRIFT_VERDICT,
            f"drift:test:{hour}",
            None,
            {
                "source": "prediction_log",
                "window": {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()},
                "verdict": verdict,
                "reason": f"{share:.0%} of features drifted",
                "rows": 1000,
                "drifted_share": share,
                "drifted_features": ["num_medications", "age", "time_in_hospital", "a1c", "race", "gender"][
                    : int(share * 10)
                ],
                "report_url": newest["report_url"] if hour else "file:///elsewhere/0/report.html",
                # the newest as the drift DAG records it: the label-free estimate and the realised figures
                **(
                    {
                        k: newest[k]
                        for k in (
                            "performance_estimate",
                            "performance",
                            "rules",
                            "importance_weighted_share",
                            "retrain",
                        )
                    }
                    if hour
                    else {}
                ),
            },
            "dag:readmission_drift",
        )
    book.record(
        Kind.EVALUATION,
        "evaluation:test:1",
        name,
        {
            "action": "continue",
            "reason": "interval [-0.01, 0.03] contains 0",
            "metric": "log_loss",
            "experiment": "readmission-v1-vs-v2",
            "mode": "ab",
            "arms": {
                CHAMPION: {"labelled": 180, "log_loss": 0.52, "log_loss_ci": [0.5, 0.54]},
                CHALLENGER: {"labelled": 20, "log_loss": 0.5, "log_loss_ci": [0.44, 0.56]},
            },
            "sequential": {"estimate": 0.02, "interval": [-0.01, 0.03], "p_value": 0.4},
            "rows_needed": 321,
        },
        "dag:readmission_ab_evaluate",
    )
    return {"runs": runs, "report_url": newest["report_url"], "newest": newest}


def write_specs(folder: Path) -> Path:
    """A models folder holding readmission's spec, a copy of it named ``churn`` and a broken spec file."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (REPO / "models" / "readmission.yaml").read_text()
    (folder / "readmission.yaml").write_text(text)
    (folder / f"{SECOND}.yaml").write_text(text.replace("\nname: readmission\n", f"\nname: {SECOND}\n", 1))
    (folder / f"{BROKEN}.yaml").write_text(BROKEN_SPEC)
    return folder


def _prepare_second_model(settings) -> dict[str, Any]:
    """The second model's own registry and ledger: champion v1 (no challenger, no experiment) and one no-drift
    verdict."""
    from airloop.ledger import Kind, ledger
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias

    name = settings.mlflow.model_name
    connect(settings, create_experiment=True)
    x = np.random.default_rng(1).normal(size=(40, 2))
    with mlflow.start_run() as run:
        mlflow.log_metrics({"test_roc_auc": 0.66})
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(x, (x[:, 1] > 0).astype(int)), name="model", pip_requirements=["scikit-learn"]
        )
    mlflow.register_model(info.model_uri, name)
    connect(settings).set_registered_model_alias(name, Alias.CHAMPION, "1")
    end = NEWEST_WINDOW_END - timedelta(hours=3)
    ledger(settings).record(
        Kind.DRIFT_VERDICT,
        "drift:test:0",  # the same key as readmission's first verdict: keys are per model
        None,
        {
            "source": "prediction_log",
            "window": {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()},
            "verdict": "no_drift",
            "reason": SECOND_VERDICT_REASON,
            "rows": 800,
            "drifted_share": 0.01,
            "drifted_features": [],
        },
        f"dag:{SECOND}_drift",
    )
    return {"run": run.info.run_id}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Any]:
    """Settings on a fresh airloop home and a models folder of two valid specs and a broken one (also seen by the
    mounted app through ``get_settings``) with the registry and ledger of ``_prepare_registry`` for readmission and of
    ``_prepare_second_model`` for churn."""
    from airloop.settings import get_settings

    home = tmp_path_factory.mktemp("monitor")
    env = {"AIRLOOP_HOME": str(home / "airloop"), "AIRLOOP_MODELS__FOLDER": str(write_specs(home / "models"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        settings = get_settings()
        prepared = _prepare_registry(settings)
        prepared[SECOND] = _prepare_second_model(get_settings(SECOND))
        yield settings, prepared
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def test_monitor_state_shows_aliases_runs_routing_evaluation_drift_and_history(registry):
    from airloop.monitor.state import monitor_state, report_path

    settings, prepared = registry
    state = monitor_state(settings)

    champion, challenger = state["versions"][CHAMPION], state["versions"][CHALLENGER]
    assert (champion["version"], challenger["version"]) == ("1", "2")
    assert state["versions"]["previous-champion"] is None
    assert champion["run"]["id"] == prepared["runs"][0]
    assert champion["run"]["url"].startswith(settings.mlflow.ui_url) and champion["run"]["id"] in champion["run"]["url"]
    assert champion["run"]["test_metrics"] == {"roc_auc": pytest.approx(0.71)}
    assert challenger["run"]["groups"] == {"age_band": {"60-80": {"roc_auc": pytest.approx(0.72), "rows": 400}}}
    # Each version's global importance, largest first, from its training run's importance.* metrics.
    assert [f["feature"] for f in champion["run"]["importance"]] == ["diag_1", "number_inpatient", "age"]
    assert [f["feature"] for f in challenger["run"]["importance"]] == ["diag_1", "number_inpatient", "age"]
    assert champion["run"]["importance"][0]["importance"] == pytest.approx(0.071)
    assert champion["dataset_version"] == "2026-11-21T00-00-00Z"
    assert challenger["last_decision"]["kind"] == "experiment_started"
    assert state["routing"]["weights"] == {CHAMPION: 90.0, CHALLENGER: 10.0}
    assert state["routing"]["experiment"] == "readmission-v1-vs-v2" and state["routing"]["running"]
    evaluation = state["evaluation"]
    assert evaluation["current"] and evaluation["rows_needed"] == 321 and evaluation["interval"] == [-0.01, 0.03]
    assert {k: v["labelled"] for k, v in evaluation["arms"].items()} == {CHAMPION: 180, CHALLENGER: 20}
    latest = state["drift"]["latest"]
    assert latest["verdict"] == "drift" and latest["drifted_share"] == 0.4
    # The decision: which rules fired, with their numbers, and the share of the model's importance that drifted.
    assert latest["rules"] and latest["rules"] == [
        {k: r[k] for k in ("rule", "decision", "message")} for r in prepared["newest"]["rules"]
    ]
    assert latest["importance_weighted_share"] == prepared["newest"]["importance_weighted_share"] > 0
    assert latest["drifted_features"] == ["num_medications", "age", "time_in_hospital", "a1c"]
    assert latest["report_url"] == prepared["report_url"]
    # The report's folders below the runtime root's reports: <model>/v<version>/<window end>-<report id>.
    model, version, folder = latest["report"]
    assert (model, version) == ("readmission", "v1") and folder.startswith("20261125T100000Z-")
    assert report_path(settings, "file:///elsewhere/0/report.html") is None  # not below the reports: no link
    assert [p["drifted_share"] for p in state["drift"]["series"]] == [0.05, 0.4]  # oldest first, for the chart
    # The label-free estimate beside the realised ROC AUC on the half of the window whose outcomes arrived.
    estimate, realised = latest["performance_estimate"], latest["performance"]
    assert estimate == prepared["newest"]["performance_estimate"] and realised == prepared["newest"]["performance"]
    rows, labelled = prepared["newest"]["rows"], prepared["newest"]["rows"] // 2  # every other outcome arrived
    assert (
        estimate["rows"] == rows
        and 0.5 < estimate["estimated_roc_auc"] < 1
        and estimate["labelled"]["rows"] == labelled
    )
    assert realised["labelled_rows"] == labelled and 0.5 < realised["roc_auc"] < 1
    series = state["drift"]["series"]
    assert [p["estimated_roc_auc"] for p in series] == [None, estimate["estimated_roc_auc"]]
    assert [p["realised_roc_auc"] for p in series] == [None, realised["roc_auc"]]
    kinds = [row["kind"] for row in state["history"]]
    assert kinds[0] == "evaluation" and "experiment_started" in kinds and kinds.count("drift_verdict") == 2
    json.dumps(state)  # plain JSON


def test_models_overview_lists_every_valid_spec_with_its_champion_and_each_broken_file_with_its_error(registry):
    from airloop.monitor.state import models_overview

    settings, _ = registry
    overview = models_overview(settings)

    assert overview["default"] == "readmission"
    assert [(m["name"], m["champion"], m["default"]) for m in overview["models"]] == [
        (SECOND, "1", False),
        ("readmission", "1", True),
    ]
    assert overview["models"][1]["description"].startswith("30-day hospital readmission risk")
    assert overview["models"][1]["tags"] == ["healthcare"]
    (broken,) = overview["broken"]
    assert broken["name"] == BROKEN and broken["file"].endswith(f"{BROKEN}.yaml")
    assert "widgets: unknown key" in broken["error"] and "data: required key is missing" in broken["error"]
    json.dumps(overview)


def test_monitor_state_of_each_model_shows_its_own_registry_drift_and_history_and_nothing_of_the_other(registry):
    from airloop.monitor.state import monitor_state
    from airloop.settings import get_settings

    settings, prepared = registry
    second = monitor_state(get_settings(SECOND))
    first = monitor_state(settings)

    assert (second["name"], second["model"]) == (SECOND, SECOND)
    assert second["versions"][CHAMPION]["version"] == "1" and second["versions"][CHALLENGER] is None
    assert second["versions"][CHAMPION]["run"]["id"] == prepared[SECOND]["run"]
    assert second["versions"][CHAMPION]["run"]["test_metrics"] == {"roc_auc": pytest.approx(0.66)}
    assert second["routing"]["running"] is None and second["evaluation"] is None
    assert second["drift"]["latest"]["reason"] == SECOND_VERDICT_REASON
    assert [p["drifted_share"] for p in second["drift"]["series"]] == [0.01]
    assert [(r["kind"], r["decided_by"]) for r in second["history"]] == [("drift_verdict", f"dag:{SECOND}_drift")]
    # readmission's view holds none of churn's rows or runs, though both ledgers have a "drift:test:0" key
    assert first["name"] == "readmission" and first["versions"][CHAMPION]["run"]["id"] == prepared["runs"][0]
    assert SECOND_VERDICT_REASON not in json.dumps(first) and prepared[SECOND]["run"] not in json.dumps(first)
    assert [p["drifted_share"] for p in first["drift"]["series"]] == [0.05, 0.4]
    assert first["target"]["delay_days"] == 30 and first["target"]["name"] == "readmitted_30d"


class _SignedIn:
    """What Airflow's ``get_user`` resolves: a user with a name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name


def test_state_endpoint_takes_the_model_and_names_its_own_registry_dag_or_answers_404_naming_it(registry, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.syspath_prepend(str(REPO / "plugins"))  # where Airflow's plugin manager finds the web layer
    from airloop_monitor_ui.app import create_app

    with TestClient(create_app(lambda: _SignedIn("engineer"))) as client:
        default, second = client.get("/api/state"), client.get(f"/api/state?model={SECOND}")
        unknown, broken = client.get("/api/state?model=nope"), client.get(f"/api/state?model={BROKEN}")
        models = client.get("/api/models")

    assert default.status_code == 200 and second.status_code == 200, (default.text, second.text)
    assert default.json()["name"] == "readmission" and default.json()["versions"][CHALLENGER]["version"] == "2"
    assert default.json()["user"]["registry_dag"] == REGISTRY_DAG
    assert default.json()["user"]["approval_dag"] == APPROVAL_DAG
    assert second.json()["name"] == SECOND and second.json()["versions"][CHALLENGER] is None
    assert second.json()["user"]["registry_dag"] == f"{SECOND}_registry"
    assert second.json()["user"]["approval_dag"] == f"{SECOND}_ab_evaluate"
    assert second.json()["user"]["may"]["promote"] == {"allowed": True, "why": ""}
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == f"model: no model 'nope' (models: {SECOND}, readmission)"
    assert broken.status_code == 404
    assert broken.json()["detail"].startswith(f"model: model '{BROKEN}': model spec ")
    assert "widgets: unknown key" in broken.json()["detail"]
    assert models.status_code == 200 and [m["name"] for m in models.json()["models"]] == [SECOND, "readmission"]


@pytest.mark.security
def test_a_user_outside_a_models_team_does_not_see_it_when_outsiders_are_hidden(registry, monkeypatch):
    from fastapi.testclient import TestClient

    from airloop.monitor.state import report_path
    from airloop.settings import get_settings

    monkeypatch.syspath_prepend(str(REPO / "plugins"))
    from airloop_monitor_ui.app import create_app

    monkeypatch.setenv("AIRLOOP_SECURITY__USERS", '{"bob": "data_scientist"}')  # in no team: both models are care's
    monkeypatch.setenv("AIRLOOP_SECURITY__OUTSIDE_TEAM_ROLE", "null")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        parts = report_path(settings, registry[1]["report_url"])
        report = "/reports/" + "/".join(quote(p, safe="") for p in parts)
        with TestClient(create_app(lambda: _SignedIn("bob"))) as client:
            models, state, page = client.get("/api/models"), client.get("/api/state"), client.get(report)
        with TestClient(create_app(lambda: _SignedIn("scientist"))) as client:
            member = client.get("/api/models")
    finally:
        get_settings.cache_clear()
    assert settings.security.outside_team_role is None
    assert models.status_code == 200 and models.json()["models"] == [], models.text
    assert state.status_code == 403, state.text
    assert state.json()["detail"] == "model: 'readmission' belongs to team 'care'; 'bob' is not in it"
    assert page.status_code == 403, page.text
    assert [m["name"] for m in member.json()["models"]] == [SECOND, "readmission"]
    assert {m["team"] for m in member.json()["models"]} == {"care"}


@pytest.fixture(scope="module")
def airflow_app(registry) -> Iterator[Any]:
    """Airflow's own API server app (``airflow.api_fastapi.app.create_app``, as ``airflow api-server`` builds it)
    with the plugins folder of the repo, SimpleAuthManager users from ``security.users``, a migrated database and
    the readmission_registry and readmission_ab_evaluate DAGs in it; yields (app, passwords, parsed DAGs by id)."""
    from airflow.api_fastapi.app import create_app, purge_cached_app

    from airloop.security import airflow_users

    home = Path(os.environ["AIRFLOW_HOME"])
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": airflow_users(registry[0]),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "monitor_passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    assert os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO / "plugins")
    migrate = subprocess.run(
        [str(REPO / ".venv" / "bin" / "airflow"), "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    try:
        app = create_app()
        passwords = json.loads((home / "monitor_passwords.json").read_text())
        yield app, passwords, airflow_runs.sync_dags(REGISTRY_DAG, APPROVAL_DAG)
    finally:
        purge_cached_app()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _token(client, passwords: dict[str, str], user: str) -> str:
    answer = client.post("/auth/token", json={"username": user, "password": passwords[user]})
    assert answer.status_code == 201, answer.text
    return answer.json()["access_token"]


def test_mounted_monitor_refuses_anonymous_requests_and_serves_signed_in_users(airflow_app):
    from fastapi.testclient import TestClient

    app, passwords, _ = airflow_app
    with TestClient(app) as client:
        assert client.get("/airloop/api/state").status_code == 401
        assert client.get(f"/airloop/api/state?model={SECOND}").status_code == 401
        assert client.get("/airloop/api/models").status_code == 401
        assert client.get("/airloop/").status_code == 401
        assert client.get("/airloop/api/state", headers={"Authorization": "Bearer forged"}).status_code == 403

        engineer = client.get(
            "/airloop/api/state", headers={"Authorization": f"Bearer {_token(client, passwords, 'engineer')}"}
        )
        client.cookies.set("_token", _token(client, passwords, "viewer"))  # what the Airflow UI's sign-in sets
        viewer = client.get("/airloop/api/state")
        second = client.get(f"/airloop/api/state?model={SECOND}")
        page = client.get("/airloop/")

    assert engineer.status_code == 200, engineer.text
    assert engineer.json()["versions"][CHAMPION]["version"] == "1"
    assert engineer.json()["user"]["may"]["promote"] == {"allowed": True, "why": ""}
    assert engineer.json()["airflow"]["finished_run_states"] == ["failed", "success"]
    assert viewer.status_code == 200 and viewer.json()["user"]["name"] == "viewer"
    assert not viewer.json()["user"]["may"]["rollback"]["allowed"]
    assert "viewer" in viewer.json()["user"]["may"]["rollback"]["why"]
    assert second.status_code == 200 and second.json()["user"]["registry_dag"] == f"{SECOND}_registry"
    assert page.status_code == 200 and "<title>airloop model monitor</title>" in page.text


def test_plugin_puts_the_monitor_in_the_ui_navigation_relative_to_the_api_base_url(airflow_app):
    from airflow import plugins_manager

    views, _ = plugins_manager._get_ui_plugins()
    monitor = next(view for view in views if view["name"] == "Model monitor")
    # Relative, so the UI resolves it against its <base href> ([api] base_url's path); the browser tests below load it.
    assert monitor["href"] == "airloop/" and monitor["destination"] == "nav"
    assert monitor["url_route"] == "airloop_model_monitor"


def _report_route(parts: list[str]) -> str:
    return "/airloop/reports/" + "/".join(quote(p, safe="") for p in parts)


def test_drift_report_is_served_to_signed_in_users_and_nothing_else_is(airflow_app, registry):
    from fastapi.testclient import TestClient

    from airloop.monitor.state import report_path

    app, passwords, _ = airflow_app
    settings, prepared = registry
    parts = report_path(settings, prepared["report_url"])
    # A page beside the reports, where ``reports/../planted`` would lead if names were joined unchecked.
    settings.layout.root.write_text("<title>planted</title>", "planted", "report.html")
    model, version, _ = parts
    tricks = (
        "/airloop/reports/%2E%2E/planted",  # sent as is (a client resolves a literal ../), decoded by the server
        "/airloop/reports/%2E%2E%2Fplanted",  # an encoded slash: one name holding "../planted"
        f"/airloop/reports/{model}/{version}/%2E%2E/%2E%2E/%2E%2E/planted",
        "/airloop/reports//planted",
        f"{_report_route(parts)}/report.html",  # the page itself is not a report folder
        f"/airloop/reports/{model}/{version}",  # a version's folder, not a report
        f"/airloop/reports/{model}/{version}/20261125T100000Z-0000000000",  # no such report
    )
    with TestClient(app) as client:
        anonymous = client.get(_report_route(parts))
        client.cookies.set("_token", _token(client, passwords, "viewer"))
        report = client.get(_report_route(parts))
        refused = {trick: client.get(trick) for trick in tricks}

    assert anonymous.status_code == 401
    assert report.status_code == 200, report.text
    assert report.headers["content-type"].startswith("text/html")
    assert f"<title>{REPORT_TITLE}" in report.text and "Verdict:" in report.text
    assert "default-src 'none'" in report.headers["content-security-policy"]
    assert {trick: answer.status_code for trick, answer in refused.items()} == dict.fromkeys(tricks, 404)
    assert all("<title>planted" not in answer.text for answer in refused.values())
    assert all(answer.json()["detail"].startswith("report: ") for answer in refused.values())  # names the field


def test_drift_report_on_s3_is_linked_and_served_the_same_way(airflow_app, s3_server, registry):
    from fastapi.testclient import TestClient

    from airloop.monitor.state import all_reports, report_page, report_path

    app, passwords, _ = airflow_app
    bucket = f"airloop-monitor-{secrets.token_hex(6)}"
    s3_server.client().create_bucket(Bucket=bucket)
    env = {
        "AIRLOOP_STORAGE__URL": f"s3://{bucket}/runtime",
        "AIRLOOP_STORAGE__S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    with settings_env(env) as settings:  # the mounted app reads the same settings (get_settings)
        html_url = publish_drift_report(settings, NEWEST_WINDOW_END)["report_url"]
        parts = report_path(settings, html_url)
        with TestClient(app) as client:
            client.cookies.set("_token", _token(client, passwords, "viewer"))
            report = client.get(_report_route(parts))
            outside = client.get("/airloop/reports/%2E%2E/reports/" + "/".join(parts))
        all_reports(settings).write_text("<p>no manifest</p>", *parts[:2], "half", "report.html")
        unpublished = report_page(settings, [*parts[:2], "half"])

    assert html_url.startswith(f"s3://{bucket}/runtime/") and parts[:2] == ["readmission", "v1"]
    assert report.status_code == 200 and f"<title>{REPORT_TITLE}" in report.text
    assert outside.status_code == 404
    assert unpublished is None  # on S3 a folder without its manifest is no published report


# --- in headless Chromium -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(airflow_app) -> Iterator[str]:
    """The API server app on a free loopback port (uvicorn in a thread); yields its base URL."""
    import uvicorn

    app = airflow_app[0]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200, "the API server", 20)
        yield base
    finally:
        server.should_exit = True
        serving.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium page for the module's browser tests."""
    with chromium_page() as tools:
        yield tools


def sign_in(tools, base: str, passwords: dict[str, str], user: str) -> None:
    """The ``_token`` cookie Airflow's sign-in sets, for ``user`` (the UI and the monitor read the same one)."""
    token = httpx.post(f"{base}/auth/token", json={"username": user, "password": passwords[user]}).json()
    tools.call("Network.clearBrowserCookies")  # cookies are per host, not per port: no other server's token
    path = urlsplit(base).path.rstrip("/") + "/"  # Airflow scopes its cookie to [api] base_url's path
    tools.call("Network.setCookie", name="_token", value=token["access_token"], url=base, path=path, httpOnly=True)


def open_monitor(tools, url: str, user: str) -> str:
    """Open the monitor page at ``url`` and wait until it shows the state; its text."""
    tools.open(url)
    return wait(
        lambda: (t := tools.text()) and f"signed in as {user}" in t and "Decision history" in t and t,
        "the page to render the state",
        20,
    )


def shown_version(tools, alias: str, document: str = "document") -> str:
    """The version the page's card for ``alias`` shows (``v1``), or '' without one."""
    return tools.evaluate(f"{document}.querySelector('[data-alias=\"{alias}\"] .big')?.textContent || ''")


@pytest.mark.browser
def test_monitor_page_renders_in_headless_chromium_without_console_errors(
    airflow_app, registry, served, browser, tmp_path
):
    _, passwords, _ = airflow_app
    newest = registry[1]["newest"]
    sign_in(browser, served, passwords, "admin")
    text = open_monitor(browser, f"{served}/airloop/", "admin")
    wait(lambda: browser.responded("/hitlDetails"), "the pending-approval request", 10)
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    shot_path = screenshot_path(tmp_path)
    shot_path.parent.mkdir(parents=True, exist_ok=True)
    shot_path.write_bytes(base64.b64decode(shot["data"]))
    report_href = browser.evaluate("[...document.links].find((a) => a.textContent === 'HTML report')?.href")

    assert browser.errors == [], browser.errors
    assert shown_version(browser, CHAMPION) == "v1" and shown_version(browser, CHALLENGER) == "v2"
    assert "readmission-v1-vs-v2" in text and "rows still needed: 321" in text and "drift" in text
    estimated, realised = newest["performance_estimate"]["estimated_roc_auc"], newest["performance"]["roc_auc"]
    assert f"Estimated ROC AUC without labels {estimated:.3f}" in " ".join(text.split())
    labelled = newest["performance"]["labelled_rows"]
    assert f"Realised ROC AUC {realised:.3f} on {labelled} labelled rows" in " ".join(text.split())
    assert browser.evaluate("document.querySelectorAll('#auc-chart circle').length") == 2  # estimated, realised
    first_rule = newest["rules"][0]
    assert f"{first_rule['decision']} {first_rule['rule']}: {first_rule['message']}" in " ".join(text.split())
    assert "Importance in drifted features:" in text
    importance = "document.querySelector('[data-alias=champion] .importance').textContent"
    assert browser.evaluate(importance).startswith("diag_1 0.071")  # its global importance, largest first
    assert [status for url, status in browser.responses if url.startswith(f"{served}/api/v2/")] == [200]
    assert screenshot_path(tmp_path).stat().st_size > 10_000
    # The drift report's link is the monitor's own route, which the browser opens with the same sign-in.
    assert report_href and report_href.startswith(f"{served}/airloop/reports/readmission/v1/20261125T100000Z-")
    browser.open(report_href)
    assert REPORT_TITLE in wait(lambda: browser.text(), "the drift report", 10)
    assert "verdict:" in browser.text().lower()  # the report itself, not a page about it
    assert (report_href, 200) in browser.responses


@pytest.mark.browser
def test_page_lists_the_models_and_shows_the_one_its_url_names_with_that_models_own_registry_dag(
    airflow_app, served, browser
):
    _, passwords, _ = airflow_app
    sign_in(browser, served, passwords, "engineer")
    text = open_monitor(browser, f"{served}/airloop/?model={SECOND}", "engineer")
    listed = wait(lambda: browser.evaluate("document.querySelector('.model.selected')?.dataset.model"), "the list", 10)
    broken = browser.evaluate(f"document.querySelector('[data-broken=\"{BROKEN}\"]')?.innerText || ''")
    approvals = wait(lambda: browser.responded("/hitlDetails"), "the pending-approval request", 10)
    browser.click("#promote")
    asked = wait(lambda: browser.evaluate("document.getElementById('result').innerText"), "the question", 5)
    browser.click("#cancel")
    shown = (shown_version(browser, CHAMPION), shown_version(browser, CHALLENGER))
    errors = list(browser.errors)
    # The list's link to readmission opens the page on readmission: the selection is in the URL.
    browser.click('[data-model="readmission"] a')
    wait(lambda: shown_version(browser, CHALLENGER) == "v2", "readmission's page", 20)
    location = browser.evaluate("window.location.search")

    assert errors == [], errors
    assert listed == SECOND and shown == ("v1", "")
    assert SECOND_VERDICT_REASON in text and "readmission-v1-vs-v2" not in text
    assert f"Trigger {SECOND}_registry with action=promote?" in asked
    assert "broken spec" in broken and "widgets: unknown key" in broken
    assert approvals and all(f"/api/v2/dags/{SECOND}_ab_evaluate/dagRuns/" in url for url, _ in approvals)
    assert location == "?model=readmission" and "readmission-v1-vs-v2" in browser.text()


def click_action(tools, action: str, document: str = "document") -> tuple[str, str]:
    """Click ``action``'s button, then Confirm; the run id and the href of the run's link the page then shows."""
    tools.click(f"#{action}", document)
    wait(lambda: tools.evaluate(f"!!{document}.getElementById('confirm')"), "the confirmation", 5)
    tools.click("#confirm", document)
    found = wait(
        lambda: tools.evaluate(f"""(() => {{
            const a = {document}.querySelector('#result a');
            return a && {document}.getElementById('run-state') ? [a.textContent, a.href] : null; }})()"""),
        f"the {action} run's link",
        10,
    )
    return found[0], found[1]


def run_state_shown(tools, document: str = "document") -> str:
    return tools.evaluate(f"{document}.getElementById('run-state')?.textContent || ''")


@pytest.mark.browser
def test_promote_and_roll_back_buttons_trigger_registry_runs_the_page_follows_to_their_outcome(
    airflow_app, served, browser
):
    from airloop import history
    from airloop.ledger import Kind
    from airloop.settings import get_settings

    _, passwords, dags = airflow_app
    sign_in(browser, served, passwords, "engineer")
    open_monitor(browser, f"{served}/airloop/", "engineer")
    outcomes = {}
    for action, champion in (("promote", "v2"), ("rollback", "v1")):
        run_id, run_href = click_action(browser, action)
        queued = airflow_runs.dag_run(REGISTRY_DAG, run_id)
        shown_before_it_ran = run_state_shown(browser)
        # The run itself, as the scheduler would run it (in this process, with dag.test()'s task runner).
        tasks = airflow_runs.execute_run(dags[REGISTRY_DAG], run_id)
        wait(lambda: run_state_shown(browser) == "success", f"the page to show the {action} run's success", 15)
        wait(lambda v=champion: shown_version(browser, CHAMPION) == v, f"champion {champion} after {action}", 10)
        outcomes[action] = (queued, shown_before_it_ran, run_href, run_id, tasks)

    for action, (queued, shown, href, run_id, tasks) in outcomes.items():
        assert queued is not None, f"no {REGISTRY_DAG} run {run_id} in the metadata DB"
        assert queued.conf == {"action": action}
        assert queued.triggering_user_name == "engineer" and str(queued.run_type) == "manual"
        assert shown == "queued"  # nothing runs it until execute_run
        assert href == f"{served}/dags/{REGISTRY_DAG}/runs/{quote(run_id, safe='')}"
        assert tasks == {"apply": "success"}
    assert browser.errors == [], browser.errors
    # The registry as the runs left it, and who the history says did it.
    assert shown_version(browser, CHAMPION) == "v1" and shown_version(browser, CHALLENGER) == "v2"
    (promotion,) = history.rows(get_settings(), kind=Kind.PROMOTION)
    (rollback,) = history.rows(get_settings(), kind=Kind.ROLLBACK)
    for row, action in ((promotion, "promote"), (rollback, "rollback")):
        run_id = outcomes[action][3]
        assert row.decided_by == f"airflow:{REGISTRY_DAG}/{run_id} by engineer"


@pytest.fixture(scope="module")
def waiting_approval(airflow_app, served) -> dict[str, str]:
    """A readmission_ab_evaluate run whose ``approve`` waits for a person: triggered through the REST API, its
    evaluation (a promotion of v2) recorded as the evaluate task's result, then ``approve`` (Airflow's
    ApprovalOperator) run, which writes its Human-in-the-loop detail and parks in ``awaiting_input``."""
    _, passwords, dags = airflow_app
    token = httpx.post(f"{served}/auth/token", json={"username": "scientist", "password": passwords["scientist"]})
    started = httpx.post(
        f"{served}/api/v2/dags/{APPROVAL_DAG}/dagRuns",
        json={"logical_date": None},
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert started.status_code == 200, started.text
    run_id = started.json()["dag_run_id"]
    # The decision as the evaluate task records it: approve asks about the history's row, not the task's XCom.
    from airloop.ledger import Kind, ledger
    from airloop.settings import get_settings

    key = f"evaluation:test:approval:{run_id}"
    decided = {
        "action": "promote",
        "reason": "v2: log loss 0.47 vs 0.52",
        "champion_version": "1",
        "challenger_version": "2",
        "metric": "log_loss",
        "experiment": "readmission-v1-vs-v2",
        "mode": "ab",
        "arms": {CHAMPION: {"labelled": 400, "log_loss": 0.52}, CHALLENGER: {"labelled": 400, "log_loss": 0.47}},
    }
    ledger(get_settings()).record(Kind.EVALUATION, key, "readmission", decided, f"airflow:{APPROVAL_DAG}/{run_id}")
    evaluation = {**decided, "key": key}
    airflow_runs.mark_done(APPROVAL_DAG, run_id, {"evaluate": evaluation, "choose": ["approve"]})
    assert airflow_runs.run_task(dags[APPROVAL_DAG], run_id, "approve") == "awaiting_input"
    return {"run_id": run_id, "subject": "Promote readmission v2 to champion?"}


@pytest.mark.browser
def test_waiting_approval_is_listed_with_a_link_to_its_required_action(airflow_app, served, browser, waiting_approval):
    _, passwords, _ = airflow_app
    run_id, subject = waiting_approval["run_id"], waiting_approval["subject"]
    sign_in(browser, served, passwords, "engineer")
    open_monitor(browser, f"{served}/airloop/", "engineer")
    listed = wait(lambda: browser.evaluate("document.getElementById('approvals')?.innerText"), "the approvals", 10)
    href = browser.evaluate("document.querySelector('#approvals a').href")
    assert browser.errors == [], browser.errors

    assert subject in listed and f"{APPROVAL_DAG} / {run_id}" in listed
    assert href == f"{served}/dags/{APPROVAL_DAG}/runs/{quote(run_id, safe='')}/tasks/approve/required_actions"
    # The link (a new tab outside the Airflow UI) leads to Airflow's own page for that required action.
    browser.open(href)
    wait(lambda: subject in browser.text() and "Approve" in browser.text(), "Airflow's Required Actions page", 30)


FRAME = "document.querySelector('iframe[title=\"Model monitor\"]')"
FRAME_DOCUMENT = f"{FRAME}?.contentDocument"


def open_in_airflow_ui(tools, url: str, user: str) -> str:
    """Open Airflow's page for the monitor (its React shell with the monitor in an iframe); the iframe's text once
    the monitor shows the state."""
    tools.open(url)
    return wait(
        lambda: (t := tools.text(FRAME_DOCUMENT)) and f"signed in as {user}" in t and "Decision history" in t and t,
        "the monitor inside the Airflow UI",
        40,
    )


@pytest.mark.browser
def test_monitor_shows_inside_the_airflow_ui_and_its_actions_work_in_the_sandboxed_frame(airflow_app, served, browser):
    _, passwords, _ = airflow_app
    sign_in(browser, served, passwords, "admin")
    framed = open_in_airflow_ui(browser, f"{served}/plugin/airloop_model_monitor", "admin")
    shell = browser.text()
    frame_path = browser.evaluate(f"{FRAME}.contentWindow.location.pathname")
    sandbox = browser.evaluate(f"{FRAME}.getAttribute('sandbox')")
    # Promote asks on the page itself: the frame's sandbox has no allow-modals, so confirm() would answer "no".
    browser.click("#promote", FRAME_DOCUMENT)
    asked = wait(lambda: browser.evaluate(f"{FRAME_DOCUMENT}.getElementById('result').innerText"), "the question", 5)
    browser.click("#cancel", FRAME_DOCUMENT)
    links = browser.evaluate(f"[...{FRAME_DOCUMENT}.links].map((a) => a.target)")

    assert "Model monitor" in shell  # the side bar's entry
    assert frame_path == "/airloop/"
    assert (
        shown_version(browser, CHAMPION, FRAME_DOCUMENT) == "v1"
        and shown_version(browser, CHALLENGER, FRAME_DOCUMENT) == "v2"
    )
    assert "readmission-v1-vs-v2" in framed
    assert "allow-modals" not in sandbox.split() and "allow-popups" not in sandbox.split()
    assert f"Trigger {REGISTRY_DAG} with action=promote?" in asked
    assert links and set(links) == {""}  # in the frame: no new tabs, which the sandbox would refuse
    assert browser.errors == [], browser.errors  # e.g. "Ignored call to 'confirm()'. The document is sandboxed"


@pytest.fixture
def api_server_under_sub_path(airflow_app) -> Iterator[str]:
    """``airflow api-server`` (a process of its own, on the same metadata DB, users and JWT secret) with
    ``[api] base_url = http://127.0.0.1:<port>/airflow``; yields that base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/airflow"
    env = {**os.environ, "AIRFLOW__API__BASE_URL": base, "AIRFLOW__LOGGING__UVICORN_LOGGING_LEVEL": "WARNING"}
    airflow = Path(sys.executable).with_name("airflow")
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            [str(airflow), "api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

        def healthy() -> bool:
            if server.poll() is not None:
                log.seek(0)
                raise AssertionError(f"airflow api-server exited {server.returncode}: {log.read()[-3000:]}")
            return httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200

        try:
            wait(healthy, "airflow api-server under /airflow", 90)
        except AssertionError:
            server.kill()
            server.wait()
            raise
        try:
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.mark.browser
def test_monitor_and_its_rest_calls_work_under_an_api_base_url_sub_path(
    airflow_app, api_server_under_sub_path, browser
):
    _, passwords, _ = airflow_app
    base = api_server_under_sub_path
    sign_in(browser, base, passwords, "engineer")
    open_in_airflow_ui(browser, f"{base}/plugin/airloop_model_monitor", "engineer")
    frame_path = browser.evaluate(f"{FRAME}.contentWindow.location.pathname")
    wait(lambda: browser.responded("/hitlDetails"), "the pending-approval request", 10)
    report_href = browser.evaluate(f"[...{FRAME_DOCUMENT}.links].find((a) => a.textContent === 'HTML report')?.href")
    approvals = browser.evaluate(f"[...{FRAME_DOCUMENT}.querySelectorAll('#approvals a')].map((a) => a.href)")
    origin = base.removesuffix("/airflow")
    answered = {url.removeprefix(origin).split("?")[0]: status for url, status in browser.responses}

    assert browser.errors == [], browser.errors
    assert frame_path == "/airflow/airloop/"
    assert shown_version(browser, CHAMPION, FRAME_DOCUMENT) == "v1"
    assert answered["/airflow/airloop/api/state"] == 200
    assert answered[f"/airflow/api/v2/dags/{APPROVAL_DAG}/dagRuns/~/hitlDetails"] == 200
    assert all(href.startswith(f"{base}/dags/{APPROVAL_DAG}/runs/") for href in approvals)
    assert report_href.startswith(f"{base}/airloop/reports/readmission/v1/")
    browser.open(report_href)
    assert REPORT_TITLE in wait(lambda: browser.text(), "the drift report under /airflow", 10)
    assert (report_href, 200) in browser.responses
