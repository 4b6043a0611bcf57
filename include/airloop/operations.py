"""Application services over the registry, the live experiment and the decision history: what
``python -m airloop registry --model <name>``, each model's ``<name>_registry`` DAG and serving's admin routes run.

It sits above the domain packages (``registry``, ``experiments``, ``history``) and combines them; none of them imports
it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from airloop import security
from airloop.errors import AirloopError, RegistryActionError
from airloop.registry import aliases as reg
from airloop.settings import Settings

if TYPE_CHECKING:
    from airloop.experiments.routing import RoutingConfig

log = logging.getLogger(__name__)

ACTIONS = ("show", "promote", "rollback", "route")


class RoutingNotRecorded(AirloopError):
    """The routing change is live, but the decision history could not record it; ``config`` is what went live."""

    def __init__(self, config: RoutingConfig, error: Exception) -> None:
        super().__init__(f"routing changed to {config.to_dict()} but the decision history could not record it: {error}")
        self.config = config


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
    when not given) the live experiment that every serving replica follows (``route``).
    """
    from airloop.experiments import lifecycle
    from airloop.experiments.live import get_live
    from airloop.experiments.routing import default_routing
    from airloop.registry.client import connect

    if action not in ACTIONS:
        raise ValueError(f"unknown registry action {action!r}; choose one of {ACTIONS}")
    client = connect(settings)
    name = settings.mlflow.model_name
    default = default_routing(settings)
    if action == "promote":
        lifecycle.promote(settings, actor, {"action": "promote"})
    elif action == "rollback":
        lifecycle.rollback(settings, actor)
    elif action == "route":
        changes = {k: v for k, v in (routing or {}).items() if v is not None}
        apply = _update_live(client, name, default)
        try:
            route(settings, actor, **changes, apply=apply)
        except ValueError as error:
            raise RegistryActionError(f"cannot route: {error}") from error
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


def route(
    settings: Settings,
    actor: str,
    *,
    weights: Mapping[str, float] | None = None,
    mode: str | None = None,
    experiment: str | None = None,
    apply: Callable[..., RoutingConfig] | None = None,
) -> RoutingConfig:
    """Change the live experiment of the model ``settings`` are bound to, for every replica (what is not given is kept
    from the one recorded now), and record the change in its decision history.

    Args:
        settings: the model's settings.
        actor: who changed it (the audit trail and the history row name them).
        weights: variant -> weight.
        mode: ``ab`` or ``shadow``.
        experiment: a new experiment id (reshuffles sticky assignments).
        apply: what writes the change, called as ``apply(actor, weights=, mode=, experiment=)`` and returning the live
            experiment: serving passes its model holder's ``update_experiment`` so the replica uses it at once. By
            default ``experiments.live.update_live`` on the model's registry.

    Returns:
        The experiment now live.

    Raises:
        ValueError: the result is not a valid experiment; nothing was written.
        RoutingNotRecorded: the change is live but the decision history could not record it.
    """
    from airloop import history
    from airloop.experiments.lifecycle import DONE
    from airloop.experiments.live import current_state
    from airloop.ledger import Kind

    if apply is None:
        from airloop.experiments.routing import default_routing
        from airloop.registry.client import connect

        default = default_routing(settings)
        apply = _update_live(connect(settings), settings.mlflow.model_name, default)
    config = apply(actor, weights=None if weights is None else dict(weights), mode=mode, experiment=experiment)
    try:
        state = current_state(settings)
        history.record(settings, Kind.ROUTING_CHANGED, actor, {"action": "route"}, state=state, outcome=DONE)
    except Exception as error:
        raise RoutingNotRecorded(config, error) from error
    return config


def _update_live(client: Any, name: str, default: RoutingConfig) -> Callable[..., RoutingConfig]:
    """``experiments.live.update_live`` on ``client`` for ``name``, as ``route`` calls ``apply``."""
    import functools

    from airloop.experiments.live import update_live

    return functools.partial(update_live, client, name, default)


def decided_promotion(settings: Settings, evaluation_key: str) -> Any:
    """The decision history's row of the evaluation ``evaluation_key`` if it decided to promote this model's
    challenger: a promotion acts on what the history recorded, not on what a task's XCom says.

    Raises:
        RegistryActionError: no such evaluation of this model, or it did not decide "promote".
    """
    from airloop.ledger import Kind, ledger

    row = ledger(settings).get(evaluation_key)
    name = settings.mlflow.model_name
    if row is None or row.kind != Kind.EVALUATION or row.subject != name:
        raise RegistryActionError(f"cannot promote: {name} has no evaluation {evaluation_key[:120]!r} in its history")
    if row.payload.get("action") != "promote":
        raise RegistryActionError(
            f"cannot promote: evaluation {evaluation_key[:120]!r} decided {row.payload.get('action')!r}, not promote"
        )
    return row


def promotable(settings: Settings, evaluation_key: str) -> Any:
    """The history row of an evaluation that decided to promote, if promoting is still what it decided: the registry
    holds the versions it was decided for and nobody carried it out yet. What a person is asked to approve comes from
    this row, never from a task's XCom.

    Raises:
        RegistryActionError: see ``decided_promotion`` and ``lifecycle.check_promotable``.
    """
    from airloop.experiments import lifecycle

    row = decided_promotion(settings, evaluation_key)
    lifecycle.check_promotable(settings, f"promotion:{evaluation_key}", lifecycle.decided_versions(row.payload))
    return row


def promote_decided(
    settings: Settings, evaluation_key: str, actor: str, approval: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Promote the challenger an evaluation decided for, once: the versions it decided for must still be champion
    and challenger (a cleared or re-run task of an old decision refuses), and when ``loop.require_approval`` is on,
    ``approval`` must be Airflow's own record of an approver's "Approve" (the HITL detail of the approval task, never
    an XCom); the history names the approver as who promoted.

    Raises:
        RegistryActionError: see ``decided_promotion``, or the registry holds other versions now.
        NotAuthorized: approval is required and ``approval`` is not an approver's "Approve".
    """
    from airloop.experiments import lifecycle

    row = decided_promotion(settings, evaluation_key)
    person = security.approved_by(settings, approval)
    expected = lifecycle.decided_versions(row.payload)
    details = {"evaluation_key": evaluation_key, "reason": row.payload.get("reason"), "approval": approval or None}
    who = f"approved by {person}" if person else actor
    return lifecycle.promote(settings, who, details, key=f"promotion:{evaluation_key}", expected=expected)


def correct_outcome(settings: Settings, request_id: str, outcome: int, reason: str, actor: str) -> Any:
    """Record in the decision history that the outcome of ``request_id`` is ``outcome``, why and by whom: the audited
    path by which an outcome changes (the feedback row the caller then writes names this row as its source).
    Returns the history row."""
    import uuid

    from airloop.ledger import ledger

    name = settings.mlflow.model_name
    key = f"feedback_correction:{name}:{request_id}:{uuid.uuid4().hex[:12]}"
    payload = {"request_id": request_id, "outcome": int(outcome), "reason": reason}
    book = ledger(settings)
    row = book.record(CORRECTION_KIND, key, name, payload, actor)
    return book.set_outcome(key, "recorded") if row.outcome is None else row


CORRECTION_KIND = "feedback_correction"
