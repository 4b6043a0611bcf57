"""The registry contract: alias names, ``airloop.*`` tag keys, decision outcomes and the typed version record.

Every module that reads or writes the MLflow registry takes these names from here; no alias or tag string appears
anywhere else (a test scans the code for them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

TAG_PREFIX = "airloop."


class Alias(StrEnum):
    """The aliases airloop moves; serving and the A/B experiment address models only through them."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"
    PREVIOUS = "previous-champion"


#: Aliases the prediction service loads, in routing order: these are also the experiment's variant names.
SERVED_ALIASES: tuple[Alias, ...] = (Alias.CHAMPION, Alias.CHALLENGER)


class Outcome(StrEnum):
    """What the champion/challenger gate decided for a newly registered version."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"
    REJECTED = "rejected"
    #: Better than the champion, but an experiment with another challenger is running: registered, no alias; the
    #: experiment is not disturbed.
    HELD = "held"


class Tag(StrEnum):
    """Tag keys on model versions (and, for ``ROUTING``, on the registered model)."""

    DATASET_VERSION = "airloop.dataset_version"
    DATASET_SOURCE = "airloop.dataset_source"
    TRAINING_RUN_ID = "airloop.training_run_id"
    AIRFLOW_RUN_ID = "airloop.airflow_run_id"
    GIT_COMMIT = "airloop.git_commit"
    CONFIG_HASH = "airloop.config_hash"
    THRESHOLD = "airloop.threshold"
    #: How the threshold was chosen (JSON ``{"kind": "f1" | "recall" | "alert_rate", "target": ...}``).
    OPERATING_POINT = "airloop.operating_point"
    DECISION = "airloop.decision"
    DECISION_REASON = "airloop.decision_reason"
    DECIDED_BY = "airloop.decided_by"
    DECIDED_AT = "airloop.decided_at"
    METRIC = "airloop.metric"
    CANDIDATE_SCORE = "airloop.candidate_score"
    CHAMPION_SCORE = "airloop.champion_score"
    PROMOTED_FROM = "airloop.promoted_from"
    #: The live experiment (JSON) when this version was promoted: a rollback restores it with the aliases.
    PROMOTED_ROUTING = "airloop.promoted_routing"
    #: The decision-history row (ledger id) of the last promotion, rejection or rollback of this version.
    HISTORY_ID = "airloop.history_id"
    #: On the registered model: the live A/B experiment (JSON) that every serving replica polls.
    ROUTING = "airloop.routing"


AUDIT_PREFIX = "airloop.audit."


def audit_key(stamp: str, action: str) -> str:
    """The tag key of one audit entry: ``airloop.audit.<timestamp>.<action>``."""
    return f"{AUDIT_PREFIX}{stamp}.{action}"


def is_audit(key: str, action: str | None = None) -> bool:
    """Whether a tag key is an audit entry (of ``action`` when given)."""
    return key.startswith(AUDIT_PREFIX) and (action is None or key.endswith(f".{action}"))


@dataclass(frozen=True)
class VersionRecord:
    """What airloop records on a model version when it registers it (all tags, typed)."""

    dataset_version: str = ""
    dataset_source: str = ""
    training_run_id: str = ""
    git_commit: str = ""
    config_hash: str = ""
    threshold: float = 0.5
    decision: str = ""
    decision_reason: str = ""
    decided_by: str = ""
    decided_at: str = ""
    metric: str = ""
    candidate_score: float | None = None
    champion_score: float | None = None
    operating_point: str = ""  # JSON {"kind", "target"}; empty on versions registered before operating points

    def operating_point_view(self) -> dict[str, Any]:
        """The version's operating point: its kind, target and threshold (F1-optimal when not recorded)."""
        chosen = json.loads(self.operating_point) if self.operating_point else {}
        return {"kind": chosen.get("kind", "f1"), "target": chosen.get("target"), "threshold": self.threshold}

    def to_tags(self) -> dict[str, str]:
        """The record as MLflow tags (scores with 6 decimals, None as an empty string)."""
        tags = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_score"):
                value = "" if value is None else f"{value:.6f}"
            tags[Tag[field.name.upper()].value] = str(value)
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> VersionRecord:
        """Read a record back from a version's tags; absent tags take the defaults (old versions stay readable)."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = tags.get(Tag[field.name.upper()].value)
            if raw is None:
                continue
            if field.name == "threshold":
                values[field.name] = float(raw)
            elif field.name.endswith("_score"):
                values[field.name] = float(raw) if raw else None
            else:
                values[field.name] = raw
        return cls(**values)


def dump_aliases(aliases: dict[str, str]) -> str:
    """Aliases as the JSON kept in ``Tag.PROMOTED_FROM``."""
    return json.dumps({str(k): v for k, v in aliases.items()}, sort_keys=True)
