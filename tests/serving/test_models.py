"""One service, several models: every valid spec in the models folder is hosted with its own registered model, logs,
routing, limits and threads; /v1/predict and the other unnamed routes stay the default model's.

The second model, ``twin``, is ``models/readmission.yaml`` under another name with a smaller batch limit, registered
from readmission's champion artifact with its own threshold (nothing is trained again). Settings come from the
environment exactly as in production (``create_app()`` with no arguments).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from airloop.predlog import load_feedback, load_predictions
from airloop.registry.contract import Alias, Tag
from airloop.settings import get_settings
from airloop.spec import SpecError
from serving.main import create_app
from tests.serving.conftest import (
    API_KEY,
    CHALLENGER_VERSION,
    CHAMPION_VERSION,
    NAME,
    OPEN_SCOPES,
    THRESHOLDS,
    register_copy,
    uvicorn_app,
    write_spec,
)

TWIN = "twin"  # readmission's champion under another name
GHOST = "ghost"  # a spec whose registered model does not exist
WRECK = "wreck"  # a registered model whose champion's artifact is gone
TWIN_THRESHOLD = 0.5
TWIN_LIMIT = 3  # twin's own serving.max_batch_records, from its spec
KEY = {"X-API-Key": API_KEY}
VERSIONS = {"champion": CHAMPION_VERSION, "challenger": CHALLENGER_VERSION}
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def twin_version(registry) -> str:
    return register_copy(registry, TWIN, TWIN_THRESHOLD)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, twin_version) -> Path:
    """A models folder with readmission and twin."""
    folder = tmp_path_factory.mktemp("models")
    write_spec(folder, NAME)
    write_spec(folder, TWIN, f"\nserving:\n  max_batch_records: {TWIN_LIMIT}\n")
    return folder


def configure(patch: pytest.MonkeyPatch, registry, home: Path, folder: Path, serve: list[str] | None = None) -> None:
    """The environment of a deployment: home, models folder, the session registry, the admin key; no polling."""
    env = {
        "AIRLOOP_HOME": str(home),
        "AIRLOOP_MODELS__FOLDER": str(folder),
        "AIRLOOP_MLFLOW__TRACKING_URI": registry.tracking_uri,
        "AIRLOOP_MLFLOW__REGISTRY_URI": registry.tracking_uri,
        "AIRLOOP_SERVING__API_KEY": API_KEY,
        "AIRLOOP_SERVING__OPEN_SCOPES": json.dumps(OPEN_SCOPES),
        "AIRLOOP_SERVING__POLL_INTERVAL_S": "3600",
    }
    for name, value in env.items():
        patch.setenv(name, value)
    for name in ("AIRLOOP_MODEL", "AIRLOOP_MODELS__DEFAULT", "AIRLOOP_MODELS__SERVE", "AIRLOOP_CONFIG"):
        patch.delenv(name, raising=False)
    if serve is not None:
        patch.setenv("AIRLOOP_MODELS__SERVE", json.dumps(serve))
    get_settings.cache_clear()


@contextlib.contextmanager
def environment(registry, home: Path, folder: Path, serve: list[str] | None = None) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        configure(patch, registry, home, folder, serve)
        try:
            yield
        finally:
            get_settings.cache_clear()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def client(registry, folder, tmp_path_factory) -> Iterator[TestClient]:
    with environment(registry, tmp_path_factory.mktemp("home"), folder), TestClient(create_app()) as client:
        yield client


@pytest.fixture
def env(registry, folder, tmp_path) -> Iterator[Path]:
    """This test's own home under the two-model environment (for an app the test starts and stops itself)."""
    with environment(registry, tmp_path / "home", folder):
        yield tmp_path / "home"


@pytest.fixture
def twin_routing_restored(registry):
    """Puts both models' routing tags back as they were (the worker's other test files share this registry)."""
    client = registry.client()
    kept = {name: client.get_registered_model(name).tags.get(Tag.ROUTING) for name in (NAME, TWIN)}
    yield
    for name, value in kept.items():
        if value is not None:
            client.set_registered_model_tag(name, Tag.ROUTING, value)
        elif Tag.ROUTING in client.get_registered_model(name).tags:
            client.delete_registered_model_tag(name, Tag.ROUTING)


def records(registry, count: int, prefix: str = "patient") -> list[dict[str, Any]]:
    return [{**r, "entity_id": f"{prefix}-{i}"} for i, r in enumerate(registry.records[:count])]


def champion_probabilities(registry, rows: list[dict[str, Any]]) -> list[float]:
    from tests.serving.test_app import expected_probabilities

    return expected_probabilities(registry, CHAMPION_VERSION, rows)


def test_models_lists_every_hosted_model_with_its_versions_and_readiness(client, twin_version):
    response = client.get("/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["default"] == NAME
    assert body["hosted"] == {
        NAME: {"status": "ready", "reason": None, "versions": VERSIONS},
        TWIN: {"status": "ready", "reason": None, "versions": {"champion": twin_version}},
    }
    # Today's fields are still the default model's.
    assert body["model_name"] == NAME and {a: m["version"] for a, m in body["models"].items()} == VERSIONS


def test_each_model_answers_with_its_own_registered_version_and_threshold(client, registry, twin_version):
    rows = records(registry, TWIN_LIMIT)

    twin = client.post(f"/v1/models/{TWIN}/predict", json={"records": rows})
    detail = client.get(f"/v1/models/{TWIN}")

    assert twin.status_code == 200
    expected = champion_probabilities(registry, rows)  # the same artifact as readmission's champion
    for prediction, probability in zip(twin.json()["predictions"], expected, strict=True):
        assert (prediction["variant"], prediction["model_version"]) == (Alias.CHAMPION, twin_version)
        assert prediction["probability"] == pytest.approx(probability, abs=1e-9)
        assert prediction["predicted_class"] == int(probability >= TWIN_THRESHOLD)
    assert detail.status_code == 200
    assert detail.json()["model_name"] == TWIN
    assert detail.json()["models"]["champion"]["threshold"] == TWIN_THRESHOLD


def test_the_default_models_routes_answer_as_before_beside_its_named_routes(client, registry):
    rows = records(registry, 8)

    unnamed = client.post("/v1/predict", json={"records": rows})
    named = client.post(f"/v1/models/{NAME}/predict", json={"records": rows})
    ready = client.get("/ready")

    assert unnamed.status_code == named.status_code == 200
    strip = [{k: p[k] for k in ("variant", "model_version", "probability")} for p in unnamed.json()["predictions"]]
    assert strip == [
        {k: p[k] for k in ("variant", "model_version", "probability")} for p in named.json()["predictions"]
    ]
    assert {p["model_version"] for p in unnamed.json()["predictions"]} <= set(VERSIONS.values())
    answers = unnamed.json()["predictions"]
    assert all(p["predicted_class"] == int(p["probability"] >= THRESHOLDS[p["model_version"]]) for p in answers)
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["versions"] == VERSIONS


def test_each_model_keeps_the_batch_limit_of_its_own_spec(client, registry):
    rows = records(registry, TWIN_LIMIT + 1)

    twin = client.post(f"/v1/models/{TWIN}/predict", json={"records": rows})
    default = client.post(f"/v1/models/{NAME}/predict", json={"records": rows})

    assert twin.status_code == 413 and f"limit of {TWIN_LIMIT} records" in twin.json()["detail"]
    assert default.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/churn/predict"),
        ("POST", "/v1/models/churn/feedback"),
        ("GET", "/v1/models/churn"),
        ("GET", "/v1/models/churn/history"),
        ("PUT", "/v1/models/churn/routing"),
        ("POST", "/v1/models/churn/reload"),
    ],
)
def test_an_unknown_model_gets_404_naming_it_and_the_hosted_ones(client, registry, method, path):
    response = client.request(method, path, json={"records": records(registry, 1)}, headers=KEY)

    assert response.status_code == 404
    assert response.json()["detail"] == f"no model 'churn' is served here (models: {NAME}, {TWIN})"


def test_metric_labels_name_only_hosted_models_whatever_paths_are_asked(client, registry):
    for name in ("churn", "x" * 200, "%00", TWIN.upper()):
        client.post(f"/v1/models/{name}/predict", json={"records": records(registry, 1)})
        client.get(f"/v1/models/{name}/predict")  # a method no route takes: 405 for a hosted model
        client.post(f"/v1/models/{name}/predict/")  # a redirect to the path without the slash
        client.delete(f"/v1/models/{name}")
    client.post(f"/v1/models/{TWIN}/predict", json={"records": records(registry, 1)})

    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    endpoints = {s.labels["endpoint"] for s in families["airloop_requests"].samples}
    models = {s.labels["model"] for name in ("airloop_predictions", "airloop_errors") for s in families[name].samples}
    assert {e.split("/")[3] for e in endpoints if e.startswith("/v1/models/")} <= {NAME, TWIN}
    assert f"/v1/models/{TWIN}/predict" in endpoints and "<unmatched>" in endpoints
    assert models <= {NAME, TWIN, ""} and TWIN in models


def test_the_docs_have_one_section_per_model_described_from_its_champion(client, registry):
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    assert [tag["name"] for tag in document["tags"]] == [NAME, TWIN]
    for name in (NAME, TWIN):
        operations = [
            op
            for path, ops in document["paths"].items()
            if path.startswith(f"/v1/models/{name}")
            for op in ops.values()
        ]
        assert len(operations) == 7 and all(op["tags"] == [name] for op in operations)
    media = document["paths"][f"/v1/models/{TWIN}/predict"]["post"]["requestBody"]["content"]["application/json"]
    request = schemas[media["schema"]["$ref"].rsplit("/", 1)[1]]
    record = schemas[request["properties"]["records"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert request["properties"]["records"]["maxItems"] == TWIN_LIMIT
    assert set(record["required"]) == set(registry.records[0])
    assert client.post(f"/v1/models/{TWIN}/predict", json=media["example"]).status_code == 200
    unnamed = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert schemas[unnamed["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]["records"]["maxItems"] != TWIN_LIMIT


def test_predictions_and_feedback_of_each_model_go_to_its_own_logs_only(env, registry):
    with TestClient(create_app()) as client:
        twin = client.post(f"/v1/models/{TWIN}/predict", json={"records": records(registry, 3, "t")}).json()
        default = client.post("/v1/predict", json={"records": records(registry, 5, "d")}).json()
        named = client.post(f"/v1/models/{NAME}/predict", json={"records": records(registry, 2, "n")}).json()
        twin_ids = [p["request_id"] for p in twin["predictions"]]
        default_ids = [p["request_id"] for p in default["predictions"] + named["predictions"]]
        accepted = [
            client.post(f"/v1/models/{TWIN}/feedback", json={"request_id": twin_ids[0], "outcome": 1}),
            client.post("/v1/feedback", json={"request_id": default_ids[0], "outcome": 0}),
        ]
        # An id one model issued is not the other's: its outcome cannot land in the other's log.
        crossed = [
            client.post(f"/v1/models/{TWIN}/feedback", json={"request_id": default_ids[1], "outcome": 1}),
            client.post("/v1/feedback", json={"request_id": twin_ids[1], "outcome": 0}),
        ]

    assert [r.status_code for r in accepted] == [202, 202]
    assert [r.status_code for r in crossed] == [404, 404], [r.text for r in crossed]
    logs = {name: get_settings(name).layout for name in (NAME, TWIN)}
    assert logs[NAME].predictions().url != logs[TWIN].predictions().url
    # Each request once per variant that scored it (the other variant scores it too, unserved: loop.score_both).
    assert sorted(set(load_predictions(logs[TWIN].predictions(), *EVER)["request_id"])) == sorted(twin_ids)
    assert sorted(set(load_predictions(logs[NAME].predictions(), *EVER)["request_id"])) == sorted(default_ids)
    assert list(load_feedback(logs[TWIN].feedback(), *EVER)["request_id"]) == [twin_ids[0]]
    assert list(load_feedback(logs[NAME].feedback(), *EVER)["request_id"]) == [default_ids[0]]


def test_a_routing_change_of_one_model_leaves_the_other_untouched(client, registry, twin_routing_restored):
    before = client.get(f"/v1/models/{NAME}").json()["routing"]
    # the registry is shared by the worker's test files: another may have set the default model's routing already
    tag_before = registry.client().get_registered_model(NAME).tags.get(Tag.ROUTING)

    changed = client.put(f"/v1/models/{TWIN}/routing", json={"weights": {"champion": 1}, "mode": "shadow"}, headers=KEY)
    unnamed = client.get("/v1/models").json()

    assert changed.status_code == 200 and changed.json()["mode"] == "shadow"
    assert client.get(f"/v1/models/{TWIN}").json()["routing"]["mode"] == "shadow"
    assert client.get(f"/v1/models/{NAME}").json()["routing"] == unnamed["routing"] == before
    tags = {name: registry.client().get_registered_model(name).tags for name in (NAME, TWIN)}
    assert Tag.ROUTING in tags[TWIN] and tags[NAME].get(Tag.ROUTING) == tag_before
    actor = f"api:PUT /v1/models/{TWIN}/routing"
    twin_history = client.get(f"/v1/models/{TWIN}/history").json()["decisions"]
    assert [(d["kind"], d["decided_by"]) for d in twin_history][:1] == [("routing_changed", actor)]
    assert actor not in {d["decided_by"] for d in client.get("/v1/history").json()["decisions"]}


def test_admin_routes_of_a_named_model_need_the_key(client):
    missing = client.post(f"/v1/models/{TWIN}/reload")
    wrong = client.put(f"/v1/models/{TWIN}/routing", json={"weights": {"champion": 1}}, headers={"X-API-Key": "no"})
    reload = client.post(f"/v1/models/{TWIN}/reload", headers=KEY)

    assert (missing.status_code, wrong.status_code) == (401, 403)
    assert reload.status_code == 200 and reload.json()["versions"] == {"champion": "1"}


def test_a_slow_model_holds_up_neither_the_requests_nor_the_reloads_of_another(env, registry, monkeypatch):
    release, scoring, polling = threading.Event(), threading.Event(), threading.Event()
    answers: dict[str, int] = {}

    with uvicorn_app(create_app()) as running:
        twin = running.server.config.app.state.airloop.models[TWIN]
        champion = twin.holder.models[Alias.CHAMPION]
        score = champion.predict_proba

        def slow_score(rows):
            scoring.set()
            release.wait(30)
            return score(rows)

        def slow_refresh() -> bool:
            polling.set()
            release.wait(30)
            return False

        monkeypatch.setattr(champion, "predict_proba", slow_score)
        monkeypatch.setattr(twin.holder, "refresh", slow_refresh)

        def call(name: str, path: str, **kwargs: Any) -> None:
            answers[name] = httpx.post(f"{running.url}{path}", timeout=60, **kwargs).status_code

        stuck = [
            threading.Thread(
                target=call,
                args=("twin predict", f"/v1/models/{TWIN}/predict"),
                kwargs={"json": {"records": records(registry, 1)}},
            ),
            threading.Thread(target=call, args=("twin reload", f"/v1/models/{TWIN}/reload"), kwargs={"headers": KEY}),
        ]
        for thread in stuck:
            thread.start()
        try:
            assert scoring.wait(10) and polling.wait(10)
            started = time.monotonic()
            with httpx.Client(base_url=running.url, timeout=5) as http:
                predict = http.post("/v1/predict", json={"records": records(registry, 4)})
                named = http.post(f"/v1/models/{NAME}/predict", json={"records": records(registry, 1)})
                reload = http.post(f"/v1/models/{NAME}/reload", headers=KEY)
                ready = http.get("/ready")
            elapsed = time.monotonic() - started
        finally:
            release.set()
            for thread in stuck:
                thread.join(timeout=30)

    assert (predict.status_code, named.status_code, reload.status_code, ready.status_code) == (200, 200, 200, 200)
    assert elapsed < 5
    assert answers == {"twin predict": 200, "twin reload": 200}


@pytest.fixture
def broken_folder(registry, folder, tmp_path) -> Path:
    """readmission beside a model the registry does not know and one whose champion cannot load."""
    register_copy(registry, WRECK, 0.5, source="file:///nonexistent/airloop-wrecked-model")
    broken = tmp_path / "models"
    for name in (NAME, GHOST, WRECK):
        write_spec(broken, name)
    return broken


def test_models_that_cannot_load_answer_503_for_themselves_only_and_ready_names_them(registry, broken_folder, tmp_path):
    with environment(registry, tmp_path / "home", broken_folder), TestClient(create_app()) as client:
        default = client.post("/v1/predict", json={"records": records(registry, 2)})
        named = client.post(f"/v1/models/{NAME}/predict", json={"records": records(registry, 2)})
        ghost = client.post(f"/v1/models/{GHOST}/predict", json={"records": records(registry, 2)})
        wreck = client.post(f"/v1/models/{WRECK}/predict", json={"records": records(registry, 2)})
        ready = client.get("/ready")
        hosted = client.get("/v1/models").json()["hosted"]

    assert (default.status_code, named.status_code) == (200, 200)
    assert ghost.status_code == 503 and ghost.json()["detail"] == f"the registry has no champion alias for {GHOST}"
    assert wreck.status_code == 503 and f"loading {WRECK}@champion v1 failed" in wreck.json()["detail"]
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded" and body["versions"] == VERSIONS
    assert {name: found["status"] for name, found in body["models"].items()} == {
        NAME: "ready",
        GHOST: "not_ready",
        WRECK: "not_ready",
    }
    assert f"{GHOST}: " in body["reason"] and f"{WRECK}: " in body["reason"] and f"{NAME}: " not in body["reason"]
    assert hosted[GHOST]["status"] == hosted[WRECK]["status"] == "not_ready"


def test_a_service_told_to_serve_one_model_hosts_only_that_one(registry, folder, tmp_path):
    with environment(registry, tmp_path / "home", folder, serve=[TWIN]), TestClient(create_app()) as client:
        twin = client.post(f"/v1/models/{TWIN}/predict", json={"records": records(registry, 1)})
        other = client.post(f"/v1/models/{NAME}/predict", json={"records": records(registry, 1)})
        unnamed = client.post("/v1/predict", json={"records": records(registry, 1)})
        ready = client.get("/ready")
        listed = client.get("/v1/models").json()

    assert twin.status_code == 200
    assert other.status_code == 404
    assert (
        other.json()["detail"]
        == f"no model {NAME!r} is served here (models: {TWIN}); {NAME}: not in models.serve of this service"
    )
    assert unnamed.status_code == 404 and f"the default model {NAME!r} is not served here" in unnamed.json()["detail"]
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["versions"] == {}
    assert list(listed["hosted"]) == [TWIN] and listed["model_name"] is None and listed["routing"] is None


def test_a_serve_list_naming_a_model_without_a_valid_spec_stops_the_start_naming_it(registry, folder, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "broken.yaml").write_text("name: broken\ndata: 3\n")

    with (
        environment(registry, tmp_path / "home", folder, serve=[TWIN, "churn"]),
        pytest.raises(SpecError, match="churn"),
    ):
        create_app()
    with (
        environment(registry, tmp_path / "home", tmp_path / "models"),
        pytest.raises(SpecError, match="no model to serve"),
    ):
        create_app()
