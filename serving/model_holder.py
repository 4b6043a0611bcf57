"""The model holder: loads the served aliases and the live experiment from the registry, swaps them in without a gap.

One registry call per poll reads both the aliases and the registered model's tags (where the live experiment is kept,
see ``airloop.experiments.live``); a changed version is loaded fully before a single reference swap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from airloop.experiments.live import LiveExperimentError, from_tags, update_live
from airloop.experiments.routing import RoutingConfig
from airloop.registry.aliases import model_state, version_record
from airloop.registry.client import model_uri
from airloop.registry.contract import SERVED_ALIASES, Alias
from serving.schemas import record_model

log = logging.getLogger(__name__)


class RegistryUnavailable(RuntimeError):
    """The registry could not be asked; the models already loaded keep serving."""


@dataclass
class LoadedModel:
    """One registered version, loaded and ready to predict, with the request model of its own signature."""

    alias: str
    version: str
    run_id: str | None
    threshold: float
    columns: list[tuple[str, str]]
    domains: dict[str, list[str]]
    pipeline: Any
    compiled: Any | None
    record: type[BaseModel]
    # How the threshold was chosen ({"kind": "f1" | "recall" | "alert_rate", "target", "threshold"}): said with each
    # answer, so a client knows what predicted_class means.
    operating_point: dict[str, Any] = field(default_factory=dict)
    explainer: Any = field(default=None, repr=False)  # airloop.explanations.Explainer, or why there is none
    loaded_at: float = field(default_factory=time.time)

    @property
    def input_key(self) -> tuple:
        """Two versions with the same key accept exactly the same records."""
        return tuple(self.columns), tuple((k, tuple(v)) for k, v in sorted(self.domains.items()))

    def predict_proba(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Positive-class probabilities; the compiled fast path when the pipeline's shape allows it."""
        if self.compiled is not None:
            return self.compiled.predict_proba(records)
        import pandas as pd

        frame = pd.DataFrame.from_records(records, columns=[c for c, _ in self.columns])
        return self.pipeline.predict_proba(frame)[:, 1]

    def explain(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per record what its answer gains: ``{"explanation": ...}`` by this version, or
        ``{"explanation_unavailable": why}`` when this version cannot be explained."""
        if not hasattr(self.explainer, "explain_records"):
            return [{"explanation_unavailable": str(self.explainer)}] * len(records)
        return [{"explanation": e} for e in self.explainer.explain_records(records)]


def load_version(client: Any, name: str, alias: str, version: str) -> LoadedModel:
    """Download and load one model version, with its signature, threshold, input domains and compiled fast path."""
    import mlflow

    from airloop.training.compiled import compile_pipeline
    from airloop.training.model_io import load_sklearn_model
    from airloop.training.record_features import feature_step

    info = client.get_model_version(name, version)
    uri = model_uri(name, version)
    pipeline = load_sklearn_model(uri)
    signature = mlflow.models.get_model_info(uri).signature
    columns = [(spec.name, getattr(spec.type, "name", str(spec.type))) for spec in signature.inputs]
    features = feature_step(pipeline)
    domains = features.input_domains() if features is not None else {}
    chosen = version_record(client, name, version)
    threshold = chosen.threshold
    compiled = compile_pipeline(pipeline)
    return LoadedModel(
        alias,
        str(version),
        info.run_id,
        threshold,
        columns,
        domains,
        pipeline,
        compiled,
        record_model(columns, domains),
        chosen.operating_point_view(),
        new_explainer(pipeline, compiled, f"{name} v{version}"),
    )


def new_explainer(pipeline: Any, compiled: Any, which: str) -> Any:
    """The version's explainer, built as it is loaded (off the request path: once per version), or the reason it has
    none (an estimator with no exact explanation, the explainer's package failing to import): a version that cannot
    explain still scores."""
    try:
        from airloop.explanations import Explainer

        return Explainer.of(pipeline, compiled)
    except Exception as error:
        log.warning("%s cannot explain its scores: %s: %s", which, type(error).__name__, error)
        return f"{which} cannot explain its scores: {error}"


class ModelHolder:
    """Current models by alias and the live experiment; ``refresh()`` brings both in line with the registry."""

    def __init__(self, client_factory: Callable[[], Any], model_name: str, default_experiment: RoutingConfig) -> None:
        self._client_factory = client_factory
        self.model_name = model_name
        self.default_experiment = default_experiment
        self.experiment = default_experiment
        self.models: dict[str, LoadedModel] = {}
        self.registry_error: str | None = None
        self.last_check: float | None = None
        self._lock = threading.Lock()

    def _state(self) -> tuple[Any, dict[Alias, str], dict[str, str]]:
        try:
            client = self._client_factory()
            aliases, tags = model_state(client, self.model_name)
        except Exception as error:  # connection refused, DNS, timeouts, server errors: the registry is down
            raise RegistryUnavailable(f"registry unreachable asking for {self.model_name}: {error}") from error
        return client, aliases, tags

    def refresh(self) -> bool:
        """Bring loaded models and the live experiment in line with the registry; True when a version changed.

        Each alias is loaded on its own: a version that fails to load keeps that alias on the version it served before
        (or leaves it unserved) while every other change still goes in; an unreadable experiment tag keeps the current
        experiment. What went wrong is in ``registry_error`` (``/ready`` reports it as degraded).
        """
        with self._lock:
            try:
                client, aliases, tags = self._state()
            except RegistryUnavailable as error:
                self.registry_error = str(error)
                log.warning("%s; keeping the loaded models %s", error, self.versions())
                return False
            problems: list[str] = []
            try:
                experiment = from_tags(tags, self.default_experiment)
            except LiveExperimentError as error:
                problems.append(f"{error}; keeping the experiment {self.experiment.experiment!r}")
                experiment = self.experiment
            current = dict(self.models)
            new: dict[str, LoadedModel] = {}
            for alias in SERVED_ALIASES:
                version = aliases.get(alias)
                loaded = current.get(alias)
                if version is None:
                    continue
                if loaded is not None and loaded.version == version:
                    new[alias] = loaded
                    continue
                try:
                    new[alias] = load_version(client, self.model_name, alias, version)
                    log.info("loaded %s@%s = v%s", self.model_name, alias, version)
                except Exception as error:  # a broken version must not block the other aliases or later changes
                    problems.append(
                        f"loading {self.model_name}@{alias} v{version} failed: {type(error).__name__}: {error}"
                    )
                    log.exception("loading %s@%s v%s failed", self.model_name, alias, version)
                    if loaded is not None:
                        new[alias] = loaded
            self.registry_error = "; ".join(problems) or None
            self.last_check = time.time()
            changed = {a: m.version for a, m in new.items()} != self.versions()
            self.models = new  # one reference swap: a request sees the old set or the new one, never a mix
            self.experiment = experiment
            return changed

    def update_experiment(self, actor: str, **changes: Any) -> RoutingConfig:
        """Change the live experiment in the registry (every replica follows) and use it here at once.

        ``changes`` (weights, mode, experiment) apply to the experiment recorded now; what is not given is kept.
        ValueError when the result is not a valid experiment.
        """
        with self._lock:  # not between a poll's read of the registry and its swap
            config = update_live(self._client_factory(), self.model_name, self.default_experiment, actor, **changes)
            self.experiment = config
        return config

    def versions(self) -> dict[str, str]:
        """alias -> loaded version."""
        return {str(alias): model.version for alias, model in self.models.items()}


def score(records: list[dict[str, Any]], model: LoadedModel) -> tuple[np.ndarray, LoadedModel]:
    """The batch function: probabilities of the records by the model version that validated them."""
    return model.predict_proba(records), model


def explain(records: list[dict[str, Any]], model: LoadedModel) -> list[dict[str, Any]]:
    """The batcher's explain function: the records' explanations by the model version that just scored them."""
    return model.explain(records)
