"""airloop's ``airflow_local_settings.py``: Airflow's processes import airloop's parse-time classes once, read no value.

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
import json, sys
import airflow.settings
preloaded = sorted(m for m in ("airloop.settings", "airloop.spec.schema", "airloop.dag_defaults") if m in sys.modules)
loader = sys.modules.get("airloop.spec.loader")
print(json.dumps({
    "preloaded": preloaded,
    "settings_read": sys.modules["airloop.settings"].get_settings.cache_info().currsize if preloaded else 0,
    "specs_parsed": loader._cached.cache_info().currsize if loader else 0,
}))
"""


def _start_airflow(airflow_home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {"AIRFLOW_HOME": str(airflow_home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_airflow_process_imports_airloops_classes_at_start_and_reads_no_setting(tmp_path: Path) -> None:
    assert _start_airflow(tmp_path / "cold")["preloaded"] == []
    write_local_settings(tmp_path / "deployed")
    started = _start_airflow(tmp_path / "deployed")
    assert started["preloaded"] == ["airloop.dag_defaults", "airloop.settings", "airloop.spec.schema"]
    # Nothing read: a parse forked from this process reads the settings and spec files as they are at that moment.
    assert started["settings_read"] == 0 and started["specs_parsed"] == 0


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
