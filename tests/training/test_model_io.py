"""Saving or loading a model with skops where Airflow is loaded logs no Airflow deprecation noise; real warnings stay.

skops walks the loaded modules once, when ``skops.io`` is first imported, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

COUNT_WARNINGS = """
import collections, json, warnings
def counted(caught):
    counts = collections.Counter(w.category.__name__ for w in caught)
    outside = [w for w in caught if w.category.__name__ == "DeprecatedImportWarning" and "skops" not in w.filename]
    return {**counts, "DeprecatedImportWarning outside skops": len(outside)}
"""

SAVE_WITH_AIRFLOW_LOADED = (
    COUNT_WARNINGS
    + """
import sys
import airflow.sdk  # a task process: Airflow and its compatibility modules are loaded
import numpy as np
import mlflow.sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from airloop.training.features import SKOPS_TRUSTED_TYPES  # the base types; no feature step here
from airloop.training.model_io import skops_module_walk_quiet

x = np.random.default_rng(0).normal(size=(60, 3))
model = make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=3)).fit(x, x[:, 0] > 0)
already_imported = "skops.io" in sys.modules
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with skops_module_walk_quiet():
        mlflow.sklearn.save_model(
            model, sys.argv[1], serialization_format="skops", skops_trusted_types=SKOPS_TRUSTED_TYPES
        )
        warnings.warn("a real warning raised while the model is saved", UserWarning)
        import airflow.utils.timezone as legacy_timezone
        legacy_timezone.utcnow  # our own use of a deprecated Airflow name must still warn
print(json.dumps({"skops_imported_by_the_save": not already_imported and "skops.io" in sys.modules, **counted(caught)}))
"""
)

LOAD_WITH_AIRFLOW_LOADED = (
    COUNT_WARNINGS
    + """
import sys
import airflow.sdk
from airloop.training.model_io import load_sklearn_model

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = load_sklearn_model(sys.argv[1])
print(json.dumps({"loaded": type(model).__name__, **counted(caught)}))
"""
)

IMPORT_SKOPS_WITH_AIRFLOW_LOADED = (
    COUNT_WARNINGS
    + """
import airflow.sdk
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import skops.io
print(json.dumps(counted(caught)))
"""
)


def run_probe(code: str, *args: str) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_the_filter_skops_import_floods_the_log_with_airflow_deprecations():
    counts = run_probe(IMPORT_SKOPS_WITH_AIRFLOW_LOADED)

    assert counts.get("DeprecatedImportWarning", 0) > 1000


def test_saving_and_loading_with_skops_log_no_airflow_deprecation_but_real_warnings_still_show(tmp_path):
    model = tmp_path / "model"

    saved = run_probe(SAVE_WITH_AIRFLOW_LOADED, str(model))
    loaded = run_probe(LOAD_WITH_AIRFLOW_LOADED, str(model))

    assert saved["skops_imported_by_the_save"] is True
    assert saved.get("DeprecatedImportWarning") == 1
    assert saved.get("DeprecatedImportWarning outside skops") == 1
    assert saved.get("UserWarning") == 1
    assert (model / "model.skops").is_file()
    assert loaded["loaded"] == "Pipeline"
    assert loaded.get("DeprecatedImportWarning", 0) == 0
