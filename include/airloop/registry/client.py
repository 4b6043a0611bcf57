"""Where MLflow lives: the one place that points MLflow at the configured tracking store and registry.

``connect`` sets the process-wide URIs (``models:/`` URIs and ``mlflow.start_run`` resolve against them) and returns a
client bound to the same store. It is light: no training imports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow import MlflowClient

from airloop.settings import Settings

# The MLflow UI (3.17) opens an experiment tagged with this kind on its runs, metrics and charts; an untagged one may
# open on the GenAI view (traces, an assistant panel). Every experiment airloop creates is classic model development.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_ML = "custom_model_development"
# The 3.17 UI also has a global GenAI / Model training switch (GenAI by default, kept in the browser) that takes
# precedence over the tag; a link carrying this parameter opens the model-training view whatever the browser holds.
UI_WORKFLOW = "workflowType=machine_learning"

MODEL_DESCRIPTION = """{what}

Input record: one record as its source has it (the spec's raw columns minus the target `{target}`; see the prediction
service's /docs for the exact schema); the registered Pipeline carries its own feature transform. Output: the
probability of the positive class ({positive}); the class uses the threshold in the version's `airloop.threshold` tag.

Aliases: `champion` serves, `challenger` is in a live A/B or shadow experiment, `previous-champion` is what a rollback
restores. Each version's `airloop.*` tags give its dataset version, training run, gate decision and the decision
history row (`airloop.history_id`). The whole decision history (drift verdicts, retrains, experiments, evaluations,
promotions, rejections, rollbacks): `python -m airloop history --model {name}`, or GET /v1/models/{name}/history on the
prediction service. Spec: models/{name}.yaml."""


def model_description(spec: Any) -> str:
    """The registered model's description, from its spec."""
    target = spec.data.target
    positive = ", ".join(f"`{v}`" for v in target.positive)
    what = spec.description or spec.name
    return MODEL_DESCRIPTION.format(what=what, target=target.column, positive=positive, name=spec.name)


def ui_link(base_url: str, experiment_id: str, run_id: str | None = None) -> str:
    """A link into the MLflow UI that opens the experiment (or one run) on its runs, metrics and artifacts."""
    path = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base_url.rstrip('/')}/{path}?{UI_WORKFLOW}"


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created when missing (a concurrent creator wins quietly), tagged classic ML."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            client.create_experiment(name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: CLASSIC_ML})
        except MlflowException:
            if client.get_experiment_by_name(name) is None:
                raise
        experiment = client.get_experiment_by_name(name)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != CLASSIC_ML:  # an experiment made before the tag existed
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, CLASSIC_ML)
    return experiment.experiment_id


def describe_model(client: MlflowClient, name: str, spec: Any) -> None:
    """Give the registered model its description (what it is, its input, where the decision history is), once."""
    description = model_description(spec)
    if client.get_registered_model(name).description != description:
        client.update_registered_model(name, description=description)


def connect(settings: Settings, *, create_experiment: bool = False) -> MlflowClient:
    """Point MLflow at the configured tracking store and registry and return a client bound to them.

    With ``create_experiment`` (training), the embedded store's folder and the configured experiment are created and
    made current; readers (serving, the registry CLI) never write to the tracking store.
    """
    if settings.tracking_uri.startswith("sqlite:///"):
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    if create_experiment:
        ensure_experiment(client, settings.mlflow.experiment, settings.artifact_location)
        mlflow.set_experiment(settings.mlflow.experiment)
    return client


def find_finished_run(client: MlflowClient, experiment: str, tag: str, value: str) -> str | None:
    """The id of a FINISHED run of ``experiment`` whose tag ``tag`` is ``value`` (what a retried task logged before),
    or None. A run killed before it finished does not count."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    wanted = f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'"
    runs = client.search_runs([found.experiment_id], filter_string=wanted, max_results=1)
    return runs[0].info.run_id if runs else None


@contextmanager
def finished_or_discarded(client: MlflowClient, run_id: str) -> Iterator[None]:
    """Log to ``run_id`` in the body: on a clean exit the run is FINISHED; on any error it is marked FAILED and deleted
    (half-logged runs do not linger) and the error is raised."""
    from mlflow.entities import RunStatus
    from mlflow.exceptions import MlflowException

    try:
        yield
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    except BaseException:
        try:
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            client.delete_run(run_id)
        except MlflowException:
            pass  # the original error is the one worth raising
        raise


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
