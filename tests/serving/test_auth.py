"""Credentials with the defaults (no open scope): scoring, outcomes and the decision history each need a key with
their scope, the caller of /predict cannot send outcomes, each outcome records the key it came with, and the service
refuses to start with a request-id key anyone could know."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airloop.security import SecurityMisconfigured
from serving.main import create_app
from tests.serving.conftest import API_KEY, app_settings

pytestmark = pytest.mark.security

KEYS = {"predict_key": "k-predict-0123456789", "feedback_key": "k-feedback-0123456789", "history_key": "k-history-01"}
PREDICT, FEEDBACK, HISTORY = ({"X-API-Key": KEYS[k]} for k in ("predict_key", "feedback_key", "history_key"))
ADMIN = {"X-API-Key": API_KEY}


# Team keys (security.teams.<team>.*_key): readmission's spec names team care; growth's keys are another team's.
TEAM_KEYS = {"care": {"predict_key": "k-care-predict-0123"}, "growth": {"predict_key": "k-growth-predict-01"}}


@pytest.fixture(scope="module")
def settings(registry, tmp_path_factory):
    home, teams = tmp_path_factory.mktemp("auth"), {"teams": TEAM_KEYS}
    return app_settings(home, registry, security=teams, open_scopes=[], poll_interval_s=3600, **KEYS)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def body(registry) -> dict[str, Any]:
    return {"records": [dict(registry.records[0])]}


def test_scoring_needs_a_key_with_the_predict_scope(client, body):
    missing = client.post("/v1/predict", json=body)
    assert missing.status_code == 401
    assert missing.json()["detail"] == (
        "missing X-API-Key header: POST /v1/predict needs a key with the predict scope (serving.api_key or"
        " serving.predict_key or security.teams.care.api_key or security.teams.care.predict_key)"
    )
    assert client.post("/v1/predict", json=body, headers=FEEDBACK).status_code == 403
    assert client.post("/v1/predict", json=body, headers={"X-API-Key": "guess"}).status_code == 403
    assert client.post("/v1/predict", json=body, headers=PREDICT).status_code == 200
    assert client.post("/v1/models/readmission/predict", json=body, headers=ADMIN).status_code == 200


def test_a_teams_key_works_for_its_own_models_only(client, body):
    care, growth = ({"X-API-Key": TEAM_KEYS[team]["predict_key"]} for team in ("care", "growth"))
    assert client.post("/v1/models/readmission/predict", json=body, headers=care).status_code == 200
    other = client.post("/v1/models/readmission/predict", json=body, headers=growth)
    assert (other.status_code, other.json()["detail"]) == (403, "invalid API key")
    assert client.post("/v1/feedback", json={"request_id": "x" * 32, "outcome": 1}, headers=care).status_code == 403


def test_the_caller_of_predict_cannot_send_outcomes_and_each_outcome_records_its_key(settings, registry, body):
    from airloop import predlog

    with TestClient(create_app(settings)) as client:
        ids = [client.post("/v1/predict", json=body, headers=PREDICT).json()["predictions"][0]["request_id"]
               for _ in range(3)]  # fmt: skip
        forged = client.post("/v1/feedback", json={"request_id": ids[0], "outcome": 1}, headers=PREDICT)
        anonymous = client.post("/v1/feedback", json={"request_id": ids[0], "outcome": 1})
        assert (forged.status_code, anonymous.status_code) == (403, 401)
        assert "lacks the feedback scope" in forged.json()["detail"]
        assert (
            client.post("/v1/feedback", json={"request_id": ids[1], "outcome": 1}, headers=FEEDBACK).status_code == 202
        )
        assert client.post("/v1/feedback", json={"request_id": ids[2], "outcome": 0}, headers=ADMIN).status_code == 202
    # The app flushed its logs as it stopped.
    rows = predlog.load_feedback(settings.layout.feedback(), datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    mine = rows.set_index("request_id").loc[ids[1:], "source"].to_dict()
    assert mine == {ids[1]: "feedback_key", ids[2]: "api_key"}
    assert ids[0] not in set(rows["request_id"])


def test_the_decision_history_needs_the_history_scope(client):
    assert client.get("/v1/history").status_code == 401
    assert client.get("/v1/history", headers=PREDICT).status_code == 403
    assert client.get("/v1/models/readmission/history", headers=HISTORY).status_code == 200


def test_an_open_scope_lets_requests_without_a_key_in_for_that_scope_only(registry, tmp_path, body):
    settings = app_settings(tmp_path, registry, open_scopes=["predict"], poll_interval_s=3600, **KEYS)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/predict", json=body)
        assert answer.status_code == 200
        request_id = answer.json()["predictions"][0]["request_id"]
        assert client.post("/v1/feedback", json={"request_id": request_id, "outcome": 1}).status_code == 401
        assert client.get("/v1/history").status_code == 401


@pytest.mark.parametrize("key", [None, "short"])
def test_the_service_refuses_to_start_with_a_request_id_key_anyone_could_know(registry, tmp_path, key):
    settings = app_settings(tmp_path, registry, request_id_key=key)
    with pytest.raises(SecurityMisconfigured, match=r"serving\.request_id_key is (not set|shorter than 16 characters)"):
        create_app(settings)


def test_an_outcome_changes_only_through_the_audited_correction_with_the_admin_key(settings, body):
    from airloop import predlog
    from airloop.ledger import ledger

    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/predict", json=body, headers=PREDICT).json()["predictions"][0]
        request_id = answer["request_id"]
        assert (
            client.post("/v1/feedback", json={"request_id": request_id, "outcome": 1}, headers=FEEDBACK).status_code
            == 202
        )
        again = client.post("/v1/feedback", json={"request_id": request_id, "outcome": 0}, headers=FEEDBACK)
        correction = {"outcome": 0, "reason": "the readmission was coded against the wrong encounter"}
        by_feed = client.put(f"/v1/feedback/{request_id}", json=correction, headers=FEEDBACK)
        unknown = client.put(f"/v1/feedback/{'0' * 40}", json=correction, headers=ADMIN)
        corrected = client.put(f"/v1/models/readmission/feedback/{request_id}", json=correction, headers=ADMIN)
    assert again.status_code == 409 and by_feed.status_code == 403 and unknown.status_code == 404
    assert corrected.status_code == 200 and corrected.json()["corrected"] is True

    row = ledger(settings).get(next(r.key for r in ledger(settings).rows(kind="feedback_correction")))
    assert row.id == corrected.json()["history_id"] and row.decided_by == "api:api_key"
    assert row.payload == {"request_id": request_id, **correction}
    window = (datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    predictions = predlog.load_predictions(settings.layout.predictions(), *window)
    joined = predlog.join_outcomes(predictions, predlog.load_feedback(settings.layout.feedback(), *window))
    mine = joined[joined["request_id"] == request_id]
    assert set(mine["outcome"]) == {0} and set(mine["outcome_source"]) == {f"correction:{row.id}"}
