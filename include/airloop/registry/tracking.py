"""Where MLflow lives: tracking store, registry and experiment, from settings (light: no training imports)."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient

from airloop.settings import Settings


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured tracking store and registry, creating the embedded store's folder."""
    if settings.tracking_uri.startswith("sqlite:///"):
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    if mlflow.get_experiment_by_name(settings.mlflow.experiment) is None:
        mlflow.create_experiment(settings.mlflow.experiment, artifact_location=settings.artifact_location)
    mlflow.set_experiment(settings.mlflow.experiment)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
