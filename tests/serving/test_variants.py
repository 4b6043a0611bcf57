"""Each variant validates the records it scores against its own model's signature; a variant that is not loaded
answers 503 with the reason."""

from __future__ import annotations

import itertools
import random

import pytest
from fastapi.testclient import TestClient

from airloop.experiments.routing import RoutingConfig, assign, default_routing
from airloop.registry.contract import Alias, VersionRecord
from serving.main import create_app
from tests.serving.conftest import CHALLENGER_VERSION, NAME, encounters
from tests.specs import READMISSION

EXTRA = "hba1c_value"  # a field only the wider challenger takes
BOTH = {Alias.CHAMPION, Alias.CHALLENGER}


@pytest.fixture(scope="module")
def wider_challenger(registry):
    """A third version whose signature has one more field than the champion's, made the challenger for the module."""
    import mlflow
    from mlflow.models import infer_signature

    from airloop.registry.client import connect
    from airloop.settings import Settings
    from airloop.training import features

    connect(Settings(home=registry.home), create_experiment=True)  # an earlier test may have pointed MLflow elsewhere
    x, y = encounters(1500, seed=9)
    x = x.assign(**{EXTRA: 6.5})
    pipeline = features.make_pipeline(READMISSION, "logistic_regression", {}, seed=0).fit(x, y)
    with mlflow.start_run(run_name="wider"):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(x.head(5), pipeline.predict_proba(x.head(5))[:, 1]),
            skops_trusted_types=features.skops_trusted_types(pipeline),
            pip_requirements=["scikit-learn"],
        )
    version = mlflow.register_model(info.model_uri, NAME, tags=VersionRecord(threshold=0.2).to_tags()).version
    client = registry.client()
    client.set_registered_model_alias(NAME, Alias.CHALLENGER, str(version))
    yield str(version)
    client.set_registered_model_alias(NAME, Alias.CHALLENGER, CHALLENGER_VERSION)


def routed(routing: RoutingConfig, variant: str) -> str:
    ids = (f"patient-{i}" for i in itertools.count())
    return next(i for i in ids if assign(routing, i, BOTH, random.Random()) == variant)


@pytest.fixture
def app_client(make_settings, wider_challenger):
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        yield client, default_routing(settings)


def test_a_record_routed_to_the_wider_challenger_without_its_field_gets_422_naming_it(app_client, registry):
    client, routing = app_client
    record = {**registry.records[0], "entity_id": routed(routing, Alias.CHALLENGER)}

    response = client.post("/v1/predict", json={"records": [record]})

    assert response.status_code == 422
    assert ["body", "records", 0, EXTRA] in [d["loc"] for d in response.json()["detail"]]


def test_each_variant_scores_the_records_of_its_own_signature(app_client, registry, wider_challenger):
    client, routing = app_client
    to_challenger = {**registry.records[1], EXTRA: 7.0, "entity_id": routed(routing, Alias.CHALLENGER)}
    to_champion = {**registry.records[2], "entity_id": routed(routing, Alias.CHAMPION)}

    both = client.post("/v1/predict", json={"records": [to_champion, to_challenger]})
    extra_for_champion = client.post("/v1/predict", json={"records": [{**to_champion, EXTRA: 1.0}]})

    assert both.status_code == 200
    assert [(p["variant"], p["model_version"]) for p in both.json()["predictions"]] == [
        (Alias.CHAMPION, "1"),
        (Alias.CHALLENGER, wider_challenger),
    ]
    assert extra_for_champion.status_code == 422
    assert extra_for_champion.json()["detail"][0]["loc"] == ["body", "records", 0, EXTRA]


def test_in_shadow_mode_a_record_the_challenger_cannot_take_is_answered_by_the_champion(app_client, registry):
    client, _ = app_client
    shadow = {"weights": {"champion": 1, "challenger": 1}, "mode": "shadow"}
    assert client.put("/v1/routing", json=shadow, headers={"X-API-Key": "test-admin-key"}).status_code == 200

    response = client.post("/v1/predict", json={"records": [registry.records[3]]})

    assert response.status_code == 200
    assert response.json()["predictions"][0]["variant"] == Alias.CHAMPION


def test_a_routing_change_without_a_mode_keeps_the_live_mode(app_client):
    client, _ = app_client
    key = {"X-API-Key": "test-admin-key"}
    client.put("/v1/routing", json={"weights": {"champion": 1, "challenger": 1}, "mode": "shadow"}, headers=key)

    response = client.put("/v1/routing", json={"weights": {"champion": 3, "challenger": 1}}, headers=key)

    assert response.status_code == 200
    assert response.json()["mode"] == "shadow"
    assert response.json()["weights"] == {"champion": 3.0, "challenger": 1.0}


def test_a_challenger_version_that_cannot_load_leaves_the_champion_serving_and_says_why(make_settings, registry):
    client = registry.client()
    broken = client.create_model_version(NAME, source="file:///nonexistent/airloop-broken-model", run_id=None)
    before = client.get_model_version_by_alias(NAME, Alias.CHALLENGER).version
    client.set_registered_model_alias(NAME, Alias.CHALLENGER, broken.version)
    try:
        with TestClient(create_app(make_settings())) as app:
            ready = app.get("/ready")
            predict = app.post("/v1/predict", json={"records": [registry.records[6]]})
    finally:
        client.set_registered_model_alias(NAME, Alias.CHALLENGER, before)

    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert f"challenger v{broken.version} failed" in ready.json()["reason"]
    assert predict.status_code == 200 and predict.json()["predictions"][0]["variant"] == Alias.CHAMPION


def test_explain_on_variants_of_different_signatures_explains_each_record_by_its_own_version(
    app_client, registry, wider_challenger
):
    client, routing = app_client
    to_challenger = {**registry.records[1], EXTRA: 7.0, "entity_id": routed(routing, Alias.CHALLENGER)}
    to_champion = {**registry.records[2], "entity_id": routed(routing, Alias.CHAMPION)}

    response = client.post("/v1/predict", json={"records": [to_champion, to_challenger], "explain": True})

    assert response.status_code == 200, response.text
    champion, challenger = response.json()["predictions"]
    assert champion["explanation"]["method"] == "tree_shap"
    # Registered without its training rows' mean: it explains against the all-zero input and says it has no band.
    assert challenger["model_version"] == wider_challenger
    assert challenger["explanation"]["method"] == "linear" and challenger["explanation"]["band"] is None
    assert challenger["explanation"]["reference"].startswith("the all-zero input")
    assert EXTRA not in {f["factor"] for f in challenger["explanation"]["factors"]}  # a field the model never uses
