"""A throwaway AIRFLOW_HOME (SQLite, migrated) and airloop home for a benchmark run, so nothing touches .airloop/."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def homes(prefix: str, **env: str) -> Path:
    """Point Airflow and airloop at a new temp folder (plus ``env``), migrate Airflow's DB there; returns the folder."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRLOOP_HOME": str(home / "airloop"),
            "GX_ANALYTICS_ENABLED": "False",
            **env,
        }
    )
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return home
