"""Airflow's ``[core] hostname_callable`` for the test's Celery workers: the name each worker was started with.

In a cluster every worker pod has a hostname of its own; here the two workers share one machine, so each is told its
name (``AIRLOOP_TEST_WORKER``) and Airflow records it on every task instance the worker runs.
"""

from __future__ import annotations

import os

VARIABLE = "AIRLOOP_TEST_WORKER"


def hostname() -> str:
    """The worker's name, as Airflow records it in ``task_instance.hostname``."""
    return os.environ[VARIABLE]
