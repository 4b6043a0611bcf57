"""The live experiment is kept on the registered model: every replica reads it, a restart keeps it."""

from __future__ import annotations

import numpy as np
import pytest

from airloop.experiments.live import LiveExperimentError, from_tags, get_live, running, set_live
from airloop.experiments.routing import RoutingConfig
from airloop.registry.contract import Tag

NAME = "readmission"
DEFAULT = RoutingConfig(experiment="from-file", weights={"champion": 90, "challenger": 10})


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from airloop.registry.client import connect
    from airloop.settings import Settings

    settings = Settings(home=tmp_path_factory.mktemp("live"))
    client = connect(settings, create_experiment=True)
    x = np.random.default_rng(0).normal(size=(20, 2))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, x[:, 0] > 0), name="m", pip_requirements=["x"])
    mlflow.register_model(info.model_uri, NAME)
    return client


def test_without_a_recorded_experiment_the_routing_file_is_the_default(client):
    assert get_live(client, NAME, DEFAULT) == DEFAULT


def test_a_set_experiment_is_read_back_by_another_client(client, tmp_path):
    from mlflow import MlflowClient

    shadow = RoutingConfig(experiment="exp-2", weights={"champion": 1, "challenger": 1}, mode="shadow")
    set_live(client, NAME, shadow, "test")
    other = MlflowClient(tracking_uri=client._tracking_client.tracking_uri, registry_uri=client._registry_uri)

    assert get_live(other, NAME, DEFAULT) == shadow
    assert "test" in other.get_registered_model(NAME).tags[Tag.ROUTING]


def test_a_corrupt_recorded_experiment_is_a_clear_error():
    with pytest.raises(LiveExperimentError, match="no valid experiment"):
        from_tags({Tag.ROUTING: '{"weights": {"champion": "lots"}}'}, DEFAULT)


@pytest.mark.parametrize("weights", [{"canary": 1}, {"champion": -1}, {}])
def test_an_invalid_experiment_is_refused_before_it_is_recorded(weights):
    with pytest.raises(ValueError):
        RoutingConfig(experiment="x", weights=weights)


@pytest.mark.parametrize(
    ("aliases", "routing", "expected"),
    [
        ({"champion": "1"}, {"champion": 100}, None),
        ({"champion": "1", "challenger": "2"}, {"champion": 100, "challenger": 0}, None),
        ({"champion": "1", "challenger": "2"}, {"champion": 90, "challenger": 10}, "e (ab) with challenger v2"),
        ({"champion": "1", "challenger": "2"}, {"champion": 1, "challenger": 1, "mode": "shadow"}, "e (shadow)"),
    ],
)
def test_an_experiment_runs_while_a_challenger_alias_gets_traffic_or_shadows(aliases, routing, expected):
    mode = routing.pop("mode", "ab")
    found = running(aliases, RoutingConfig(experiment="e", weights=routing, mode=mode))

    assert found is None if expected is None else found.startswith(f"experiment {expected}")
