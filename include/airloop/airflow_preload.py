"""What Airflow's processes import once at start so that parsing ``dags/airloop_models.py`` does not import it again.

Airflow's DAG processor parses each DAG file in a process it forks from itself, after importing the Airflow modules
the file names (``[dag_processor] parsing_pre_import_modules``); a fork starts with every module its parent had. The
factory's own imports are not Airflow's, so without help every parse would build airloop's settings and spec classes
again (pydantic models: about two thirds of a one-model parse, see ``make bench-parse``). Airflow imports
``airflow_local_settings`` in each of its processes as it starts (``airflow.settings.import_local_settings``): the
one that airloop's deployments put there imports this module, and with it those classes, once per process.

Only class definitions are imported here, never a value: no settings are read and no spec file is opened, so a parse
still reads the specs as they are on disk at that moment. Nothing here imports Airflow either (this runs while
``import airflow`` itself is under way).
"""

from __future__ import annotations

from pathlib import Path

import airloop.dag_defaults
import airloop.registry.contract
import airloop.security
import airloop.settings
import airloop.spec  # noqa: F401

LOCAL_SETTINGS = '''"""Written by airloop (airloop.airflow_preload): airloop's parse-time classes, imported once."""

import airloop.airflow_preload  # noqa: F401

__all__: list[str] = []  # no cluster policy, no setting override
'''


def write_local_settings(airflow_home: Path) -> Path:
    """Write ``<airflow_home>/config/airflow_local_settings.py`` (where Airflow looks for it) importing this module.

    A file already there is left alone: it is this one, or the operator's own, whose owner adds the import line (as
    the Helm values do through the chart's ``airflowLocalSettings``)."""
    target = airflow_home / "config" / "airflow_local_settings.py"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_text(LOCAL_SETTINGS)
    staging.replace(target)
    return target
