"""Saving and loading scikit-learn models with skops inside an Airflow task, without a thousand spurious warnings.

When ``skops.io`` is first imported (by MLflow, on the first save or load of a process) it names every
``scipy.special`` ufunc by looking it up in each loaded module (``skops.io._utils.whichmodule``, about 230 names).
Airflow's compatibility modules (``airflow.utils.timezone``, ``airflow.utils.trigger_rule``,
``airflow.serialization.serde``, ...) answer any attribute lookup with a ``DeprecatedImportWarning`` before failing
it, so a task process logs about 1,160 of them. skops silences ``DeprecationWarning`` for that walk; Airflow's warning
is a ``FutureWarning``, so it gets through.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The module skops' lookup runs in: the warnings it triggers in Airflow's shims are attributed to it (stacklevel=2).
_SKOPS_MODULE_WALK = r"skops\.io\._utils"


@contextmanager
def skops_module_walk_quiet() -> Iterator[None]:
    """Hide the Airflow ``DeprecatedImportWarning`` raised by skops' module walk; every other warning shows."""
    with warnings.catch_warnings():
        # Airflow's shims exist only once this module is loaded: without it there is nothing to hide.
        deprecation_tools = sys.modules.get("airflow.utils.deprecation_tools")
        category = getattr(deprecation_tools, "DeprecatedImportWarning", None)
        if category is not None:
            warnings.filterwarnings("ignore", category=category, module=_SKOPS_MODULE_WALK)
        yield


# One model load (or save) at a time per process. skops reads a model's schema with ``ast`` and CPython 3.11 (before
# 3.11.9, gh-106905) can fail two concurrent ``ast`` parses with "SystemError: AST constructor recursion depth
# mismatch"; ``warnings.catch_warnings`` is process-global too. A service hosting several models loads them from
# several threads: without the lock one of them sporadically failed to load.
_LOAD_LOCK = threading.Lock()


def log_sklearn_model(model: Any, **kwargs: Any) -> Any:
    """``mlflow.sklearn.log_model(model, **kwargs)`` inside :func:`skops_module_walk_quiet`; returns its ModelInfo."""
    import mlflow.sklearn

    with _LOAD_LOCK, skops_module_walk_quiet():
        return mlflow.sklearn.log_model(model, **kwargs)


def load_sklearn_model(model_uri: str) -> Any:
    """``mlflow.sklearn.load_model(model_uri)`` inside :func:`skops_module_walk_quiet`. The artifacts are fetched
    first, concurrently with other loads (a slow store holds up no other model); deserialising is one at a time."""
    import tempfile

    import mlflow.artifacts
    import mlflow.sklearn

    with tempfile.TemporaryDirectory(prefix="airloop-model-") as local:
        path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=local)
        with _LOAD_LOCK, skops_module_walk_quiet():
            return mlflow.sklearn.load_model(path)
