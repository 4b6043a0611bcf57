"""An experiment's life against a real MLflow registry and a real ledger: start, promote, reject, rollback move
aliases and routing together, each is a history row, and ``state_at`` answers what served at any time."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from airloop import history
from airloop.errors import RegistryActionError
from airloop.experiments import lifecycle
from airloop.experiments.live import get_live
from airloop.experiments.routing import RoutingConfig, default_routing
from airloop.ledger import Kind
from airloop.registry import aliases as reg
from airloop.registry.client import connect
from airloop.registry.contract import Alias, Outcome, Tag
from airloop.settings import Settings

NAME = "readmission"
CHAMPION, CHALLENGER = Alias.CHAMPION.value, Alias.CHALLENGER.value


@pytest.fixture
def settings(tmp_path):
    settings = Settings(home=tmp_path / "home")
    connect(settings, create_experiment=True)
    x = np.random.default_rng(0).normal(size=(40, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    for _ in range(3):
        mlflow.register_model(info.model_uri, NAME)
    client = connect(settings)
    client.set_registered_model_alias(NAME, Alias.CHAMPION, "1")
    client.set_registered_model_alias(NAME, Alias.CHALLENGER, "2")
    return settings


def live(settings) -> RoutingConfig:
    return get_live(connect(settings), NAME, default_routing(settings))


def tick() -> datetime:
    time.sleep(0.01)  # distinct decided_at stamps
    moment = datetime.now(UTC)
    time.sleep(0.01)
    return moment


def test_start_promote_rollback_move_aliases_and_routing_together_and_history_answers_at_any_time(settings):
    started = lifecycle.start(settings, "2", "test", {CHAMPION: 90, CHALLENGER: 10}, "ab", {"verdict_id": 7})
    during = tick()

    assert live(settings).weights == {CHAMPION: 90.0, CHALLENGER: 10.0}
    assert started["experiment"]["experiment"] == "readmission-v1-vs-v2"

    lifecycle.promote(settings, "test", {"evidence": "lower bound 0.02 >= 0.0"})
    after = tick()

    assert reg.aliases(connect(settings), NAME) == {Alias.CHAMPION: "2", Alias.PREVIOUS: "1"}
    assert live(settings).weights == {CHAMPION: 100.0, CHALLENGER: 0.0}
    assert live(settings).experiment == "readmission-v2"

    lifecycle.rollback(settings, "test")

    assert reg.aliases(connect(settings), NAME) == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"}
    assert live(settings).to_dict() == started["experiment"]  # the A/B routing as it was before the promotion
    then = history.state_at(settings, during)
    assert then.aliases == {CHAMPION: "1", CHALLENGER: "2"} and then.routing["weights"][CHALLENGER] == 10.0
    assert then.decision_kind == Kind.EXPERIMENT_STARTED
    promoted = history.state_at(settings, after)
    assert promoted.aliases == {CHAMPION: "2", "previous-champion": "1"}
    assert promoted.decision_kind == Kind.PROMOTION
    assert history.state_at(settings, datetime(2000, 1, 1, tzinfo=UTC)) is None
    kinds = [r.kind for r in history.rows(settings)]
    assert kinds == [Kind.ROLLBACK, Kind.PROMOTION, Kind.EXPERIMENT_STARTED]
    promotion = history.rows(settings, kind=Kind.PROMOTION)[0]
    assert promotion.payload["evidence"] == "lower bound 0.02 >= 0.0"
    assert connect(settings).get_model_version(NAME, "2").tags[Tag.HISTORY_ID]
    assert "promotion" in history.format_table(history.rows(settings))


def test_reject_routes_back_to_the_champion_and_tags_the_challenger(settings):
    lifecycle.start(settings, "2", "test", {CHAMPION: 50, CHALLENGER: 50}, "shadow")

    lifecycle.reject(settings, "test", "upper bound -0.01 < 0", key="reject:x")
    again = lifecycle.reject(settings, "test", "upper bound -0.01 < 0", key="reject:x")  # a retried task

    client = connect(settings)
    assert reg.aliases(client, NAME) == {Alias.CHAMPION: "1"}
    assert live(settings).weights == {CHAMPION: 100.0, CHALLENGER: 0.0}
    tags = client.get_model_version(NAME, "2").tags
    assert tags[Tag.DECISION] == Outcome.REJECTED.value and "upper bound" in tags[Tag.DECISION_REASON]
    assert again["rejected_version"] == "2"
    assert [r.kind for r in history.rows(settings)] == [Kind.REJECTION, Kind.EXPERIMENT_STARTED]


def test_a_promotion_interrupted_after_the_alias_move_is_completed_by_its_retry(settings):
    lifecycle.start(settings, "2", "test", {CHAMPION: 90, CHALLENGER: 10}, "ab")
    client = connect(settings)
    reg.promote(client, NAME, "test")  # the first try moved the aliases, then MLflow went away

    done = lifecycle.promote(settings, "test", key="promote:exp-1")
    twice = lifecycle.promote(settings, "test", key="promote:exp-1")

    assert done["promoted"] == "2" and twice["history_id"] == done["history_id"]
    assert live(settings).weights == {CHAMPION: 100.0, CHALLENGER: 0.0} and live(settings).experiment.endswith("v2")
    assert len(history.rows(settings, kind=Kind.PROMOTION)) == 1


def test_promote_without_a_challenger_is_refused_and_changes_nothing(settings):
    connect(settings).delete_registered_model_alias(NAME, Alias.CHALLENGER)
    before = live(settings)

    with pytest.raises(RegistryActionError, match="no 'challenger'"):
        lifecycle.promote(settings, "test")

    assert live(settings) == before and history.rows(settings) == []


def test_cli_history_prints_the_table_and_the_state_at_a_time(settings, monkeypatch, capsys):
    from airloop.__main__ import main
    from airloop.settings import get_settings

    lifecycle.start(settings, "2", "test", {CHAMPION: 80, CHALLENGER: 20}, "ab")
    moment = tick()
    monkeypatch.setenv("AIRLOOP_HOME", str(settings.home))
    get_settings.cache_clear()
    try:
        assert main(["history", "--at", moment.isoformat()]) == 0
    finally:
        get_settings.cache_clear()

    out = capsys.readouterr().out
    assert "challenger=v2, champion=v1" in out and "experiment_started" in out


def test_mlflow_failing_between_routing_and_aliases_leaves_them_consistent_and_a_rerun_completes(settings, monkeypatch):
    """The registry stops answering after the routing moved: the champion alias still matches the routing (100% to
    the old champion, the challenger gets nothing); the retried step finishes the promotion."""
    from mlflow.exceptions import MlflowException

    lifecycle.start(settings, "2", "test", {CHAMPION: 90, CHALLENGER: 10}, "ab")
    real = reg.promote

    def unreachable(*args, **kwargs):
        raise MlflowException("API request to http://mlflow:5000 failed: connection refused")

    monkeypatch.setattr(reg, "promote", unreachable)
    with pytest.raises(MlflowException, match="connection refused"):
        lifecycle.promote(settings, "test", key="promotion:eval-9")

    assert reg.aliases(connect(settings), NAME) == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"}
    assert live(settings).weights == {CHAMPION: 100.0, CHALLENGER: 0.0}  # all traffic on the champion alias' version
    assert history.rows(settings, kind=Kind.PROMOTION) == []

    monkeypatch.setattr(reg, "promote", real)
    done = lifecycle.promote(settings, "test", key="promotion:eval-9")

    assert done["promoted"] == "2"
    assert reg.aliases(connect(settings), NAME) == {Alias.CHAMPION: "2", Alias.PREVIOUS: "1"}
    assert live(settings).experiment == "readmission-v2"
    # The routing before the experiment's end is what a rollback restores, not the interim champion-only one.
    lifecycle.rollback(settings, "test")
    assert live(settings).weights == {CHAMPION: 90.0, CHALLENGER: 10.0}


@pytest.mark.security
def test_a_replayed_promotion_or_rejection_refuses_once_the_challenger_changed(settings):
    """Issue 20: clearing the promote task of an old evaluation must not promote whatever is challenger today."""
    lifecycle.start(settings, "2", "test", {CHAMPION: 90, CHALLENGER: 10}, "ab")
    decided = {CHAMPION: "1", CHALLENGER: "2"}
    connect(settings).set_registered_model_alias(NAME, Alias.CHALLENGER, "3")  # a newer challenger since
    before, rows = reg.aliases(connect(settings), NAME), history.rows(settings)

    with pytest.raises(RegistryActionError, match=r"decided for readmission challenger v2.*challenger is now v3"):
        lifecycle.promote(settings, "test", key="promotion:eval-old", expected=decided)
    with pytest.raises(RegistryActionError, match=r"cannot reject: it was decided for readmission challenger v2"):
        lifecycle.reject(settings, "test", "worse", key="rejection:eval-old", expected=decided)

    assert reg.aliases(connect(settings), NAME) == before and history.rows(settings) == rows
    done = lifecycle.promote(settings, "test", key="promotion:eval-new", expected={CHAMPION: "1", CHALLENGER: "3"})
    assert done["promoted"] == "3"


@pytest.mark.security
def test_a_decision_carried_out_is_not_carried_out_again_once_a_rollback_restored_its_versions(settings):
    """Issue 20: a rollback restores the very versions an old promotion was decided for (champion v1, challenger v2);
    its task cleared and run again must not promote v2 again, unrecorded (its key already has a row)."""
    lifecycle.start(settings, "2", "test", {CHAMPION: 90, CHALLENGER: 10}, "ab")
    decided = {CHAMPION: "1", CHALLENGER: "2"}
    done = lifecycle.promote(settings, "approved by engineer", key="promotion:eval-1", expected=decided)
    lifecycle.rollback(settings, "engineer")
    client = connect(settings)
    before, rows, routing = reg.aliases(client, NAME), history.rows(settings), live(settings)
    assert before == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"} and routing.weights == {
        CHAMPION: 90.0,
        CHALLENGER: 10.0,
    }

    carried_out = (
        r"decided for readmission champion v1, challenger v2 and carried out already "
        rf"\(history #{done['history_id']}, approved by engineer\)"
    )
    with pytest.raises(RegistryActionError, match=carried_out):
        lifecycle.promote(settings, "approved by engineer", key="promotion:eval-1", expected=decided)
    lifecycle.reject(settings, "test", "worse", key="rejection:eval-2", expected=decided)
    client.set_registered_model_alias(NAME, Alias.CHALLENGER, "2")  # the same version made challenger again
    with pytest.raises(RegistryActionError, match=r"cannot reject: .* carried out already"):
        lifecycle.reject(settings, "test", "worse", key="rejection:eval-2", expected=decided)

    assert reg.aliases(client, NAME) == before and live(settings).weights == {CHAMPION: 100.0, CHALLENGER: 0.0}
    assert [r.kind for r in history.rows(settings)][:2] == [Kind.REJECTION, Kind.ROLLBACK]
    assert len(history.rows(settings, kind=Kind.PROMOTION)) == 1 and len(history.rows(settings)) == len(rows) + 1


def test_the_retry_of_an_interrupted_promotion_still_finishes_it_with_its_decided_versions(settings):
    lifecycle.start(settings, "2", "test", {CHAMPION: 90, CHALLENGER: 10}, "ab")
    reg.promote(connect(settings), NAME, "test")  # the first try moved the aliases, then stopped

    done = lifecycle.promote(settings, "test", key="promotion:eval-1", expected={CHAMPION: "1", CHALLENGER: "2"})

    assert done["promoted"] == "2" and len(history.rows(settings, kind=Kind.PROMOTION)) == 1


@pytest.mark.security
def test_a_promotion_acts_on_the_recorded_decision_and_on_airflows_record_of_an_approvers_answer(settings):
    from airloop import operations
    from airloop.ledger import ledger
    from airloop.security import NotAuthorized

    lifecycle.start(settings, "2", "test", {CHAMPION: 90, CHALLENGER: 10}, "ab")
    book = ledger(settings)
    decided = {"action": "promote", "reason": "better", "champion_version": "1", "challenger_version": "2"}
    book.record(Kind.EVALUATION, "evaluation:exp:1", NAME, decided, "airflow:ab/1")
    book.record(Kind.EVALUATION, "evaluation:exp:0", NAME, {**decided, "action": "continue"}, "airflow:ab/0")
    strict = settings.model_copy(update={"loop": settings.loop.model_copy(update={"require_approval": True})})
    answer = {"chosen_options": ["Approve"], "responded_by_user": {"id": "engineer", "name": "engineer"}}

    with pytest.raises(RegistryActionError, match="has no evaluation 'evaluation:exp:forged'"):
        operations.promote_decided(settings, "evaluation:exp:forged", "test")
    with pytest.raises(RegistryActionError, match="decided 'continue', not promote"):
        operations.promote_decided(settings, "evaluation:exp:0", "test")
    with pytest.raises(NotAuthorized, match="needs an approval"):
        operations.promote_decided(strict, "evaluation:exp:1", "test")  # e.g. `promote` forced without `approve`
    scientist = {**answer, "responded_by_user": {"id": "scientist", "name": "scientist"}}
    with pytest.raises(NotAuthorized):
        operations.promote_decided(strict, "evaluation:exp:1", "test", scientist)
    assert reg.aliases(connect(settings), NAME) == {Alias.CHAMPION: "1", Alias.CHALLENGER: "2"}

    done = operations.promote_decided(strict, "evaluation:exp:1", "test", answer)

    (row,) = history.rows(settings, kind=Kind.PROMOTION)
    assert done["promoted"] == "2" and row.decided_by == "approved by engineer"
    assert row.key == "promotion:evaluation:exp:1" and row.payload["approval"]["chosen_options"] == ["Approve"]
