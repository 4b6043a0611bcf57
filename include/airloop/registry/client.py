"""Where MLflow lives: the one place that points MLflow at the configured tracking store and registry.

``connect`` sets the process-wide URIs (``models:/`` URIs and ``mlflow.start_run`` resolve against them) and returns a
client bound to the same store. It is light: no training imports.
"""

from __future__ import annotations

import os

import mlflow
from mlflow import MlflowClient

from airloop.settings import Settings


def connect(settings: Settings, *, create_experiment: bool = False) -> MlflowClient:
    """Point MLflow at the configured tracking store and registry and return a client bound to them.

    With ``create_experiment`` (training), the embedded store's folder and the configured experiment are created and
    made current; readers (serving, the registry CLI) never write to the tracking store.
    """
    if settings.tracking_uri.startswith("sqlite:///"):
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    if create_experiment:
        if mlflow.get_experiment_by_name(settings.mlflow.experiment) is None:
            mlflow.create_experiment(settings.mlflow.experiment, artifact_location=settings.artifact_location)
        mlflow.set_experiment(settings.mlflow.experiment)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def model_uri(name: str, version: str | None = None, alias: str | None = None) -> str:
    """The ``models:/`` URI of a version (or of an alias's current version)."""
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version and alias")
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


def fail_fast() -> None:
    """Ask an HTTP registry once, briefly, without MLflow's long retry loop (a poller comes back anyway).

    Only sets what the environment does not already set.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
