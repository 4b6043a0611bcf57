"""The model holder: loads champion/challenger from the MLflow registry and swaps them in without a gap."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airloop.registry.aliases import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

VARIANTS = (CHAMPION, CHALLENGER)
_ABSENT = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class RegistryUnavailable(RuntimeError):
    """The registry could not be asked; the models already loaded keep serving."""


@dataclass
class LoadedModel:
    """One registered version, loaded and ready to predict."""

    alias: str
    version: str
    run_id: str | None
    threshold: float
    columns: list[tuple[str, str]]
    pipeline: Any
    compiled: Any | None
    loaded_at: float = field(default_factory=time.time)

    def predict_proba(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Positive-class probabilities; the compiled fast path when the pipeline's shape allows it."""
        if self.compiled is not None:
            return self.compiled.predict_proba(records)
        import pandas as pd

        frame = pd.DataFrame.from_records(records, columns=[c for c, _ in self.columns])
        return self.pipeline.predict_proba(frame)[:, 1]


def load_version(client: Any, name: str, alias: str, version: str) -> LoadedModel:
    """Download and load one model version, with its signature, threshold and compiled fast path."""
    import mlflow

    from airloop.training.compiled import compile_pipeline

    info = client.get_model_version(name, version)
    uri = f"models:/{name}/{version}"
    pipeline = mlflow.sklearn.load_model(uri)
    signature = mlflow.models.get_model_info(uri).signature
    columns = [(spec.name, getattr(spec.type, "name", str(spec.type))) for spec in signature.inputs]
    threshold = float(info.tags.get("airloop.threshold", 0.5))
    return LoadedModel(alias, str(version), info.run_id, threshold, columns, pipeline, compile_pipeline(pipeline))


class ModelHolder:
    """Current models by alias. ``refresh()`` asks the registry and swaps changed versions in after a full load."""

    def __init__(self, client_factory: Any, model_name: str) -> None:
        self._client_factory = client_factory
        self.model_name = model_name
        self.models: dict[str, LoadedModel] = {}
        self.registry_error: str | None = None
        self.last_check: float | None = None
        self._lock = threading.Lock()

    def _alias_version(self, client: Any, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException as error:
            if error.error_code in _ABSENT:
                return None
            raise RegistryUnavailable(f"registry error asking for {self.model_name}@{alias}: {error}") from error
        except Exception as error:  # connection refused, DNS, timeouts: the registry is down, not the model
            raise RegistryUnavailable(f"registry unreachable asking for {self.model_name}@{alias}: {error}") from error

    def refresh(self) -> bool:
        """Bring loaded models in line with the registry aliases; True when something changed."""
        with self._lock:
            try:
                try:
                    client = self._client_factory()
                except Exception as error:
                    raise RegistryUnavailable(f"registry unreachable: {error}") from error
                wanted = {alias: self._alias_version(client, alias) for alias in VARIANTS}
                current = dict(self.models)
                new: dict[str, LoadedModel] = {}
                for alias, version in wanted.items():
                    if version is None:
                        continue
                    loaded = current.get(alias)
                    if loaded is not None and loaded.version == version:
                        new[alias] = loaded
                    else:
                        new[alias] = load_version(client, self.model_name, alias, version)
                        log.info("loaded %s@%s = v%s", self.model_name, alias, version)
            except RegistryUnavailable as error:
                self.registry_error = str(error)
                log.warning("%s; keeping the loaded models %s", error, self.versions())
                return False
            except Exception as error:  # a broken model version must not take the service down
                self.registry_error = f"loading a model failed: {type(error).__name__}: {error}"
                log.exception("loading a model failed; keeping the loaded models %s", self.versions())
                return False
            self.registry_error = None
            self.last_check = time.time()
            changed = {a: m.version for a, m in new.items()} != self.versions()
            self.models = new  # one reference swap: a request sees the old set or the new one, never a mix
            return changed

    def versions(self) -> dict[str, str]:
        """alias -> loaded version."""
        return {alias: model.version for alias, model in self.models.items()}
