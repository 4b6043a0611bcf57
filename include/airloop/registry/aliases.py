"""Model registry state through aliases only: champion, challenger, previous-champion; promotion, rollback, audit."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from airloop.errors import RegistryActionError
from airloop.registry.contract import Alias, Tag, VersionRecord, audit_key, dump_aliases

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS = Alias.CHAMPION, Alias.CHALLENGER, Alias.PREVIOUS
ALIASES: tuple[Alias, ...] = tuple(Alias)


def now() -> str:
    """UTC timestamp for audit tags."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def show(found: dict[Alias, str]) -> str:
    """Aliases as a person reads them: ``champion=v2, challenger=v3``."""
    return ", ".join(f"{alias}=v{version}" for alias, version in found.items()) or "none"


def alias_version(client: MlflowClient, model: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def aliases(client: MlflowClient, model: str) -> dict[Alias, str]:
    """Every airloop alias that is set, alias -> version."""
    found = {alias: alias_version(client, model, alias) for alias in ALIASES}
    return {alias: version for alias, version in found.items() if version is not None}


def audit(client: MlflowClient, model: str, version: str, action: str, actor: str, detail: str = "") -> None:
    """Record an action on a version as a tag ``airloop.audit.<timestamp>.<action>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    client.set_model_version_tag(model, version, audit_key(stamp, action), f"{actor}: {detail}".strip())
    log.info("%s v%s: %s by %s %s", model, version, action, actor, detail)


def move_alias(
    client: MlflowClient, model: str, alias: Alias, version: str | None, actor: str, reason: str = ""
) -> str | None:
    """Point ``alias`` at ``version`` (None removes it) and record it in the audit tags; returns the old version.

    Nothing is written when the alias already points there.
    """
    old = alias_version(client, model, alias)
    if old == (None if version is None else str(version)):
        return old
    if version is None:
        client.delete_registered_model_alias(model, alias)
        audit(client, model, old, f"alias_{alias}_removed", actor, reason)
    else:
        client.set_registered_model_alias(model, alias, str(version))
        audit(client, model, str(version), f"alias_{alias}_set", actor, f"{reason} (was v{old})" if old else reason)
    return old


def _set_aliases(client: MlflowClient, model: str, wanted: dict[Alias, str], actor: str, reason: str) -> None:
    for alias in ALIASES:
        move_alias(client, model, alias, wanted.get(alias), actor, reason)


def promote(client: MlflowClient, model: str, actor: str) -> dict[str, str]:
    """challenger -> champion; the old champion keeps ``previous-champion``. Returns the new aliases."""
    before = aliases(client, model)
    if CHALLENGER not in before:
        raise RegistryActionError(f"cannot promote: {model} has no '{CHALLENGER}' alias (aliases: {show(before)})")
    new = {CHAMPION: before[CHALLENGER]}
    if CHAMPION in before:
        new[PREVIOUS] = before[CHAMPION]
    client.set_model_version_tag(model, new[CHAMPION], Tag.PROMOTED_FROM, dump_aliases(before))
    _set_aliases(client, model, new, actor, "promotion")
    audit(client, model, new[CHAMPION], "promoted", actor, f"challenger -> champion (was {show(before)})")
    if PREVIOUS in new:
        audit(client, model, new[PREVIOUS], "demoted", actor, f"champion -> {PREVIOUS}")
    return new


def rollback(client: MlflowClient, model: str, actor: str) -> dict[str, str]:
    """Undo the last promotion: restore the aliases recorded on the current champion when it was promoted.

    Without such a record, ``previous-champion`` becomes ``champion`` again.
    """
    before = aliases(client, model)
    if CHAMPION not in before:
        raise RegistryActionError(f"cannot roll back: {model} has no '{CHAMPION}' alias")
    current = client.get_model_version(model, before[CHAMPION])
    recorded = current.tags.get(Tag.PROMOTED_FROM)
    if recorded:
        restored = {Alias(k): v for k, v in json.loads(recorded).items()}
    elif PREVIOUS in before:
        restored = {CHAMPION: before[PREVIOUS]}
    else:
        raise RegistryActionError(f"cannot roll back: {model} has no '{PREVIOUS}' alias and no promotion record")
    if CHAMPION not in restored:
        raise RegistryActionError(f"cannot roll back: before v{before[CHAMPION]} was promoted there was no champion")
    _set_aliases(client, model, restored, actor, "rollback")
    client.delete_model_version_tag(model, before[CHAMPION], Tag.PROMOTED_FROM)
    audit(client, model, before[CHAMPION], "rolled_back", actor, f"aliases restored to {show(restored)}")
    audit(client, model, restored[CHAMPION], "restored_champion", actor, f"after rollback of v{before[CHAMPION]}")
    return restored


@dataclass(frozen=True)
class VersionRow:
    """One line of the registry table."""

    version: str
    aliases: str
    decision: str
    metric: str
    dataset_version: str
    created: str


def state(client: MlflowClient, model: str) -> list[VersionRow]:
    """Every version of ``model`` with its aliases, gate decision, test metric and dataset, newest first."""
    try:
        versions = client.search_model_versions(f"name = '{model}'")
    except MlflowException:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases(client, model).items():
        by_version.setdefault(version, []).append(alias)
    rows = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        record = VersionRecord.from_tags(v.tags)
        score = "" if record.candidate_score is None else f"{record.candidate_score:.6f}"
        rows.append(
            VersionRow(
                version=str(v.version),
                aliases=",".join(by_version.get(str(v.version), [])),
                decision=record.decision,
                metric=f"{record.metric}={score}" if record.metric else "",
                dataset_version=record.dataset_version,
                created=datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
            )
        )
    return rows


def format_table(rows: list[VersionRow]) -> str:
    """The registry state as a fixed-width text table."""
    header = ("version", "aliases", "decision", "metric", "dataset_version", "created")
    lines = [header, *((r.version, r.aliases, r.decision, r.metric, r.dataset_version, r.created) for r in rows)]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def version_record(client: MlflowClient, model: str, version: str) -> VersionRecord:
    """The typed record airloop wrote on a version (defaults for tags it lacks)."""
    return VersionRecord.from_tags(client.get_model_version(model, version).tags)


def model_state(client: MlflowClient, model: str) -> tuple[dict[Alias, str], dict[str, str]]:
    """The airloop aliases and the registered model's tags in one registry call ({} and {} when it does not exist).

    Other registry errors (unreachable server, permissions) propagate.
    """
    try:
        registered = client.get_registered_model(model)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}, {}
        raise
    found = {Alias(a): str(v) for a, v in (registered.aliases or {}).items() if a in set(ALIASES)}
    return found, dict(registered.tags or {})
