"""What Airflow's processes import once at start so that parsing ``dags/airloop_models.py`` does not import it again.

Airflow's DAG processor parses each DAG file in a process it forks from itself, after importing the Airflow modules
the file names (``[dag_processor] parsing_pre_import_modules``); a fork starts with every module its parent had. The
factory's own imports are not Airflow's, so without help every parse would build airloop's settings and spec classes
again (pydantic models: about two thirds of a one-model parse, see ``make bench-parse``). Airflow imports
``airflow_local_settings`` in each of its processes as it starts (``airflow.settings.import_local_settings``): the
one that airloop's deployments put there imports this module, and with it those classes, once per process.

It also parses the defaults file and every spec file once (``warm``), into airloop's caches that are keyed by each
file's version (the YAML by path, size and modification time; a spec by its text): a parse still reads the files as
they are on disk at that moment and reuses the parent's work only for a file that has not changed. Nothing is kept
that a parse would not check (no settings object), and nothing that goes wrong here stops an Airflow process from
starting: a broken file is reported by the parse that reads it. Nothing here imports Airflow either (this runs while
``import airflow`` itself is under way).
"""

from __future__ import annotations

import logging
from pathlib import Path

import airloop.dag_defaults
import airloop.registry.contract
import airloop.security
import airloop.settings
import airloop.spec

log = logging.getLogger(__name__)


def warm() -> None:
    """Parse the defaults file and the models folder's specs into their version-keyed caches; never raises."""
    try:
        airloop.settings.Settings().catalog  # noqa: B018 - reads airloop.yaml, the default spec, then every spec
    except Exception as error:  # an Airflow process must start whatever the files hold; the parse says what is wrong
        log.debug("airloop preload: settings and specs not read ahead (%s: %s)", type(error).__name__, error)


warm()

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
