"""Model registry state through aliases only: champion, challenger, previous-champion; promotion, rollback, audit."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from airloop.errors import RegistryActionError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous-champion"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)
PROMOTED_FROM_TAG = "airloop.promoted_from"


def now() -> str:
    """UTC timestamp for audit tags."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def alias_version(client: MlflowClient, model: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def aliases(client: MlflowClient, model: str) -> dict[str, str]:
    """Every airloop alias that is set, alias -> version."""
    found = {alias: alias_version(client, model, alias) for alias in ALIASES}
    return {alias: version for alias, version in found.items() if version is not None}


def _set_aliases(client: MlflowClient, model: str, wanted: dict[str, str]) -> None:
    for alias in ALIASES:
        if alias in wanted:
            client.set_registered_model_alias(model, alias, wanted[alias])
        elif alias_version(client, model, alias) is not None:
            client.delete_registered_model_alias(model, alias)


def audit(client: MlflowClient, model: str, version: str, action: str, actor: str, detail: str = "") -> None:
    """Record an action on a version as a tag ``airloop.audit.<timestamp>.<action>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    client.set_model_version_tag(model, version, f"airloop.audit.{stamp}.{action}", f"{actor}: {detail}".strip())
    log.info("%s v%s: %s by %s %s", model, version, action, actor, detail)


def promote(client: MlflowClient, model: str, actor: str) -> dict[str, str]:
    """challenger -> champion; the old champion keeps ``previous-champion``. Returns the new aliases."""
    before = aliases(client, model)
    if CHALLENGER not in before:
        raise RegistryActionError(f"cannot promote: {model} has no {CHALLENGER!r} alias (aliases: {before})")
    new = {CHAMPION: before[CHALLENGER]}
    if CHAMPION in before:
        new[PREVIOUS] = before[CHAMPION]
    client.set_model_version_tag(model, new[CHAMPION], PROMOTED_FROM_TAG, json.dumps(before, sort_keys=True))
    _set_aliases(client, model, new)
    audit(client, model, new[CHAMPION], "promoted", actor, f"challenger -> champion (was {before})")
    if PREVIOUS in new:
        audit(client, model, new[PREVIOUS], "demoted", actor, f"champion -> {PREVIOUS}")
    return new


def rollback(client: MlflowClient, model: str, actor: str) -> dict[str, str]:
    """Undo the last promotion: restore the aliases recorded on the current champion when it was promoted.

    Without such a record, ``previous-champion`` becomes ``champion`` again.
    """
    before = aliases(client, model)
    if CHAMPION not in before:
        raise RegistryActionError(f"cannot roll back: {model} has no {CHAMPION!r} alias")
    current = client.get_model_version(model, before[CHAMPION])
    recorded = current.tags.get(PROMOTED_FROM_TAG)
    if recorded:
        restored = json.loads(recorded)
    elif PREVIOUS in before:
        restored = {CHAMPION: before[PREVIOUS]}
    else:
        raise RegistryActionError(f"cannot roll back: {model} has no {PREVIOUS!r} alias and no promotion record")
    if CHAMPION not in restored:
        raise RegistryActionError(f"cannot roll back: before v{before[CHAMPION]} was promoted there was no champion")
    _set_aliases(client, model, restored)
    client.delete_model_version_tag(model, before[CHAMPION], PROMOTED_FROM_TAG)
    audit(client, model, before[CHAMPION], "rolled_back", actor, f"aliases restored to {restored}")
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
        metric_name = v.tags.get("airloop.metric", "")
        rows.append(
            VersionRow(
                version=str(v.version),
                aliases=",".join(by_version.get(str(v.version), [])),
                decision=v.tags.get("airloop.decision", ""),
                metric=f"{metric_name}={v.tags.get('airloop.candidate_score', '')}" if metric_name else "",
                dataset_version=v.tags.get("airloop.dataset_version", ""),
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
