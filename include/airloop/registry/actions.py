"""Registry actions shared by ``python -m airloop registry --model <name>`` and each model's ``<name>_registry`` DAG."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from airloop import security
from airloop.errors import RegistryActionError
from airloop.registry import aliases as reg
from airloop.settings import Settings

log = logging.getLogger(__name__)

ACTIONS = ("show", "promote", "rollback", "route")


def run_action_as(
    settings: Settings, user: str | None, action: str, actor: str, routing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``run_action`` on behalf of ``user``, the Airflow user who triggered the run, if their role allows ``action``
    (``airloop.security.REGISTRY_ACTION_ROLES``); the audit trail names them.

    Raises:
        NotAuthorized: before anything is read or changed, naming the user, their role and the role needed.
    """
    role = security.authorize_registry_action(settings, action, user)
    log.info("registry %s by %s (role %s)", action, user or "no signed-in user", role.value if role else "none")
    return run_action(settings, action, f"{actor} by {user}" if user else actor, routing)


def run_action(settings: Settings, action: str, actor: str, routing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply ``action`` to the model ``settings`` are bound to; return its aliases, live experiment and registry table.

    ``promote`` and ``rollback`` move the aliases and the routing together (``airloop.experiments.lifecycle``);
    ``route`` makes ``routing`` (``{"weights": {...}, "mode": ..., "experiment": ...}``; the experiment id is kept
    when not given) the live experiment that every serving replica follows.
    """
    from airloop import history
    from airloop.experiments import lifecycle
    from airloop.experiments.live import get_live, update_live
    from airloop.experiments.routing import RoutingConfig
    from airloop.ledger import Kind
    from airloop.registry.client import connect

    if action not in ACTIONS:
        raise ValueError(f"unknown registry action {action!r}; choose one of {ACTIONS}")
    client = connect(settings)
    name = settings.mlflow.model_name
    default = RoutingConfig.from_yaml(settings.serving.routing_file, settings.model or "")
    if action == "promote":
        lifecycle.promote(settings, actor, {"action": "promote"})
    elif action == "rollback":
        lifecycle.rollback(settings, actor)
    elif action == "route":
        try:
            update_live(client, name, default, actor, **{k: v for k, v in (routing or {}).items() if v is not None})
        except ValueError as error:
            raise RegistryActionError(f"cannot route: {error}") from error
        history.record(settings, Kind.ROUTING_CHANGED, actor, {"action": "route"}, outcome=lifecycle.DONE)
    rows = reg.state(client, name)
    table = reg.format_table(rows) + f"\nrouting: {get_live(client, name, default).to_dict()}"
    log.info("registry state of %s after %s:\n%s", name, action, table)
    return {
        "action": action,
        "aliases": {str(k): v for k, v in reg.aliases(client, name).items()},
        "routing": get_live(client, name, default).to_dict(),
        "versions": [asdict(r) for r in rows],
        "table": table,
    }
