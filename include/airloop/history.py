"""The decision history: every change to what serves, and why, in the decision ledger, answerable at any time T.

Each change of aliases or routing (a registration by the gate, an experiment started, a routing change, an
evaluation's promotion or rejection, a rollback) is recorded by ``record`` as one ledger row whose payload holds the
registry state right after it: the aliases and the live experiment, which the caller reads with
``airloop.experiments.live.current_state`` (the history records decisions; it does not read the live routing itself,
so ``experiments`` can record into it without a circle). ``state_at(T)`` is then the payload of the newest
such row at or before T: "which version was champion, with which routing, at T", which MLflow alone cannot answer
(it keeps only the current aliases). The row id is tagged on the versions it touched (``Tag.HISTORY_ID``).

Read by ``python -m airloop history [--at TIME]`` and ``GET /v1/history?at=TIME``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airloop.ledger import Decision, ledger
from airloop.settings import Settings
from airloop.times import parse_time

log = logging.getLogger(__name__)

STATE = "state"  # the payload key that holds the registry state after a change


@dataclass(frozen=True)
class ServingState:
    """What served at one moment: aliases (alias -> version) and the live experiment, and the row that set them."""

    at: str
    aliases: dict[str, str]
    routing: dict[str, Any]
    decision_id: int
    decision_kind: str
    decided_by: str
    decided_at: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return dict(self.__dict__)


def record(
    settings: Settings,
    kind: str,
    actor: str,
    details: Mapping[str, Any] | None = None,
    *,
    state: Mapping[str, Any],
    key: str | None = None,
    versions: Iterable[str] = (),
    outcome: str | None = None,
) -> Decision:
    """Record a change of what serves, with the registry state right after it.

    Args:
        settings: airloop settings.
        kind: a ``ledger.Kind`` (promotion, rejection, rollback, routing_changed, experiment_started, ...).
        actor: who or what decided.
        details: the evidence: numbers, reasons, run ids (plain JSON).
        state: the registry state right after the change (``airloop.experiments.live.current_state``).
        key: the idempotency key (a retried task passes the same one); a fresh one when None.
        versions: model versions to tag with the row id (``Tag.HISTORY_ID``).
        outcome: the row's outcome, set at once (e.g. ``"done"``).
    """
    from airloop.registry.client import connect
    from airloop.registry.contract import Tag

    name = settings.mlflow.model_name
    payload = {**dict(details or {}), STATE: dict(state)}
    key = key or f"{kind}:{name}:{datetime.now(UTC).isoformat()}:{uuid.uuid4().hex[:8]}"
    book = ledger(settings)
    row = book.record(kind, key, name, payload, actor)
    if outcome and row.outcome is None:
        row = book.set_outcome(key, outcome)
    client = connect(settings)
    for version in versions:
        client.set_model_version_tag(name, str(version), Tag.HISTORY_ID, str(row.id))
    log.info("history #%s %s by %s: %s", row.id, kind, actor, json.dumps(payload[STATE], sort_keys=True))
    return row


def state_at(settings: Settings, moment: datetime | str) -> ServingState | None:
    """What served at ``moment``: the state recorded by the newest change at or before it (None before any)."""
    when = parse_time(moment)
    for row in ledger(settings).at(when):
        state = row.payload.get(STATE)
        if isinstance(state, Mapping) and row.subject == settings.mlflow.model_name:
            return ServingState(
                at=when.astimezone(UTC).isoformat(),
                aliases=dict(state.get("aliases") or {}),
                routing=dict(state.get("routing") or {}),
                decision_id=row.id,
                decision_kind=row.kind,
                decided_by=row.decided_by,
                decided_at=row.decided_at.isoformat(),
            )
    return None


def rows(
    settings: Settings, at: datetime | str | None = None, kind: str | None = None, limit: int | None = None
) -> list[Decision]:
    """Every decision, newest first (as the ledger stood at ``at`` when given), optionally of one kind."""
    book, limit = ledger(settings), limit or None  # 0 or None: every row, as before
    return book.at(parse_time(at), kind=kind, limit=limit) if at is not None else book.rows(kind=kind, limit=limit)


def summary(row: Decision) -> str:
    """One line about a decision: its verdict, numbers or the state it left."""
    payload = row.payload
    parts = []
    for key in ("verdict", "action", "decision", "reason"):
        if payload.get(key) not in (None, ""):
            parts.append(f"{payload[key]}")
    state = payload.get(STATE)
    if isinstance(state, Mapping):
        aliases = ", ".join(f"{k}=v{v}" for k, v in sorted((state.get("aliases") or {}).items()))
        weights = (state.get("routing") or {}).get("weights") or {}
        split = "/".join(f"{k} {v:g}" for k, v in weights.items())
        parts.append(f"[{aliases}; {split}]")
    return " ".join(parts)[:200]


def format_table(found: list[Decision]) -> str:
    """The history as a table a person reads: newest first."""
    lines = [f"{'id':>4}  {'decided at (UTC)':<20} {'kind':<18} {'outcome':<17} {'by':<34} what"]
    for row in found:
        outcome = row.outcome or "-"
        lines.append(
            f"{row.id:>4}  {row.decided_at:%Y-%m-%d %H:%M:%S}  {row.kind:<18} {outcome:<17} "
            f"{row.decided_by[:34]:<34} {summary(row)}"
        )
    return "\n".join(lines)
