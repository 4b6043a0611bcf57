"""Promotion and rollback against a real MLflow registry (SQLite store in a temp dir)."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from airloop.errors import RegistryActionError
from airloop.registry import aliases as reg
from airloop.registry.cli import run_action
from airloop.registry.tracking import configure_mlflow
from airloop.settings import Settings

NAME = "readmission"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return Settings(home=tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def three_versions(settings):
    configure_mlflow(settings)
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
    client = configure_mlflow(settings)
    client.set_registered_model_alias(NAME, reg.PREVIOUS, "1")
    client.set_registered_model_alias(NAME, reg.CHAMPION, "2")
    client.set_registered_model_alias(NAME, reg.CHALLENGER, "3")
    return client


def test_promote_moves_challenger_to_champion_and_keeps_previous(registry):
    after = reg.promote(registry, NAME, "test")

    assert after == {reg.CHAMPION: "3", reg.PREVIOUS: "2"}
    assert reg.aliases(registry, NAME) == after
    tags = registry.get_model_version(NAME, "3").tags
    assert any(k.startswith("airloop.audit.") and k.endswith(".promoted") for k in tags)


def test_promote_then_rollback_leaves_aliases_exactly_as_before(registry):
    before = reg.aliases(registry, NAME)

    reg.promote(registry, NAME, "test")
    reg.rollback(registry, NAME, "test")

    assert reg.aliases(registry, NAME) == before
    assert any(k.endswith(".rolled_back") for k in registry.get_model_version(NAME, "3").tags)


def test_promote_without_challenger_is_refused(registry):
    registry.delete_registered_model_alias(NAME, reg.CHALLENGER)

    with pytest.raises(RegistryActionError, match="no 'challenger'"):
        reg.promote(registry, NAME, "test")


def test_show_lists_every_version_with_its_aliases(registry, settings):
    result = run_action(settings, "show", "test")

    assert [r["version"] for r in result["versions"]] == ["3", "2", "1"]
    assert result["versions"][0]["aliases"] == "challenger"
    assert "previous-champion" in result["table"]
