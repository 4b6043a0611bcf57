"""The prediction service end to end: real registered models, FastAPI's TestClient or a real uvicorn, real logs."""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from airloop.experiments import evaluation
from airloop.experiments.routing import RoutingConfig, assign, default_routing
from airloop.predlog import load_errors, load_feedback, load_predictions
from airloop.registry.contract import Alias
from serving.main import create_app
from tests.serving.conftest import (
    API_KEY,
    CHALLENGER_VERSION,
    CHAMPION_VERSION,
    NAME,
    THRESHOLDS,
    app_settings,
    free_port,
    uvicorn_app,
)
from tests.specs import READMISSION

MAX_RECORDS = 16
MAX_BODY = 64 * 1024
KEY = {"X-API-Key": API_KEY}
VERSION = {"champion": CHAMPION_VERSION, "challenger": CHALLENGER_VERSION}
# What the service says of each version's operating point (tests/serving/conftest.py registers them).
OPERATING_POINTS = {
    CHAMPION_VERSION: {"kind": "f1", "target": None, "threshold": THRESHOLDS[CHAMPION_VERSION]},
    CHALLENGER_VERSION: {"kind": "recall", "target": 0.8, "threshold": THRESHOLDS[CHALLENGER_VERSION]},
}
BOTH = set(VERSION)


def expected_probabilities(registry, version: str, records: list[dict[str, Any]]) -> list[float]:
    """What the registered model of ``version`` says for these records (entity ids left out)."""
    frame = pd.DataFrame.from_records(
        [{k: v for k, v in r.items() if k != "entity_id"} for r in records], columns=READMISSION.data.input_columns
    )
    return registry.pipeline(version).predict_proba(frame)[:, 1].tolist()


EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def logged(settings) -> pd.DataFrame:
    """Every prediction the app logged, read back through airloop.monitoring."""
    return load_predictions(settings.layout.predictions(), *EVER)


def ids_routed_to(routing: RoutingConfig, variant: str, count: int) -> list[str]:
    """The first ``count`` patient ids that the routing sends to ``variant``."""
    ids = (f"patient-{i}" for i in itertools.count())
    return list(itertools.islice((i for i in ids if assign(routing, i, BOTH, random.Random()) == variant), count))


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text -> {(sample name, labels): value}."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def settings(registry, tmp_path_factory):
    # Never polls while the module runs: the swap test below moves aliases in the same registry.
    return app_settings(
        tmp_path_factory.mktemp("app"),
        registry,
        max_batch_records=MAX_RECORDS,
        max_body_bytes=MAX_BODY,
        poll_interval_s=3600,
    )


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def routing(settings) -> RoutingConfig:
    return default_routing(settings)


@pytest.fixture
def record(registry) -> dict[str, Any]:
    return dict(registry.records[0])


def test_health_is_ok(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_once_champion_and_challenger_are_loaded(client):
    response = client.get("/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "versions": VERSION,
        "models": {NAME: {"status": "ready", "versions": VERSION}},
    }


def test_models_lists_loaded_aliases_versions_and_routing(client, routing):
    response = client.get("/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["model_name"] == NAME
    assert {alias: m["version"] for alias, m in body["models"].items()} == VERSION
    assert {alias: m["threshold"] for alias, m in body["models"].items()} == {
        alias: THRESHOLDS[version] for alias, version in VERSION.items()
    }
    assert all(m["fast_path"] and m["run_id"] for m in body["models"].values())
    assert {alias: m["operating_point"] for alias, m in body["models"].items()} == {
        alias: OPERATING_POINTS[version] for alias, version in VERSION.items()
    }
    assert body["routing"] == {"experiment": routing.experiment, "mode": routing.mode, "weights": routing.weights}
    assert body["registry_error"] is None


def test_openapi_docs_are_served(client):
    docs = client.get("/docs")
    schema = client.get("/openapi.json")

    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert {"/v1/predict", "/v1/feedback", "/v1/models", "/v1/routing", "/v1/reload"} <= set(schema.json()["paths"])


def test_each_record_is_answered_by_its_routed_variant_with_that_models_probability(client, registry, routing):
    ids = ids_routed_to(routing, "champion", MAX_RECORDS // 2) + ids_routed_to(routing, "challenger", MAX_RECORDS // 2)
    random.Random(3).shuffle(ids)
    records = [{**registry.records[i], "entity_id": entity} for i, entity in enumerate(ids)]

    response = client.post("/v1/predict", json={"records": records})

    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == len(records)
    expected = {v: expected_probabilities(registry, v, records) for v in VERSION.values()}
    for i, (entity, prediction) in enumerate(zip(ids, predictions, strict=True)):
        variant = assign(routing, entity, BOTH, random.Random())
        version = VERSION[variant]
        assert (prediction["variant"], prediction["model_version"]) == (variant, version), entity
        assert prediction["probability"] == pytest.approx(expected[version][i], abs=1e-9)
        assert prediction["predicted_class"] == int(prediction["probability"] >= THRESHOLDS[version])
        assert prediction["operating_point"] == OPERATING_POINTS[version]  # which threshold the class is at
    assert len({p["request_id"] for p in predictions}) == len(records)
    # The variants really are different models.
    assert expected[CHAMPION_VERSION] != pytest.approx(expected[CHALLENGER_VERSION], abs=1e-3)


def test_the_same_entity_is_always_served_by_the_same_variant(client, registry, routing):
    ids = ids_routed_to(routing, "champion", 3) + ids_routed_to(routing, "challenger", 3)

    def variant(entity: str, n: int) -> str:
        response = client.post("/v1/predict", json={"records": [{**registry.records[n], "entity_id": entity}]})
        return response.json()["predictions"][0]["variant"]

    seen = {entity: {variant(entity, n) for n in range(5)} for entity in ids}

    assert seen == {entity: {assign(routing, entity, BOTH, random.Random())} for entity in ids}


def test_records_without_entity_id_or_with_an_integer_id_are_scored(client, record):
    response = client.post("/v1/predict", json={"records": [record, {**record, "entity_id": 12345}]})

    assert response.status_code == 200
    assert [p["variant"] in BOTH for p in response.json()["predictions"]] == [True, True]


def test_nullable_categories_accept_null(client, registry, record):
    nulls = {"race": None, "payer_code": None, "medical_specialty": None}

    response = client.post("/v1/predict", json={"records": [{**record, **nulls, "entity_id": "x"}]})

    assert response.status_code == 200
    prediction = response.json()["predictions"][0]
    missing = {**record, **dict.fromkeys(nulls, "?")}  # how the published file writes a missing value
    version = prediction["model_version"]
    assert prediction["probability"] == pytest.approx(expected_probabilities(registry, version, [missing])[0], abs=1e-9)


def _without(record: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != field}


@pytest.mark.parametrize(
    ("make_body", "loc"),
    [
        pytest.param(lambda r: {"records": [_without(r, "age")]}, ["body", "records", 0, "age"], id="missing-field"),
        pytest.param(
            lambda r: {"records": [{**r, "colour": "red"}]}, ["body", "records", 0, "colour"], id="unknown-field"
        ),
        pytest.param(lambda r: {"records": [r], "verbose": True}, ["body", "verbose"], id="unknown-top-level-field"),
        pytest.param(
            lambda r: {"records": [{**r, "num_medications": "70"}]},
            ["body", "records", 0, "num_medications"],
            id="string-number",
        ),
        pytest.param(
            lambda r: {"records": [{**r, "num_medications": True}]},
            ["body", "records", 0, "num_medications"],
            id="bool-number",
        ),
        pytest.param(
            lambda r: {"records": [{**r, "age": "[200-210)"}]}, ["body", "records", 0, "age"], id="unknown-age-bucket"
        ),
        pytest.param(lambda r: {"records": [{**r, "age": None}]}, ["body", "records", 0, "age"], id="null-age-bucket"),
        pytest.param(lambda r: {"records": [{**r, "race": 3}]}, ["body", "records", 0, "race"], id="number-category"),
        pytest.param(
            lambda r: {"records": [{**r, "num_lab_procedures": math.nan}]},
            ["body", "records", 0, "num_lab_procedures"],
            id="nan",
        ),
        pytest.param(
            lambda r: {"records": [{**r, "num_lab_procedures": -math.inf}]},
            ["body", "records", 0, "num_lab_procedures"],
            id="-infinity",
        ),
        pytest.param(
            lambda r: {"records": [{**r, "entity_id": 1.5}]}, ["body", "records", 0, "entity_id"], id="float-id"
        ),
        pytest.param(
            lambda r: {"records": [r, _without(r, "A1Cresult")]},
            ["body", "records", 1, "A1Cresult"],
            id="second-record",
        ),
        pytest.param(lambda r: {"records": []}, ["body", "records"], id="empty-batch"),
        pytest.param(lambda r: {}, ["body", "records"], id="no-records"),
        pytest.param(lambda r: {"records": r}, ["body", "records"], id="records-not-a-list"),
        pytest.param(lambda r: [r], ["body"], id="body-not-an-object"),
    ],
)
def test_invalid_prediction_request_gets_422_naming_the_field(client, record, make_body, loc):
    content = json.dumps(make_body(record))  # writes NaN and -Infinity as the bare literals a client may send

    response = client.post("/v1/predict", content=content, headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text
    assert any(d["loc"][: len(loc)] == loc for d in response.json()["detail"]), response.json()


def test_batch_over_the_record_limit_gets_413(client, record):
    response = client.post("/v1/predict", json={"records": [record] * (MAX_RECORDS + 1)})

    assert response.status_code == 413
    assert f"{MAX_RECORDS} records" in response.json()["detail"]


def test_body_over_the_byte_limit_gets_413(client, record):
    content = json.dumps({"records": [record] * MAX_RECORDS, "padding": "x" * MAX_BODY})

    response = client.post("/v1/predict", content=content, headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert f"limit of {MAX_BODY} bytes" in response.json()["detail"]


def test_body_over_the_byte_limit_without_content_length_gets_413(client, record):
    def chunks():
        yield json.dumps({"records": [record]}).encode()[:-1]
        for _ in range(MAX_BODY // 1024 + 1):
            yield b" " * 1024
        yield b"}"

    response = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert f"limit of {MAX_BODY} bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    "content", [b'{"records": [', b"records=1", b"\xff\xfe{}"], ids=["truncated", "form", "binary"]
)
def test_malformed_json_gets_400(client, content):
    response = client.post("/v1/predict", content=content, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert "malformed JSON" in response.json()["detail"]


def test_feedback_is_accepted_for_a_prediction(client, record):
    request_id = client.post("/v1/predict", json={"records": [record]}).json()["predictions"][0]["request_id"]

    response = client.post("/v1/feedback", json={"request_id": request_id, "outcome": 1})

    assert response.status_code == 202
    assert response.json() == {"accepted": True, "request_id": request_id}


def test_feedback_for_an_unknown_request_id_gets_404_and_a_duplicate_gets_409(client, record):
    request_id = client.post("/v1/predict", json={"records": [record]}).json()["predictions"][0]["request_id"]
    forged = "0" * 32

    unknown = client.post("/v1/feedback", json={"request_id": forged, "outcome": 1})
    first = client.post("/v1/feedback", json={"request_id": request_id, "outcome": 0})
    second = client.post("/v1/feedback", json={"request_id": request_id, "outcome": 1})

    assert unknown.status_code == 404 and "unknown request_id" in unknown.json()["detail"]
    assert first.status_code == 202
    assert second.status_code == 409 and "already recorded" in second.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"request_id": "abc", "outcome": 2}, ["body", "outcome"]),
        ({"request_id": "abc", "outcome": "yes"}, ["body", "outcome"]),
        ({"request_id": "abc"}, ["body", "outcome"]),
        ({"request_id": "", "outcome": 1}, ["body", "request_id"]),
        ({"request_id": "abc", "outcome": 1, "note": "x"}, ["body", "note"]),
    ],
    ids=["outcome-2", "outcome-string", "outcome-missing", "empty-request-id", "unknown-field"],
)
def test_bad_feedback_gets_422_naming_the_field(client, body, loc):
    response = client.post("/v1/feedback", json=body)

    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["detail"]] == [loc]


def test_malformed_feedback_json_gets_400(client):
    response = client.post("/v1/feedback", content=b'{"request_id": ', headers={"content-type": "application/json"})

    assert response.status_code == 400


ADMIN_CALLS = [
    pytest.param("PUT", "/v1/routing", {"weights": {"champion": 1}}, id="routing"),
    pytest.param("POST", "/v1/reload", None, id="reload"),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_endpoint_without_key_gets_401(client, method, path, body):
    response = client.request(method, path, json=body)

    assert response.status_code == 401
    assert "X-API-Key" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_endpoint_with_wrong_key_gets_403(client, method, path, body):
    response = client.request(method, path, json=body, headers={"X-API-Key": "not-the-key"})

    assert response.status_code == 403
    assert client.get("/v1/models").json()["routing"]["weights"] != {"champion": 1}


RELOAD_KEY = "test-reload-key"


@pytest.fixture
def reload_key(settings, monkeypatch) -> dict[str, str]:
    """The module's app with a reload-only key (serving.reload_key) configured beside the admin key."""
    monkeypatch.setattr(settings.serving, "reload_key", RELOAD_KEY)
    return {"X-API-Key": RELOAD_KEY}


def test_reload_key_may_reload_but_gets_403_naming_the_scope_on_routing(client, routing, reload_key):
    reload = client.post("/v1/reload", headers=reload_key)
    route = client.put("/v1/routing", json={"weights": {"champion": 1}}, headers=reload_key)

    assert reload.status_code == 200 and reload.json()["versions"] == VERSION
    assert route.status_code == 403
    assert route.json()["detail"] == (
        "this API key lacks the routing scope that PUT /v1/routing needs"
        " (serving.api_key or security.teams.care.api_key)"
    )
    assert client.get("/v1/models").json()["routing"]["weights"] == routing.weights


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_endpoint_without_key_gets_401_with_a_reload_key_configured(client, reload_key, method, path, body):
    response = client.request(method, path, json=body)

    assert response.status_code == 401


def test_admin_key_may_reload_and_change_routing(client, routing, reload_key):
    reload = client.post("/v1/reload", headers=KEY)
    route = client.put("/v1/routing", json={"weights": routing.weights, "mode": routing.mode}, headers=KEY)

    assert reload.status_code == 200
    assert route.status_code == 200 and route.json()["weights"] == routing.weights


@pytest.mark.parametrize(
    "body",
    [
        {"weights": {"champion": -1, "challenger": 2}},
        {"weights": {"champion": 0, "challenger": 0}},
        {"weights": {"canary": 1}},
        {"weights": {}},
        {"weights": {"champion": 1}, "mode": "canary"},
    ],
    ids=["negative", "all-zero", "unknown-variant", "empty", "unknown-mode"],
)
def test_bad_routing_update_gets_422_and_changes_nothing(client, routing, body):
    response = client.put("/v1/routing", json=body, headers=KEY)

    assert response.status_code == 422
    assert all(d["loc"][:2] in (["body", "weights"], ["body", "mode"]) for d in response.json()["detail"])
    assert client.get("/v1/models").json()["routing"]["weights"] == routing.weights


def test_nan_routing_weight_gets_422(client, routing, record):
    response = client.put(
        "/v1/routing", content=b'{"weights": {"champion": NaN}}', headers={**KEY, "content-type": "application/json"}
    )
    try:
        assert response.status_code == 422
    finally:
        restored = client.put("/v1/routing", json={"weights": routing.weights, "mode": routing.mode}, headers=KEY)
        assert restored.status_code == 200


def test_metrics_count_requests_latency_predictions_and_errors(client, registry, routing):
    before = samples(client.get("/metrics").text)
    entity = ids_routed_to(routing, "champion", 1)[0]

    ok = client.post("/v1/predict", json={"records": [{**registry.records[0], "entity_id": entity}]})
    bad = client.post("/v1/predict", json={"records": []})
    after = samples(client.get("/metrics").text)

    assert (ok.status_code, bad.status_code) == (200, 422)

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("airloop_requests_total", endpoint="/v1/predict", status="200") == 1
    assert delta("airloop_requests_total", endpoint="/v1/predict", status="422") == 1
    assert delta("airloop_request_latency_seconds_count", endpoint="/v1/predict") == 2
    assert (
        delta("airloop_predictions_total", model=NAME, variant="champion", version=CHAMPION_VERSION, served="served")
        == 1
    )
    assert delta("airloop_errors_total", kind="invalid_input", model=NAME) == 1


def test_routing_update_applies_to_the_next_request(make_settings, registry):
    with TestClient(create_app(make_settings())) as client:
        update = client.put("/v1/routing", json={"weights": {"challenger": 1}}, headers=KEY)
        records = [{**r, "entity_id": f"patient-{i}"} for i, r in enumerate(registry.records[:10])]
        predictions = client.post("/v1/predict", json={"records": records}).json()["predictions"]

    assert update.status_code == 200
    assert update.json()["weights"] == {"challenger": 1}
    assert {(p["variant"], p["model_version"]) for p in predictions} == {("challenger", CHALLENGER_VERSION)}


def test_a_routing_change_reaches_another_replica_and_survives_a_restart(make_settings, registry):
    settings = make_settings(poll_interval_s=0.2)
    wanted = {"weights": {"champion": 30.0, "challenger": 70.0}, "mode": "ab", "experiment": "exp-restart"}

    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        assert first.put("/v1/routing", json=wanted, headers=KEY).status_code == 200
        deadline = time.monotonic() + 10
        while second.get("/v1/models").json()["routing"] != wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        seen_by_other_replica = second.get("/v1/models").json()["routing"]
    with TestClient(create_app(settings)) as restarted:
        after_restart = restarted.get("/v1/models").json()["routing"]

    assert seen_by_other_replica == wanted
    assert after_restart == wanted


def test_shadow_mode_answers_with_the_champion_and_logs_both_variants(make_settings, registry):
    settings = make_settings()
    routing = default_routing(settings)
    ids = ids_routed_to(routing, "challenger", 5) + ids_routed_to(routing, "champion", 5) + [None] * 5
    records = [{**registry.records[i], "entity_id": entity} for i, entity in enumerate(ids)]

    with TestClient(create_app(settings)) as client:
        update = client.put(
            "/v1/routing", json={"weights": {"champion": 90, "challenger": 10}, "mode": "shadow"}, headers=KEY
        )
        singles = [client.post("/v1/predict", json={"records": [r]}) for r in records[:10]]
        batch = client.post("/v1/predict", json={"records": records[10:]})

    assert update.status_code == 200 and update.json()["mode"] == "shadow"
    assert [r.status_code for r in [*singles, batch]] == [200] * 11
    answers = [r.json()["predictions"][0] for r in singles] + batch.json()["predictions"]
    champion = expected_probabilities(registry, CHAMPION_VERSION, records)
    challenger = expected_probabilities(registry, CHALLENGER_VERSION, records)
    for i, answer in enumerate(answers):
        assert (answer["variant"], answer["model_version"]) == ("champion", CHAMPION_VERSION)
        assert answer["probability"] == pytest.approx(champion[i], abs=1e-9)

    log = logged(settings)
    assert len(log) == 2 * len(records)
    assert set(log["experiment_id"]) == {routing.experiment}
    for i, answer in enumerate(answers):
        rows = log[log["request_id"] == answer["request_id"]].set_index("variant")
        assert rows["shadow"].to_dict() == {"champion": False, "challenger": True}
        assert rows["model_version"].to_dict() == {"champion": CHAMPION_VERSION, "challenger": CHALLENGER_VERSION}
        assert rows.loc["champion", "probability"] == pytest.approx(champion[i], abs=1e-9)
        assert rows.loc["challenger", "probability"] == pytest.approx(challenger[i], abs=1e-9)


def test_in_shadow_mode_a_failing_challenger_costs_the_caller_nothing(make_settings, registry, monkeypatch):
    def broken(records):
        raise RuntimeError("the challenger's artifact is corrupt")

    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        shadow = {"weights": {"champion": 1, "challenger": 1}, "mode": "shadow"}
        assert client.put("/v1/routing", json=shadow, headers=KEY).status_code == 200
        experiment = client.get("/v1/models").json()["routing"]["experiment"]
        monkeypatch.setattr(
            client.app.state.airloop.models[NAME].holder.models[Alias.CHALLENGER], "predict_proba", broken
        )
        response = client.post("/v1/predict", json={"records": [registry.records[5]]})
        metrics = client.get("/metrics").text

    assert response.status_code == 200
    assert response.json()["predictions"][0]["variant"] == Alias.CHAMPION
    assert 'kind="shadow_scoring_failed"' in metrics
    errors = load_errors(settings.layout.errors(), *EVER)
    assert errors[["experiment_id", "variant", "model_version", "records", "shadow"]].to_dict("records") == [
        {
            "experiment_id": experiment,
            "variant": Alias.CHALLENGER.value,
            "model_version": CHALLENGER_VERSION,
            "records": 1,
            "shadow": True,
        }
    ]
    assert errors["error"][0] == "RuntimeError: the challenger's artifact is corrupt"


def test_a_challenger_failing_on_its_own_requests_is_a_server_error_logged_for_the_guardrail(
    make_settings, registry, monkeypatch
):
    def broken(records):
        raise RuntimeError("the challenger cannot score")

    settings = make_settings()
    records = [{**r, "entity_id": f"patient-{i}"} for i, r in enumerate(registry.records[:80])]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        split = {"weights": {"champion": 50, "challenger": 50}, "mode": "ab", "experiment": "errors-ab"}
        assert client.put("/v1/routing", json=split, headers=KEY).status_code == 200
        monkeypatch.setattr(
            client.app.state.airloop.models[NAME].holder.models[Alias.CHALLENGER], "predict_proba", broken
        )
        statuses = [client.post("/v1/predict", json={"records": [r]}).status_code for r in records]

    served = logged(settings)
    errors = load_errors(settings.layout.errors(), *EVER)
    assert set(statuses) == {200, 500}
    assert statuses.count(200) == len(served) and set(served["variant"]) == {Alias.CHAMPION.value}
    # Its own requests fail (500); the champion's, which it also scores unserved (loop.score_both), fail quietly.
    answered, unserved = errors[~errors["shadow"]], errors[errors["shadow"]]
    assert statuses.count(500) == len(answered) == int(answered["records"].sum())
    assert statuses.count(200) == len(unserved) == int(unserved["records"].sum())
    assert set(errors["variant"]) == {Alias.CHALLENGER.value}
    assert set(errors["experiment_id"]) == {"errors-ab"}

    # The evaluation stops the broken challenger on the error rate alone: no outcome has arrived yet.
    strict = settings.model_copy(update={"loop": settings.loop.model_copy(update={"min_rows": 20})})
    result = evaluation.evaluate(strict, "test")
    assert result["action"] == "reject"
    assert result["reason"].startswith("guardrail: the challenger's error rate 100.00%")
    assert result["operations"][Alias.CHALLENGER.value]["failed"] == len(records)  # every attempt, served or not
    assert result["arms"][Alias.CHALLENGER.value]["labelled"] == 0


def test_a_broken_split_halts_the_evaluation_and_the_halt_is_in_the_history(make_settings, registry, caplog):
    from airloop.ledger import Kind, ledger
    from airloop.predlog import PredictionRow, prediction_log

    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        split = {"weights": {"champion": 50, "challenger": 50}, "mode": "ab", "experiment": "srm-ab"}
        assert client.put("/v1/routing", json=split, headers=KEY).status_code == 200
        versions = {v: m["version"] for v, m in client.get("/v1/models").json()["models"].items()}
    # What a router that sends 45% of patients to the challenger instead of 50% would have logged.
    now, rows = time.time(), []
    for i in range(4_000):
        variant = Alias.CHALLENGER.value if i % 20 < 9 else Alias.CHAMPION.value
        rows.append(PredictionRow(f"r{i}", now, "srm-ab", variant, versions[variant], f"p{i}", 0.2, 0, False, {}, 1.0))
    writer = prediction_log(settings)
    writer.append(rows)
    writer.flush()

    with caplog.at_level("WARNING", logger="airloop.monitoring.alerts"):
        result = evaluation.evaluate(settings, "test")

    assert result["action"] == evaluation.HALT
    assert result["reason"].startswith(
        "halted: sample ratio mismatch in routed entities (challenger 1800, champion 2200"
    )
    assert result["srm"]["traffic"]["mismatch"] and result["rows_needed"] is None
    (row,) = ledger(settings).rows(kind=Kind.EVALUATION)
    assert row.outcome == evaluation.HALT and "sample ratio mismatch" in row.outcome_detail
    assert any("Sample ratio mismatch" in r.getMessage() for r in caplog.records)  # the alert's log line


def test_every_accepted_record_is_in_the_prediction_log_after_shutdown(make_settings, registry):
    settings = make_settings()
    records = [{**r, "entity_id": f"patient-{i}"} for i, r in enumerate(registry.records[:200])]
    answers: list[dict[str, Any]] = []

    with TestClient(create_app(settings)) as client:
        for r in records[:150]:
            response = client.post("/v1/predict", json={"records": [r]})
            assert response.status_code == 200
            answers += response.json()["predictions"]
        for start in range(150, 200, 10):
            response = client.post("/v1/predict", json={"records": records[start : start + 10]})
            assert response.status_code == 200
            answers += response.json()["predictions"]
        assert client.post("/v1/predict", json={"records": [{**records[0], "age": "old"}]}).status_code == 422
        outcomes = {a["request_id"]: i % 2 for i, a in enumerate(answers[:40])}
        for request_id, outcome in outcomes.items():
            assert client.post("/v1/feedback", json={"request_id": request_id, "outcome": outcome}).status_code == 202

    everything = logged(settings)
    log, unserved = everything[~everything["shadow"]], everything[everything["shadow"]]
    assert len(log) == 200
    assert sorted(log["request_id"]) == sorted(a["request_id"] for a in answers)
    # The variant that did not answer scored each record too (loop.score_both), unserved, for a paired A/B test.
    assert sorted(unserved["request_id"]) == sorted(log["request_id"])
    other = unserved.set_index("request_id")["variant"]
    assert all(other[a["request_id"]] != a["variant"] for a in answers)
    by_id = log.set_index("request_id")
    for record, answer in zip(records, answers, strict=True):
        row = by_id.loc[answer["request_id"]]
        assert (row["entity_id"], row["variant"], row["model_version"]) == (
            record["entity_id"],
            answer["variant"],
            answer["model_version"],
        )
        assert not row["shadow"] and row["probability"] == answer["probability"]
        assert 0 < row["latency_ms"] < 60_000
        assert row["record.age"] == record["age"] and row["record.diag_1"] == record["diag_1"]
    feedback = load_feedback(settings.layout.feedback(), *EVER)
    assert dict(zip(feedback["request_id"], feedback["outcome"], strict=True)) == outcomes


def test_champion_alias_move_is_picked_up_by_polling_without_a_failed_request(make_settings, registry, tmp_path):
    champion_only = tmp_path / "routing.yaml"
    champion_only.write_text("experiment: swap\nmode: ab\nweights:\n  champion: 1\n")
    settings = make_settings(poll_interval_s=0.5, routing_file=champion_only)
    client = registry.client()
    results: list[tuple[float, float, int | str, str | None]] = []  # sent, received, status or error, version
    stop = threading.Event()

    def send(worker: int) -> None:
        with httpx.Client(base_url=running.url, timeout=10) as http:
            for n in itertools.count():
                if stop.is_set():
                    return
                record = {**registry.records[(worker * 97 + n) % len(registry.records)], "entity_id": f"w{worker}-{n}"}
                sent = time.monotonic()
                try:
                    response = http.post("/v1/predict", json={"records": [record]})
                except httpx.HTTPError as error:
                    results.append((sent, time.monotonic(), repr(error), None))
                    continue
                version = response.json()["predictions"][0]["model_version"] if response.status_code == 200 else None
                results.append((sent, time.monotonic(), response.status_code, version))

    def new_version_served() -> bool:
        return any(version == CHALLENGER_VERSION for *_, version in results)

    try:
        with uvicorn_app(create_app(settings)) as running:
            workers = [threading.Thread(target=send, args=(w,)) for w in range(4)]
            for worker in workers:
                worker.start()
            time.sleep(1.0)
            moved = time.monotonic()
            client.set_registered_model_alias(NAME, Alias.CHAMPION, CHALLENGER_VERSION)
            while time.monotonic() < moved + 10 and not new_version_served():
                time.sleep(0.05)
            time.sleep(1.0)  # keep the traffic going past the swap
            stop.set()
            for worker in workers:
                worker.join(timeout=15)
    finally:
        stop.set()
        client.set_registered_model_alias(NAME, Alias.CHAMPION, CHAMPION_VERSION)

    assert not [r for r in results if r[2] != 200], [r for r in results if r[2] != 200][:5]
    assert {version for sent, _, _, version in results if sent < moved} == {CHAMPION_VERSION}
    first_new = min((received for _, received, _, version in results if version == CHALLENGER_VERSION), default=None)
    assert first_new is not None, "the new champion was never served"
    assert first_new - moved < 5
    assert any(moved < sent < first_new for sent, *_ in results), "no request was in flight during the swap"
    # Once one request got the new version, every request sent afterwards gets it too: no flapping back.
    assert {version for sent, _, _, version in results if sent > first_new} == {CHALLENGER_VERSION}


def test_without_a_reachable_registry_at_start_up_ready_and_predict_answer_503(make_settings, registry):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = make_settings(mlflow={"tracking_uri": nowhere, "registry_uri": nowhere})

    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        ready = client.get("/ready")
        predict = client.post("/v1/predict", json={"records": [registry.records[0]]})

    assert health.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready" and nowhere.removeprefix("http://") in ready.json()["reason"]
    assert predict.status_code == 503
    assert nowhere.removeprefix("http://") in predict.json()["detail"]


def test_registry_outage_keeps_serving_and_ready_reports_degraded(make_settings, registry, mlflow_server):
    mlflow_server.wait_ready()
    settings = make_settings(mlflow={"tracking_uri": mlflow_server.url, "registry_uri": mlflow_server.url})
    address = mlflow_server.url.removeprefix("http://")

    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").json()["status"] == "ready"
        mlflow_server.stop()

        reload = client.post("/v1/reload", headers=KEY)
        ready = client.get("/ready")
        predict = client.post("/v1/predict", json={"records": [registry.records[0]]})
        models = client.get("/v1/models").json()

    assert reload.status_code == 200
    assert reload.json()["changed"] is False and reload.json()["versions"] == VERSION
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    assert address in body["reason"]
    assert body["versions"] == VERSION
    assert predict.status_code == 200
    assert predict.json()["predictions"][0]["model_version"] in VERSION.values()
    assert body["reason"] == f"{NAME}: {models['registry_error']}"
    assert body["models"][NAME]["reason"] == models["registry_error"]
