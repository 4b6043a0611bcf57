"""An experiment's life: started when a challenger is registered, ended by a promotion or a rejection, undone by a
rollback. Aliases and routing always move together, in an order that never leaves a champion alias without matching
routing, and each step is one row of the decision history.

- ``start``: route the configured split (or shadow) to champion and challenger under a new experiment id (sticky
  assignments reshuffle once).
- ``promote``: route 100% to the champion first (the old one still answers: safe), then move the aliases
  (challenger → champion, old champion → ``previous-champion``); the experiment ends. The routing before is kept on
  the new champion, so a rollback restores aliases *and* routing.
- ``reject``: route 100% to the champion, tag the challenger rejected and take its alias away.
- ``rollback``: restore the aliases recorded at the last promotion, then the routing recorded with them.

A step interrupted half way (MLflow unreachable) is completed by running it again: each sub-step is idempotent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from airloop import history
from airloop.errors import RegistryActionError
from airloop.experiments.live import current_state, get_live, set_live
from airloop.experiments.routing import RoutingConfig, default_routing
from airloop.ledger import Decision, Kind
from airloop.registry import aliases as reg
from airloop.registry.contract import Alias, Outcome, Tag
from airloop.settings import Settings

log = logging.getLogger(__name__)

DONE = "done"


def _client_and_default(settings: Settings) -> tuple[Any, RoutingConfig]:
    from airloop.registry.client import connect

    return connect(settings), default_routing(settings)


def experiment_id(model: str, champion: str | None, challenger: str) -> str:
    """The id of the experiment of ``challenger`` against ``champion``: a new id, so sticky assignments reshuffle."""
    return f"{model}-v{champion or 'none'}-vs-v{challenger}"


def champion_only(model: str, champion: str) -> RoutingConfig:
    """The routing outside an experiment: every request to the champion."""
    return RoutingConfig(
        experiment=f"{model}-v{champion}",
        weights={Alias.CHAMPION.value: 100.0, Alias.CHALLENGER.value: 0.0},
        mode="ab",
    )


def start(
    settings: Settings,
    challenger: str,
    actor: str,
    weights: Mapping[str, float],
    mode: str,
    details: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Route ``weights`` (or shadow) to champion and ``challenger`` under a new experiment id; one history row."""
    client, _ = _client_and_default(settings)
    name = settings.mlflow.model_name
    found = reg.aliases(client, name)
    if found.get(Alias.CHALLENGER) != str(challenger):
        raise RegistryActionError(f"cannot start an experiment: v{challenger} is not the {Alias.CHALLENGER} ({found})")
    config = RoutingConfig(
        experiment=experiment_id(name, found.get(Alias.CHAMPION), str(challenger)),
        weights={str(k): float(v) for k, v in weights.items()},
        mode=mode,
    )
    set_live(client, name, config, actor)
    row = _record(
        settings,
        Kind.EXPERIMENT_STARTED,
        actor,
        {**dict(details or {}), "experiment": config.experiment, "challenger_version": str(challenger)},
        key=key,
        versions=[str(challenger)],
        outcome=DONE,
    )
    return {"experiment": config.to_dict(), "history_id": row.id}


def decided_versions(evaluation: Mapping[str, Any]) -> dict[str, str]:
    """The versions an evaluation (its result or its history row's payload) decided for: alias -> version."""
    found = {
        Alias.CHAMPION.value: evaluation.get("champion_version"),
        Alias.CHALLENGER.value: evaluation.get("challenger_version"),
    }
    return {alias: str(version) for alias, version in found.items() if version is not None}


def _decided_for(before: Mapping[Any, str], expected: Mapping[str, str] | None, action: str, name: str) -> None:
    """Refuse ``action`` when the registry no longer holds the versions it was decided for (``expected``: alias ->
    version): a cleared or re-run task of an old decision must not move whatever is challenger now."""
    for alias, version in (expected or {}).items():
        now = before.get(Alias(alias))
        if now is not None and now != version:
            raise RegistryActionError(
                f"cannot {action}: it was decided for {name} {alias} v{version}, and the registry's {alias} is now "
                f"v{now}; a decision is made again for the versions of today, not replayed"
            )


def _not_done_yet(
    settings: Settings, key: str | None, expected: Mapping[str, str] | None, action: str, name: str
) -> None:
    """Refuse ``action`` when its decision (``key``) was carried out already although the registry holds a challenger
    again: a rollback restored the very versions it was decided for, or the same version became challenger again. A
    retry of an interrupted step never gets here (the step records its row last, after the challenger alias went)."""
    from airloop.ledger import ledger

    row = ledger(settings).get(key) if key is not None else None
    if row is None:
        return
    versions = ", ".join(f"{alias} v{version}" for alias, version in (expected or {}).items())
    raise RegistryActionError(
        f"cannot {action}: it was decided for {name} {versions or '(no versions recorded)'} and carried out already "
        f"(history #{row.id}, {row.decided_by}); a decision is made again for the versions of today, not replayed"
    )


def check_promotable(settings: Settings, key: str, expected: Mapping[str, str]) -> None:
    """Refuse, before anyone is asked to approve it, a promotion ``promote`` would refuse: the registry holds other
    versions than ``expected``, or the decision (``key``) was carried out already.

    Raises:
        RegistryActionError: naming the versions it was decided for and what the registry or the history holds.
    """
    client, _ = _client_and_default(settings)
    name = settings.mlflow.model_name
    before = reg.aliases(client, name)
    if Alias.CHALLENGER not in before:
        raise RegistryActionError(f"cannot promote: {name} has no challenger now (it was decided for {expected})")
    _decided_for(before, expected, "promote", name)
    _not_done_yet(settings, key, expected, "promote", name)


def promote(
    settings: Settings,
    actor: str,
    details: Mapping[str, Any] | None = None,
    key: str | None = None,
    expected: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """challenger → champion with routing 100% to it; the routing before is kept for a rollback. One history row.

    ``expected`` (alias -> version): the versions the promotion was decided for; it refuses when the registry holds
    others (a replayed task). ``key`` makes a retry of the same decision finish it or return what it did, and refuses
    to carry the decision out a second time once a challenger is back (e.g. after a rollback)."""
    client, default = _client_and_default(settings)
    name = settings.mlflow.model_name
    before = reg.aliases(client, name)
    if Alias.CHALLENGER in before:
        _decided_for(before, expected, "promote", name)
        _not_done_yet(settings, key, expected, "promote", name)
    else:
        done = _already_done(settings, key)
        if done is not None:
            return done
        champion = before.get(Alias.CHAMPION)
        ours = expected is None or champion == expected.get(Alias.CHALLENGER.value)
        if key is not None and champion and ours and Tag.PROMOTED_FROM in _tags(client, name, champion):
            # An earlier try of this step moved the aliases, then stopped: finish it.
            set_live(client, name, champion_only(name, champion), actor)
            row = _record(
                settings, Kind.PROMOTION, actor, {**dict(details or {}), "promoted": champion}, key=key,
                versions=[champion], outcome=DONE,
            )  # fmt: skip
            return {"promoted": champion, "history_id": row.id}
        raise RegistryActionError(f"cannot promote: {name} has no '{Alias.CHALLENGER}' alias ({reg.show(before)})")
    challenger = before[Alias.CHALLENGER]
    routing_before = get_live(client, name, default)
    if routing_before.weights.get(Alias.CHAMPION.value) != 100.0 or Tag.PROMOTED_ROUTING not in _tags(
        client, name, challenger
    ):
        client.set_model_version_tag(name, challenger, Tag.PROMOTED_ROUTING, json.dumps(routing_before.to_dict()))
    # 1. Everything to the champion that serves now (still the old one): consistent whatever happens next.
    champion_now = before.get(Alias.CHAMPION, challenger)
    set_live(client, name, champion_only(name, champion_now), actor)
    # 2. The aliases; the new champion's own single-variant experiment.
    reg.promote(client, name, actor)
    set_live(client, name, champion_only(name, challenger), actor)
    row = _record(
        settings, Kind.PROMOTION, actor, {**dict(details or {}), "promoted": challenger}, key=key,
        versions=[challenger], outcome=DONE,
    )  # fmt: skip
    return {"promoted": challenger, "history_id": row.id}


def reject(
    settings: Settings,
    actor: str,
    reason: str,
    details: Mapping[str, Any] | None = None,
    key: str | None = None,
    expected: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Route 100% back to the champion, tag the challenger rejected, remove its alias. One history row. ``expected``
    as for ``promote``."""
    client, _ = _client_and_default(settings)
    name = settings.mlflow.model_name
    before = reg.aliases(client, name)
    challenger = before.get(Alias.CHALLENGER)
    if challenger is not None:
        _decided_for(before, expected, "reject", name)
        _not_done_yet(settings, key, expected, "reject", name)
    if challenger is None:
        done = _already_done(settings, key)
        if done is not None:
            return done
        raise RegistryActionError(f"cannot reject: {name} has no '{Alias.CHALLENGER}' alias ({reg.show(before)})")
    if Alias.CHAMPION in before:
        set_live(client, name, champion_only(name, before[Alias.CHAMPION]), actor)
    client.set_model_version_tag(name, challenger, Tag.DECISION, Outcome.REJECTED.value)
    client.set_model_version_tag(name, challenger, Tag.DECISION_REASON, f"A/B test: {reason}"[:5000])
    reg.move_alias(client, name, Alias.CHALLENGER, None, actor, f"rejected by the A/B test: {reason}")
    evidence = {**dict(details or {}), "rejected_version": challenger, "reason": reason}
    row = _record(settings, Kind.REJECTION, actor, evidence, key=key, versions=[challenger], outcome=DONE)
    return {"rejected_version": challenger, "history_id": row.id}


def rollback(settings: Settings, actor: str, key: str | None = None) -> dict[str, Any]:
    """Undo the last promotion: the aliases as they were, then the routing as it was. One history row."""
    client, _ = _client_and_default(settings)
    name = settings.mlflow.model_name
    before = reg.aliases(client, name)
    if Alias.CHAMPION not in before:
        raise RegistryActionError(f"cannot roll back: {name} has no '{Alias.CHAMPION}' alias")
    promoted = before[Alias.CHAMPION]
    saved = _tags(client, name, promoted).get(Tag.PROMOTED_ROUTING)
    restored = reg.rollback(client, name, actor)
    routing = RoutingConfig.from_dict(json.loads(saved)) if saved else champion_only(name, restored[Alias.CHAMPION])
    if saved:
        client.delete_model_version_tag(name, promoted, Tag.PROMOTED_ROUTING)
    set_live(client, name, routing, actor)
    row = _record(
        settings, Kind.ROLLBACK, actor, {"rolled_back": promoted, "restored": {str(k): v for k, v in restored.items()}},
        key=key, versions=[promoted, restored[Alias.CHAMPION]], outcome=DONE,
    )  # fmt: skip
    return {"rolled_back": promoted, "aliases": {str(k): v for k, v in restored.items()}, "history_id": row.id}


def _record(settings: Settings, kind: str, actor: str, details: Mapping[str, Any], **row: Any) -> Decision:
    """The step's row of the decision history, with the registry state right after it (aliases, live experiment)."""
    return history.record(settings, kind, actor, details, state=current_state(settings), **row)


def _tags(client: Any, name: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(name, version).tags)


def _already_done(settings: Settings, key: str | None) -> dict[str, Any] | None:
    """The result of an earlier try of this very step (same key), when it finished."""
    from airloop.ledger import ledger

    if key is None:
        return None
    row = ledger(settings).get(key)
    if row is None:
        return None
    log.info("%s was done by an earlier try (history #%s)", key, row.id)
    return {**{k: v for k, v in row.payload.items() if k != "state"}, "history_id": row.id}
