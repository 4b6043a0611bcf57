"""`explain` on the predict routes: each answer's risk factors, computed by the version that scored the record."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airloop.experiments.routing import default_routing
from serving.main import create_app
from tests.serving.conftest import API_KEY, CHALLENGER_VERSION, CHAMPION_VERSION, NAME, app_settings
from tests.serving.test_app import expected_probabilities, ids_routed_to
from tests.specs import READMISSION

KEY = {"X-API-Key": API_KEY}
ANSWER_KEYS = {"request_id", "predicted_class", "probability", "variant", "model_version", "operating_point"}


@pytest.fixture(scope="module")
def settings(registry, tmp_path_factory):
    return app_settings(tmp_path_factory.mktemp("explain"), registry, max_batch_records=16, poll_interval_s=3600)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


def records_for(registry, settings, variant: str, count: int) -> list[dict[str, Any]]:
    """``count`` request records whose entity the live routing sends to ``variant``."""
    ids = ids_routed_to(default_routing(settings), variant, count)
    return [{**registry.records[10 + k], "entity_id": entity} for k, entity in enumerate(ids)]


def test_without_explain_the_answer_is_what_it_was(client, registry):
    response = client.post("/v1/predict", json={"records": [dict(registry.records[0])]}, headers=KEY)

    assert response.status_code == 200
    assert set(response.json()["predictions"][0]) == ANSWER_KEYS


@pytest.mark.parametrize(
    ("variant", "version", "method"),
    [("champion", CHAMPION_VERSION, "tree_shap"), ("challenger", CHALLENGER_VERSION, "linear")],
)
@pytest.mark.parametrize("path", ["/v1/predict", f"/v1/models/{NAME}/predict"])
def test_explained_answer_adds_up_to_the_score_of_the_version_that_served_it(
    client, registry, settings, variant, version, method, path
):
    records = records_for(registry, settings, variant, 3)

    response = client.post(path, json={"records": records, "explain": True}, headers=KEY)

    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    expected = expected_probabilities(registry, version, records)
    fields = set(READMISSION.data.input_columns)
    for answer, record, probability in zip(answers, records, expected, strict=True):
        assert (answer["variant"], answer["model_version"]) == (variant, version)
        assert answer["probability"] == pytest.approx(probability, abs=1e-12)
        explanation = answer["explanation"]
        assert (explanation["method"], explanation["link"]) == (method, "logit")
        total = explanation["base_value"] + sum(f["contribution"] for f in explanation["factors"])
        assert total + explanation["other_factors"] == pytest.approx(explanation["score"], abs=1e-9)
        assert 1 / (1 + math.exp(-explanation["score"])) == pytest.approx(answer["probability"], abs=1e-9)
        sizes = [abs(f["contribution"]) for f in explanation["factors"]]
        assert 0 < len(sizes) <= 5 and sizes == sorted(sizes, reverse=True)
        for factor in explanation["factors"]:
            assert set(factor["columns"]) <= fields
            if factor["columns"] == [factor["factor"]]:  # a field of the record: its value as sent
                assert factor["value"] == record[factor["factor"]]
            assert factor["label"].startswith(factor["factor"])
        if method == "linear":  # logistic regression gives a band around its probability
            band = explanation["band"]
            assert band["level"] == 0.95 and band["low"] <= answer["probability"] <= band["high"]
        else:
            assert explanation["band"] is None and "trees" in explanation["band_unavailable"]


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_explain_that_is_not_a_boolean_is_a_422_naming_it(client, registry, value):
    response = client.post("/v1/predict", json={"records": [dict(registry.records[0])], "explain": value}, headers=KEY)

    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["detail"]] == [["body", "explain"]]
