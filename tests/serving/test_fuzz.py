"""No input gets a 5xx: schemathesis against the service's own OpenAPI document, then Hypothesis for what a schema
cannot describe (raw bytes, deep nesting, odd header bytes). Bounded to run in well under a minute on 2 cores."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.config._checks import NegativeDataRejectionConfig

from serving.main import create_app
from tests.serving.conftest import API_KEY, NAME, app_settings

pytestmark = pytest.mark.fuzz

MAX_RECORDS = 4
MAX_BODY = 1024 * 1024  # far above any generated body: a schema-valid request must be answered, not refused for size
KEY = {"X-API-Key": API_KEY}
JSON_ENDPOINTS = [
    ("POST", "/v1/predict"),
    ("POST", "/v1/feedback"),
    ("PUT", "/v1/routing"),
    ("POST", f"/v1/models/{NAME}/predict"),
    ("POST", f"/v1/models/{NAME}/feedback"),
    ("PUT", f"/v1/models/{NAME}/routing"),
]
EXAMPLES = 100  # per operation and generation mode (positive, negative): some 700 requests with the checks' own
# What a real HTTP server lets through in a header value: any octet but CR, LF and NUL, no surrounding whitespace.
HEADER_BYTES = st.binary(max_size=40).filter(lambda v: not {0, 10, 13} & set(v) and v == v.strip())


@pytest.fixture(scope="module")
def fuzz_settings(registry, tmp_path_factory):
    return app_settings(
        tmp_path_factory.mktemp("fuzz"),
        registry,
        max_batch_records=MAX_RECORDS,
        max_body_bytes=MAX_BODY,
        poll_interval_s=3600,
        open_scopes=[],  # the product's default: every call needs its key (schemathesis sends the admin key)
    )


@pytest.fixture(scope="module")
def client(fuzz_settings):
    with TestClient(create_app(fuzz_settings)) as client:
        yield client


@pytest.fixture(scope="module", autouse=True)
def live_experiment_restored(client):
    """PUT /v1/routing writes the live experiment to the session's registry, which later test modules read too."""
    routing = client.get("/v1/models").json()["routing"]
    yield
    assert client.put("/v1/routing", json=routing, headers=KEY).status_code == 200


def send_raw(client: TestClient, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes):
    """The request with its header bytes exactly as given (TestClient re-encodes non-UTF-8 header values)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.request(method, path, headers=headers, content=body)

    return client.portal.call(send)


def assert_client_error(response: Any) -> None:
    """A 4xx with a JSON ``detail``: never a 5xx, never an HTML error page."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "detail" in response.json()


def call_generated(
    operation: schemathesis.APIOperation, mode: GenerationMode, excluded: list[Any], examples: int = EXAMPLES
) -> None:
    """Hypothesis-generated requests to one operation, each answer checked by schemathesis (no 5xx, documented status,
    content type, headers and body schema; auth enforced)."""

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(excluded_checks=excluded)

    call()


def test_generated_requests_get_no_5xx_and_documented_responses(fuzz_settings):
    # schemathesis serves the app in process, lifespan included, on its own event loop: an app of its own.
    app = create_app(fuzz_settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.update(headers=KEY)  # its ignored_auth check still tries each admin call without the key
    # Too many records is refused with 413 Content Too Large (documented), a rejection schemathesis does not list.
    rejection = schema.config.checks.negative_data_rejection
    schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
        expected_statuses=[*rejection.expected_statuses, "413"]
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {f"{method} {path}" for method, path in JSON_ENDPOINTS}
    for operation in operations:
        # A positive sum of weights cannot be said in JSON Schema: all-zero weights are schema-valid, and refused.
        routing = operation.label.startswith("PUT ") and operation.label.endswith("/routing")
        excluded = [checks.positive_data_acceptance] if routing else []
        negatable = len(operation.body) > 0 or len(operation.query) > 0
        # A named route runs the handler of its unnamed twin against its own documented schema: fewer examples.
        examples = EXAMPLES // 4 if operation.path.startswith("/v1/models/") else EXAMPLES
        for mode in GenerationMode if negatable else [GenerationMode.POSITIVE]:
            call_generated(operation, mode, excluded, examples)
    # Every accepted prediction and outcome fits the logs the drift and A/B DAGs read: none was dropped on the way.
    for model in app.state.airloop.models.values():
        model.predictions.flush()
        model.feedback.flush()
        assert (model.predictions.refused, model.feedback.refused) == (0, 0)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    endpoint=st.sampled_from(JSON_ENDPOINTS),
    body=st.binary(max_size=512)
    | st.text(max_size=256).map(str.encode)
    | JSON_VALUES.map(lambda value: json.dumps(value).encode()),
)
def test_any_bytes_sent_as_json_get_an_answer_or_a_4xx(client, endpoint, body):
    method, path = endpoint

    response = client.request(method, path, content=body, headers={**KEY, "content-type": "application/json"})

    if response.status_code >= 300:
        assert_client_error(response)


# Values a record's field can hold within its type: edges of the counts, unseen codes and levels, missing markers.
FIELD_VALUES = (
    st.integers(min_value=-(2**31), max_value=2**31 - 1)
    | st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e15, max_value=1e15)
    | st.text(max_size=12)
    | st.sampled_from(["?", "", "n/a", "V57", "E999", "250.83", "428", "Up", "None", "[90-100)", "[70-80)"])
    | st.none()
)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), count=st.integers(min_value=1, max_value=MAX_RECORDS))
def test_explain_on_any_records_gets_explanations_or_a_4xx_never_a_5xx(client, registry, data, count):
    records = []
    for k in range(count):
        record = dict(registry.records[data.draw(st.integers(0, len(registry.records) - 1), label=f"row{k}")])
        fields = data.draw(st.lists(st.sampled_from(sorted(record)), max_size=3, unique=True), label=f"fields{k}")
        record.update({field: data.draw(FIELD_VALUES, label=field) for field in fields})
        record["entity_id"] = data.draw(st.none() | st.text(max_size=8) | st.integers(0, 10**6), label="entity")
        records.append(record)
    path = data.draw(st.sampled_from(["/v1/predict", f"/v1/models/{NAME}/predict"]), label="path")

    response = client.post(path, json={"records": records, "explain": True}, headers=KEY)

    if response.status_code != 200:
        assert_client_error(response)
        return
    for answer in response.json()["predictions"]:
        explanation = answer["explanation"]
        total = explanation["base_value"] + explanation["other_factors"]
        total += sum(f["contribution"] for f in explanation["factors"])
        assert total == pytest.approx(explanation["score"], abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    endpoint=st.sampled_from(JSON_ENDPOINTS),
    depth=st.integers(min_value=1, max_value=100_000),
    brackets=st.sampled_from([("[", "]"), ('{"a": ', "}")]),
    template=st.sampled_from(
        ["%s", '{"records": [{"age": %s}]}', '{"request_id": "r", "outcome": %s}', '{"weights": {"champion": %s}}']
    ),
)
def test_deeply_nested_json_gets_a_4xx(client, fuzz_settings, endpoint, depth, brackets, template):
    opener, closer = brackets
    body = template % (opener * depth + "1" + closer * depth)
    method, path = endpoint

    response = client.request(method, path, content=body.encode(), headers={**KEY, "content-type": "application/json"})

    assert_client_error(response)
    limit = MAX_BODY if path.endswith("/predict") else fuzz_settings.serving.max_request_bytes
    if len(body) > limit:  # refused before it is read, however it is nested
        assert response.status_code == 413
    elif depth > 5000:  # deeper than any JSON parser here follows: malformed, not merely invalid
        assert response.status_code == 400


@settings(max_examples=200, deadline=None)
@given(key=HEADER_BYTES)
def test_any_api_key_bytes_get_401_or_403_unless_they_are_the_key(client, key):
    response = send_raw(client, "POST", "/v1/reload", [(b"x-api-key", key)], b"")

    if key == API_KEY.encode():
        assert response.status_code == 200
    else:
        assert response.status_code == (401 if not key else 403), response.text
        assert response.json()["detail"]


@settings(max_examples=200, deadline=None)
@given(
    endpoint=st.sampled_from(JSON_ENDPOINTS),
    headers=st.fixed_dictionaries(
        {},
        optional={
            b"content-type": HEADER_BYTES,
            b"content-encoding": HEADER_BYTES,
            b"accept": HEADER_BYTES,
            # Digits of every kind latin-1 has ("²" is a digit to str.isdigit), and far too many of them.
            b"content-length": HEADER_BYTES
            | st.text("0123456789¹²³", min_size=1, max_size=30).map(lambda s: s.encode("latin-1"))
            | st.integers(min_value=1, max_value=6000).map(lambda n: b"9" * n),
        },
    ),
)
def test_odd_header_bytes_get_no_5xx(client, endpoint, headers):
    method, path = endpoint

    response = send_raw(client, method, path, [(b"x-api-key", API_KEY.encode()), *headers.items()], b'{"x": 1}')

    assert_client_error(response)


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/json"]
)
def test_a_body_declared_as_another_content_type_gets_415(client, method, path, content_type):
    response = client.request(method, path, content=b"{}", headers={**KEY, "content-type": content_type})

    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"]
)
def test_json_content_types_and_none_are_read_as_json(client, method, path, content_type):
    headers = {**KEY, "content-type": content_type} if content_type else KEY

    response = client.request(method, path, content=b'{"unknown": 1}', headers=headers)

    assert response.status_code == 422
    assert ["body", "unknown"] in [d["loc"] for d in response.json()["detail"]]
