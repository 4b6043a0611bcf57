"""The live experiment, persisted where every serving replica sees it: a tag on the registered model.

Serving replicas read it on every registry poll (the same call that reads the aliases); ``PUT /v1/routing``, the CLI
and the registry DAG all change it through ``set_live``. A restart keeps it. Without the tag, the routing file
(config/routing.yaml) is the initial default.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from airloop.experiments.routing import RoutingConfig, default_routing
from airloop.registry.aliases import model_state, now
from airloop.registry.contract import Alias, Tag

if TYPE_CHECKING:
    from airloop.settings import Settings

log = logging.getLogger(__name__)


class LiveExperimentError(ValueError):
    """The tag on the registered model does not hold a valid experiment; the message shows it."""


def from_tags(tags: dict[str, str], default: RoutingConfig) -> RoutingConfig:
    """The experiment recorded in a registered model's tags, or ``default`` when none is recorded."""
    raw = tags.get(Tag.ROUTING)
    if not raw:
        return default
    try:
        return RoutingConfig.from_dict(json.loads(raw))
    except (ValueError, json.JSONDecodeError) as error:
        raise LiveExperimentError(f"tag {Tag.ROUTING} holds no valid experiment: {raw!r} ({error})") from error


def get_live(client: Any, model: str, default: RoutingConfig) -> RoutingConfig:
    """The live experiment of ``model`` (``default`` while none has been set)."""
    _, tags = model_state(client, model)
    return from_tags(tags, default)


def current(settings: Settings) -> tuple[dict[str, str], RoutingConfig]:
    """What serves now, read in one registry call: aliases (alias -> version) and the live experiment."""
    from airloop.registry.client import connect

    found, tags = model_state(connect(settings), settings.mlflow.model_name)
    default = default_routing(settings)
    return {str(k): str(v) for k, v in found.items()}, from_tags(tags, default)


def current_state(settings: Settings) -> dict[str, Any]:
    """The registry state now, as the decision history records it: ``{"aliases": {...}, "routing": {...}}``, read in
    one registry call."""
    found, live = current(settings)
    return {"aliases": found, "routing": live.to_dict()}


def running(found: dict[str, str], live: RoutingConfig) -> str | None:
    """The experiment under way, described, or None: a challenger alias with traffic (A/B share above 0, or shadow).

    ``found``: alias -> version, as ``current`` returns them."""
    challenger = found.get(Alias.CHALLENGER.value)
    if challenger is None:
        return None
    if live.mode == "ab" and live.weights.get(Alias.CHALLENGER.value, 0.0) <= 0:
        return None
    return f"experiment {live.experiment} ({live.mode}) with challenger v{challenger} is running"


def set_live(client: Any, model: str, config: RoutingConfig, actor: str) -> RoutingConfig:
    """Make ``config`` the live experiment of ``model`` for every replica, recording who changed it and when."""
    payload = {**config.to_dict(), "set_by": actor, "set_at": now()}
    client.set_registered_model_tag(model, Tag.ROUTING, json.dumps(payload, sort_keys=True))
    log.info("%s: live experiment set to %s by %s", model, config.to_dict(), actor)
    return config


def update_live(
    client: Any,
    model: str,
    default: RoutingConfig,
    actor: str,
    *,
    weights: dict[str, float] | None = None,
    mode: str | None = None,
    experiment: str | None = None,
) -> RoutingConfig:
    """Change the live experiment: what is not given is kept from the one recorded now (not from a cached copy).

    This is the one function behind ``PUT /v1/routing``, ``airloop registry route`` and the registry DAG. A recorded
    experiment that cannot be read is replaced (the error is logged). ValueError when the result is not valid.
    """
    try:
        current = get_live(client, model, default)
    except LiveExperimentError as error:
        log.warning("%s; replacing it", error)
        current = default
    config = RoutingConfig(
        experiment=experiment or current.experiment,
        weights={k: float(v) for k, v in weights.items()} if weights else dict(current.weights),
        mode=mode or current.mode,
    )
    return set_live(client, model, config, actor)
