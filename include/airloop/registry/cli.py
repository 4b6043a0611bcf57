"""Registry actions shared by ``python -m airloop registry`` and the ``readmission_registry`` DAG."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from airloop.registry import aliases as reg
from airloop.settings import Settings

log = logging.getLogger(__name__)

ACTIONS = ("show", "promote", "rollback")


def run_action(settings: Settings, action: str, actor: str) -> dict[str, Any]:
    """Apply ``action`` to the configured model and return the aliases and the registry table."""
    from airloop.registry.tracking import configure_mlflow

    if action not in ACTIONS:
        raise ValueError(f"unknown registry action {action!r}; choose one of {ACTIONS}")
    client = configure_mlflow(settings)
    name = settings.mlflow.model_name
    if action == "promote":
        reg.promote(client, name, actor)
    elif action == "rollback":
        reg.rollback(client, name, actor)
    rows = reg.state(client, name)
    table = reg.format_table(rows)
    log.info("registry state of %s after %s:\n%s", name, action, table)
    return {
        "action": action,
        "aliases": reg.aliases(client, name),
        "versions": [asdict(r) for r in rows],
        "table": table,
    }
