"""Promotion and rollback against a real MLflow registry (SQLite store in a temp dir)."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from airloop.errors import RegistryActionError
from airloop.operations import run_action
from airloop.registry import aliases as reg
from airloop.registry.client import connect
from airloop.registry.contract import Alias, Tag, VersionRecord, is_audit
from airloop.settings import Settings

NAME = "readmission"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return Settings(home=tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def three_versions(settings):
    connect(settings, create_experiment=True)
    x = np.random.default_rng(0).normal(size=(40, 2))
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    with mlflow.start_run():
        # Explicit requirements: skips MLflow's seconds-long requirement inference in this fixture.
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    for _ in range(3):
        mlflow.register_model(info.model_uri, NAME)


@pytest.fixture
def registry(settings, three_versions):
    client = connect(settings)
    client.set_registered_model_alias(NAME, reg.PREVIOUS, "1")
    client.set_registered_model_alias(NAME, reg.CHAMPION, "2")
    client.set_registered_model_alias(NAME, reg.CHALLENGER, "3")
    return client


def test_promote_moves_challenger_to_champion_and_keeps_previous(registry):
    after = reg.promote(registry, NAME, "test")

    assert after == {reg.CHAMPION: "3", reg.PREVIOUS: "2"}
    assert reg.aliases(registry, NAME) == after
    tags = registry.get_model_version(NAME, "3").tags
    assert any(is_audit(k, "promoted") for k in tags)


def test_promote_then_rollback_leaves_aliases_exactly_as_before(registry):
    before = reg.aliases(registry, NAME)

    reg.promote(registry, NAME, "test")
    reg.rollback(registry, NAME, "test")

    assert reg.aliases(registry, NAME) == before
    assert any(is_audit(k, "rolled_back") for k in registry.get_model_version(NAME, "3").tags)


def test_promote_without_challenger_is_refused(registry):
    registry.delete_registered_model_alias(NAME, reg.CHALLENGER)

    with pytest.raises(RegistryActionError, match="no 'challenger'"):
        reg.promote(registry, NAME, "test")


def test_show_lists_every_version_with_its_aliases(registry, settings):
    result = run_action(settings, "show", "test")

    assert [r["version"] for r in result["versions"]] == ["3", "2", "1"]
    assert result["versions"][0]["aliases"] == Alias.CHALLENGER
    assert Alias.PREVIOUS in result["table"]


def test_move_alias_points_it_and_writes_an_audit_entry_once(registry):
    old = reg.move_alias(registry, NAME, Alias.CHALLENGER, "1", "test", "because")
    again = reg.move_alias(registry, NAME, Alias.CHALLENGER, "1", "test", "because")

    assert (old, again) == ("3", "1")
    assert reg.alias_version(registry, NAME, Alias.CHALLENGER) == "1"
    audits = [k for k in registry.get_model_version(NAME, "1").tags if is_audit(k, f"alias_{Alias.CHALLENGER}_set")]
    assert len(audits) == 1


def test_move_alias_to_none_removes_it(registry):
    reg.move_alias(registry, NAME, Alias.PREVIOUS, None, "test")

    assert Alias.PREVIOUS not in reg.aliases(registry, NAME)


def test_version_record_round_trips_through_tags(registry):
    record = VersionRecord(dataset_version="abc", threshold=0.31, decision="challenger", candidate_score=0.7123456)
    for key, value in record.to_tags().items():
        registry.set_model_version_tag(NAME, "2", key, value)

    read = reg.version_record(registry, NAME, "2")

    assert read.dataset_version == "abc" and read.threshold == 0.31 and read.decision == "challenger"
    assert read.candidate_score == pytest.approx(0.712346) and read.champion_score is None


def test_an_old_version_without_airloop_tags_reads_with_defaults(registry):
    registry.delete_model_version_tag(NAME, "1", Tag.THRESHOLD) if Tag.THRESHOLD in registry.get_model_version(
        NAME, "1"
    ).tags else None

    assert reg.version_record(registry, NAME, "1").threshold == 0.5


def test_model_state_reads_aliases_and_model_tags_in_one_call(registry):
    aliases, tags = reg.model_state(registry, NAME)

    assert aliases == {Alias.PREVIOUS: "1", Alias.CHAMPION: "2", Alias.CHALLENGER: "3"}
    assert isinstance(tags, dict)
    assert reg.model_state(registry, "no-such-model") == ({}, {})


def test_route_records_the_live_experiment_that_show_reports(registry, settings):
    routed = run_action(settings, "route", "test", {"weights": {"champion": 50, "challenger": 50}, "mode": "shadow"})
    shown = run_action(settings, "show", "test")

    assert routed["routing"]["weights"] == {"champion": 50.0, "challenger": 50.0}
    assert shown["routing"] == routed["routing"] and shown["routing"]["mode"] == "shadow"
    assert "routing:" in shown["table"]


def test_route_with_an_unknown_variant_is_refused(registry, settings):
    with pytest.raises(RegistryActionError, match="unknown variants"):
        run_action(settings, "route", "test", {"weights": {"canary": 1}})
