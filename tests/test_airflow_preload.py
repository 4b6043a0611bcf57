"""airloop's ``airflow_local_settings.py``: Airflow's processes import airloop's parse-time classes once and parse the
defaults and spec files once into caches keyed by each file's version, keeping no settings object.

Each check runs in a fresh interpreter, as an Airflow process starts: what is in ``sys.modules`` after ``import
airflow`` is what the DAG processor's forked parses inherit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from airloop.airflow_preload import LOCAL_SETTINGS, write_local_settings

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, os, pathlib, sys
import airflow.settings
changed = os.environ.get("PROBE_REWRITE")
if changed:  # a spec edited after the process started: a parse must read it as it is now
    path = pathlib.Path(changed)
    path.write_text(path.read_text().replace("description:", "description: edited", 1))
preloaded = sorted(m for m in ("airloop.settings", "airloop.spec.schema", "airloop.dag_defaults") if m in sys.modules)
loader = sys.modules.get("airloop.spec.loader")
print(json.dumps({
    "preloaded": preloaded,
    "settings_read": sys.modules["airloop.settings"].get_settings.cache_info().currsize if preloaded else 0,
    "specs_parsed": loader._cached.cache_info().currsize if loader else 0,
    "yaml_parsed": sys.modules["airloop.settings"]._parsed_yaml.cache_info().currsize if preloaded else 0,
    "description": loader.find(pathlib.Path(os.environ["AIRLOOP_MODELS__FOLDER"]), "churn").description
    if preloaded else None,
}))
"""


def _models(folder: Path, spec_text: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "churn.yaml").write_text(spec_text or (ROOT / "models" / "churn.yaml").read_text())
    return folder


def _env(airflow_home: Path, models: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AIRLOOP"))}
    env |= {"AIRFLOW_HOME": str(airflow_home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **extra}
    return env | {"AIRLOOP_MODELS__FOLDER": str(models), "AIRLOOP_MODELS__DEFAULT": "churn"}


def _start_airflow(airflow_home: Path, models: Path | None = None, **extra: str) -> dict:
    env = _env(airflow_home, models or _models(airflow_home / "models"), **extra)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_airflow_process_parses_airloops_files_once_at_start_and_keeps_no_settings(tmp_path: Path) -> None:
    assert _start_airflow(tmp_path / "cold")["preloaded"] == []
    write_local_settings(tmp_path / "deployed")
    started = _start_airflow(tmp_path / "deployed")
    assert started["preloaded"] == ["airloop.dag_defaults", "airloop.settings", "airloop.spec.schema"]
    # The defaults file and the spec are parsed ahead; no settings object is kept that a parse would not re-check.
    assert started["yaml_parsed"] == 1 and started["specs_parsed"] == 1 and started["settings_read"] == 0


def test_a_spec_edited_after_the_process_started_is_read_as_it_is_now(tmp_path: Path) -> None:
    write_local_settings(tmp_path)
    models = _models(tmp_path / "models")
    started = _start_airflow(tmp_path, models, PROBE_REWRITE=str(models / "churn.yaml"))
    assert started["description"].startswith("edited")


def test_broken_files_do_not_stop_an_airflow_process_from_starting(tmp_path: Path) -> None:
    write_local_settings(tmp_path)
    broken = _models(tmp_path / "models", "name: churn\ndata: [not, a, mapping\n")
    config = tmp_path / "airloop.yaml"
    config.write_text("models: {folder: [}\n")
    probe = "import airflow.settings, sys; print('airloop.settings' in sys.modules)"
    for extra in ({}, {"AIRLOOP_CONFIG": str(config)}):
        env = _env(tmp_path, broken, **extra)
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip().endswith("True"), done.stderr[-2000:]


def test_the_preload_imports_no_airflow_module() -> None:
    """It runs while ``import airflow`` is under way: importing Airflow from there would be a circular import."""
    probe = "import sys, airloop.airflow_preload; print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_an_operators_own_local_settings_file_is_left_alone(tmp_path: Path) -> None:
    written = write_local_settings(tmp_path)
    assert written == tmp_path / "config" / "airflow_local_settings.py" and written.read_text() == LOCAL_SETTINGS
    written.write_text("# the operator's own cluster policies\n")
    write_local_settings(tmp_path)
    assert written.read_text() == "# the operator's own cluster policies\n"


def test_the_helm_values_give_every_airflow_process_the_same_preload() -> None:
    values = yaml.safe_load((ROOT / "helm-values" / "airflow.yaml").read_text())
    namespace: dict = {}
    exec(compile(values["airflowLocalSettings"], "airflow_local_settings.py", "exec"), namespace)
    assert "airloop.airflow_preload" in sys.modules and namespace["__all__"] == []
    exec(compile(LOCAL_SETTINGS, "airflow_local_settings.py", "exec"), ours := {})
    assert ours["__all__"] == namespace["__all__"]
