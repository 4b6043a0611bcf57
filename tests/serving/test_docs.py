"""The API documentation as a new user meets it: /docs and /redoc work offline, and /openapi.json describes every
endpoint with typed bodies, the /v1/predict record from the champion's signature, its batch limit and an example."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from serving.main import create_app
from tests.serving.conftest import CHAMPION_VERSION, NAME, app_settings, free_port

MAX_RECORDS = 8
JSON_TYPES = {"double": "number", "float": "number", "long": "integer", "integer": "integer", "string": "string"}


@pytest.fixture(scope="module")
def client(registry, tmp_path_factory):
    settings = app_settings(tmp_path_factory.mktemp("docs"), registry, max_batch_records=MAX_RECORDS)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def document(client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def signature(registry) -> list[tuple[str, str]]:
    """The champion's input columns and MLflow types, as the registry has them."""
    from mlflow.models import Model

    uri = registry.client().get_model_version_download_uri(NAME, CHAMPION_VERSION)
    return [(spec.name, spec.type.name) for spec in Model.load(urlparse(uri).path).signature.inputs]


def schema_types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a property schema allows (``type``, ``anyOf`` alternatives, or an ``enum``'s values)."""
    if "anyOf" in schema:
        return set().union(*(schema_types(s) for s in schema["anyOf"]))
    if "enum" in schema:
        return {"null" if v is None else "string" if isinstance(v, str) else "number" for v in schema["enum"]}
    return {schema["type"]}


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_service_itself(client, page):
    response = client.get(page)

    assert response.status_code == 200
    assert "http://" not in response.text and "https://" not in response.text  # nothing from a CDN or font service
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000, asset


def test_swagger_ui_served_can_render_the_openapi_version_of_the_document(client, document):
    bundle = client.get("/docs-assets/swagger-ui-bundle.js").text

    assert document["openapi"].startswith("3.1")
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle)
    assert version is not None and int(version.group(1)) >= 5  # Swagger UI renders OpenAPI 3.1 from version 5 on


def test_predict_body_is_documented_from_the_champion_signature(document, signature):
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]
    request = resolve(document, body["content"]["application/json"]["schema"])
    records = request["properties"]["records"]
    record = resolve(document, records["items"])

    assert body["required"] and request["required"] == ["records"]
    assert (records["type"], records["minItems"], records["maxItems"]) == ("array", 1, MAX_RECORDS)
    assert record["additionalProperties"] is False
    assert sorted(record["required"]) == sorted(name for name, _ in signature)
    for name, kind in signature:
        assert JSON_TYPES[kind] in schema_types(record["properties"][name]), (name, kind)
    assert schema_types(record["properties"]["entity_id"]) == {"string", "integer", "null"}
    assert "entity_id" not in record["required"]


def test_null_is_accepted_exactly_where_the_documented_record_allows_it(client, document):
    example = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    record = document["components"]["schemas"]["Record"]

    for name, schema in record["properties"].items():
        response = client.post("/v1/predict", json={"records": [{**example["records"][0], name: None}]})

        if "null" in schema_types(schema):
            assert response.status_code == 200, (name, response.text)
        else:
            assert response.status_code == 422, name
            assert any(d["loc"][:4] == ["body", "records", 0, name] for d in response.json()["detail"]), name


def test_the_documented_example_is_scored(client, document):
    example = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]

    response = client.post("/v1/predict", json=example)

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(example["records"]) == 1


def test_every_endpoint_documents_a_typed_answer_and_its_errors(document):
    schemas = document["components"]["schemas"]
    operations = {(m.upper(), p): op for p, ops in document["paths"].items() for m, op in ops.items()}

    assert set(operations) == {
        ("POST", "/v1/predict"), ("POST", "/v1/feedback"), ("GET", "/v1/models"), ("PUT", "/v1/routing"),
        ("POST", "/v1/reload"), ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"), ("GET", "/v1/history"),
        ("POST", f"/v1/models/{NAME}/predict"), ("POST", f"/v1/models/{NAME}/feedback"), ("GET", f"/v1/models/{NAME}"),
        ("PUT", f"/v1/models/{NAME}/routing"), ("POST", f"/v1/models/{NAME}/reload"),
        ("GET", f"/v1/models/{NAME}/history"), ("PUT", "/v1/feedback/{request_id}"),
        ("PUT", f"/v1/models/{NAME}/feedback/{{request_id}}"),
    }  # fmt: skip
    for key, operation in operations.items():
        for status, response in operation["responses"].items():
            content = response["content"]
            if key == ("GET", "/metrics"):
                assert list(content) == ["text/plain"]
                continue
            reference = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert reference in schemas, (key, status)
            if status.startswith("4"):
                assert reference == "ErrorResponse", (key, status)
    for path in ["/v1", f"/v1/models/{NAME}"]:
        for key in [("POST", f"{path}/predict"), ("POST", f"{path}/feedback"), ("PUT", f"{path}/routing")]:
            assert {"400", "415", "422"} <= set(operations[key]["responses"]), key
    for key in [("PUT", "/v1/routing"), ("POST", "/v1/reload"), ("PUT", f"/v1/models/{NAME}/routing")]:
        assert operations[key]["security"] == [{"APIKeyHeader": []}]
        assert {"401", "403"} <= set(operations[key]["responses"]), key
    scheme = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    scheme["description"] = "a serving key with the endpoint's scope (serving.*_key)"
    assert document["components"]["securitySchemes"]["APIKeyHeader"] == scheme


def test_without_a_champion_the_predict_body_still_shows_the_batch_limit(registry, tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = app_settings(
        tmp_path, registry, {"tracking_uri": nowhere, "registry_uri": nowhere}, max_batch_records=MAX_RECORDS
    )

    with TestClient(create_app(settings)) as client:
        document = client.get("/openapi.json").json()

    request = document["components"]["schemas"]["PredictRequest"]
    assert request["properties"]["records"]["maxItems"] == MAX_RECORDS
    assert "Record" not in document["components"]["schemas"]
