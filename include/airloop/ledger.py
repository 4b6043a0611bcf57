"""The decision ledger: one row per decision (drift verdict, published dataset, training, retrain, ...) and its outcome.

Every decision is recorded under a natural idempotency ``key`` (``"drift:<model>:<window_end>"``,
``"train:<dataset_version>"``) that the ``decisions`` table holds UNIQUE, so recording the same decision twice, even
from two processes at once, leaves one row. Its outcome (the DAG run it started, or why it was skipped) is set once:
the first outcome sticks and a different second one raises ``OutcomeConflict``.

Exactly-once triggering: a decision starts its DAG run under ``run_id_for(key, prefix)``, a run id derived from the
key alone. Airflow refuses a second run with the same id (``DagRunAlreadyExists``, HTTP 409), so a re-run of the
deciding task cannot start a second run.

Each model has its own ledger in the one table: a ``Ledger`` bound to a model (``ledger(settings)`` binds the settings'
model) records, reads and lists only that model's rows, and its keys are unique per model, so two models never share
a key or a derived run id.

The store is any SQLAlchemy URL: a SQLite file under the runtime home by default, PostgreSQL by URL
(``postgresql+psycopg2://user@host/db``). The table is created on first use; there are no migrations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.types import TypeDecorator

from airloop.errors import AirloopError, FinalError

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect, RowMapping

    from airloop.settings import Settings

LEDGER_FILE = "ledger.db"
# Airflow's default [scheduler] allowed_run_id_pattern, and its run id column length (ID_LEN).
AIRFLOW_RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.~:+-]+$")
AIRFLOW_RUN_ID_MAX = 250
RUN_ID_HASH_CHARS = 16
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
KEY_MAX = 512
SQLITE_BUSY_TIMEOUT_S = 30.0


class Kind(StrEnum):
    """The kinds of decision the ledger knows; ``record`` also takes any other lower_snake_case kind."""

    DRIFT_VERDICT = "drift_verdict"
    RETRAIN_STARTED = "retrain_started"
    RETRAIN_SKIPPED = "retrain_skipped"
    DATASET_PUBLISHED = "dataset_published"
    TRAINING_STARTED = "training_started"
    TRAINING_SKIPPED = "training_skipped"
    EXPERIMENT_STARTED = "experiment_started"
    ROUTING_CHANGED = "routing_changed"
    EVALUATION = "evaluation"
    PROMOTION = "promotion"
    REJECTION = "rejection"
    ROLLBACK = "rollback"
    MODEL_REGISTERED = "model_registered"
    RETRAIN = "retrain"


class Resolution(StrEnum):
    """What came of a decision: the ``outcome`` column (its ``outcome_detail`` says which run or why)."""

    RETRAIN_STARTED = "retrain_started"  # detail: the retrain DAG run id
    RETRAIN_SKIPPED = "retrain_skipped"  # detail: cool-down, a retrain already running, no retrain DAG deployed
    NO_ACTION = "no_action"  # no drift: nothing to do
    NO_VERDICT = "no_verdict"  # too few rows for a verdict: the window stays open
    ALERTED = "alerted"  # alert rules only (or drift on a dataset before training): a person looks, no retrain
    TRAINING_STARTED = "training_started"  # detail: the training DAG run id
    TRAINING_SKIPPED = "training_skipped"  # detail: superseded by a newer version before training started


class LedgerError(AirloopError):
    """The decision ledger refused an operation; the message names the key and what was there."""


class InvalidDecision(LedgerError, FinalError, ValueError):
    """A decision, query or run id prefix the ledger cannot store or answer (naive time, non-JSON payload, ...)."""


class DecisionNotFound(LedgerError, FinalError):
    """No decision is recorded under the key."""


class DecisionConflict(LedgerError, FinalError):
    """A key is already recorded as a different kind of decision: two decisions were given one key."""


class OutcomeConflict(LedgerError, FinalError):
    """A decision already has an outcome and a different one was set: it would have been acted on twice."""


class _UtcDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive UTC, PostgreSQL ``timestamptz``)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _utc(value, "timestamp")
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False, index=True, server_default=""),
    Column("kind", String(64), nullable=False, index=True),
    Column("key", String(KEY_MAX), nullable=False),
    Column("subject", String(256), nullable=True, index=True),
    Column("payload", JSON, nullable=False),
    Column("outcome", String(64), nullable=True),
    Column("outcome_detail", Text, nullable=True),
    Column("outcome_at", _UtcDateTime, nullable=True),
    Column("decided_by", String(256), nullable=False),
    Column("decided_at", _UtcDateTime, nullable=False, index=True),
    UniqueConstraint("model", "key", name="uq_decisions_model_key"),
)


@dataclass(frozen=True)
class Decision:
    """One ledger row: what was decided, about what, by whom and when, and what came of it."""

    id: int
    kind: str
    key: str
    subject: str | None
    payload: dict[str, Any]
    outcome: str | None
    outcome_detail: str | None
    outcome_at: datetime | None
    decided_by: str
    decided_at: datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> Decision:
        """A ``Decision`` from a ``decisions`` row mapping."""
        return cls(**{field.name: row[field.name] for field in dataclasses.fields(cls)})


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidDecision(f"{what} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _check_json(value: Any, where: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDecision(f"{where} is not plain JSON (no NaN/inf, datetimes as ISO strings): {exc}") from exc


def _json_serializer(value: Any) -> str:
    # allow_nan=False: PostgreSQL's json type refuses NaN, so SQLite must too or the backends would disagree.
    return json.dumps(value, allow_nan=False, sort_keys=True)


def run_id_for(key: str, prefix: str) -> str:
    """The DAG run id that acts on the decision ``key``: the same key always names the same run.

    Args:
        key: the decision's ledger key.
        prefix: what the run does (``"retrain"``, ``"train"``); shown first in the Airflow UI.

    Returns:
        ``f"{prefix}__{sha256(key)[:16]}"``, valid under Airflow's default ``allowed_run_id_pattern``.
    """
    if not key:
        raise InvalidDecision("a run id needs a non-empty decision key")
    if not AIRFLOW_RUN_ID_PATTERN.fullmatch(prefix):
        raise InvalidDecision(f"run id prefix {prefix!r} must match Airflow's {AIRFLOW_RUN_ID_PATTERN.pattern}")
    run_id = f"{prefix}__{hashlib.sha256(key.encode()).hexdigest()[:RUN_ID_HASH_CHARS]}"
    if len(run_id) > AIRFLOW_RUN_ID_MAX:
        raise InvalidDecision(
            f"run id prefix {prefix[:40]!r}... makes a run id of {len(run_id)} > {AIRFLOW_RUN_ID_MAX}"
        )
    return run_id


def default_url(home: Path) -> str:
    """The default store: a SQLite file ``ledger.db`` in the runtime home."""
    return f"sqlite:///{Path(home) / LEDGER_FILE}"


class Ledger:
    """The decision ledger of ``model`` in the store at ``url`` (any SQLAlchemy URL); the table is created on first
    use. ``model`` "" is the ledger of no particular model."""

    def __init__(self, url: str, model: str = "") -> None:
        self.url = make_url(url)
        self.model = model
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Ledger({self.url.render_as_string(hide_password=True)!r}, model={self.model!r})"

    @property
    def engine(self) -> Engine:
        """The engine, created (with the table) on first use."""
        with self._lock:
            if self._engine is None:
                self._engine = self._connect()
            return self._engine

    def _connect(self) -> Engine:
        # pre_ping: the engine lives for the process, and a database that restarted must not fail the next call.
        options: dict[str, Any] = {"json_serializer": _json_serializer, "pool_pre_ping": True}
        if self.url.get_backend_name() == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            # Concurrent writers wait for the file lock instead of failing with "database is locked".
            options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        engine = create_engine(self.url, **options)
        try:
            metadata.create_all(engine)
        except (IntegrityError, OperationalError, ProgrammingError):
            # Another process created the table between our check and our CREATE; the second check sees it.
            metadata.create_all(engine)
        return engine

    def close(self) -> None:
        """Release the connections (the store is reopened on next use)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def record(
        self,
        kind: str,
        key: str,
        subject: str | None,
        payload: Mapping[str, Any],
        decided_by: str,
        decided_at: datetime | None = None,
    ) -> Decision:
        """Record a decision once: a second call with the same key returns the first row and inserts nothing.

        Args:
            kind: what was decided (a ``Kind``, or any lower_snake_case name).
            key: the natural idempotency key, e.g. ``"drift:<model>:2026-11-25T10:00:00+00:00"``.
            subject: what it is about (a dataset or model version), for ``rows(subject=...)``.
            payload: plain JSON: window, scores, verdict.
            decided_by: who or what decided (``"dag:<model>_drift/task:detect"``, a user name).
            decided_at: when (UTC-aware); now when omitted.

        Returns:
            The recorded decision, as first recorded.
        """
        if not KIND_PATTERN.fullmatch(kind):
            raise InvalidDecision(f"decision kind {kind!r} must be lower_snake_case, like {Kind.DRIFT_VERDICT.value!r}")
        if not key or len(key) > KEY_MAX:
            raise InvalidDecision(f"decision key must be 1-{KEY_MAX} characters, got {len(key)}: {key[:80]!r}")
        if not decided_by:
            raise InvalidDecision(f"decision {key!r} needs a decided_by (who or what decided)")
        payload = dict(payload)
        _check_json(payload, f"payload of decision {key!r}")
        moment = _utc(decided_at, f"decided_at of {key!r}") if decided_at else datetime.now(UTC)
        values = {
            "model": self.model,
            "kind": kind,
            "key": key,
            "subject": subject,
            "payload": payload,
            "decided_by": decided_by,
            "decided_at": moment,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(decisions.insert().values(**values))
        except IntegrityError:
            # The UNIQUE key is the arbiter: whoever inserted first (maybe another process) wrote the row.
            existing = self.get(key)
            if existing is None:
                raise
        else:
            existing = self.get(key)
            if existing is None:  # pragma: no cover - the insert just committed
                raise DecisionNotFound(f"decision {key!r} was inserted into {self!r} but cannot be read back")
        if existing.kind != kind:
            raise DecisionConflict(
                f"key {key!r} is already recorded as a {existing.kind!r} decision (id {existing.id}, by"
                f" {existing.decided_by} at {existing.decided_at.isoformat()}), not {kind!r}"
            )
        return existing

    def get(self, key: str) -> Decision | None:
        """The decision recorded under ``key``, or None."""
        with self.engine.connect() as conn:
            found = select(decisions).where(decisions.c.model == self.model, decisions.c.key == key)
            row = conn.execute(found).mappings().first()
        return Decision.from_row(row) if row is not None else None

    def set_outcome(self, key: str, outcome: str, detail: str | None = None) -> Decision:
        """Set what came of a decision (``"started"`` with the run id, ``"skipped"`` with the reason), once.

        Setting the same outcome and detail again is a no-op; anything different raises ``OutcomeConflict``
        naming both, since it means the decision was acted on twice.
        """
        if not outcome:
            raise InvalidDecision(f"outcome of decision {key!r} must be non-empty")
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(decisions)
                .where(decisions.c.model == self.model, decisions.c.key == key, decisions.c.outcome.is_(None))
                .values(outcome=outcome, outcome_detail=detail, outcome_at=datetime.now(UTC))
            ).rowcount
        existing = self.get(key)
        if existing is None:
            raise DecisionNotFound(f"no decision with key {key!r} in {self!r} to set outcome {outcome!r} on")
        if not changed and (existing.outcome, existing.outcome_detail) != (outcome, detail):
            when = existing.outcome_at.isoformat() if existing.outcome_at else "?"
            raise OutcomeConflict(
                f"decision {key!r} already has outcome {existing.outcome!r} ({existing.outcome_detail!r}, set at"
                f" {when}); refusing {outcome!r} ({detail!r})"
            )
        return existing

    def rows(
        self,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        subject: str | None = None,
        limit: int | None = None,
    ) -> list[Decision]:
        """Decisions newest first, filtered by kind, subject and ``since <= decided_at < until``; the newest
        ``limit`` only when given (in SQL)."""
        query = (
            select(decisions)
            .where(decisions.c.model == self.model)
            .order_by(decisions.c.decided_at.desc(), decisions.c.id.desc())
        )
        if kind is not None:
            query = query.where(decisions.c.kind == kind)
        if subject is not None:
            query = query.where(decisions.c.subject == subject)
        if since is not None:
            query = query.where(decisions.c.decided_at >= _utc(since, "since"))
        if until is not None:
            query = query.where(decisions.c.decided_at < _utc(until, "until"))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [Decision.from_row(row) for row in conn.execute(query).mappings()]

    def at(self, moment: datetime, kind: str | None = None, limit: int | None = None) -> list[Decision]:
        """The ledger as it stood at ``moment``: decisions made by then, newest first, outcomes set later blanked;
        the newest ``limit`` only when given (in SQL)."""
        moment = _utc(moment, "moment")
        query = (
            select(decisions)
            .where(decisions.c.model == self.model, decisions.c.decided_at <= moment)
            .order_by(decisions.c.decided_at.desc(), decisions.c.id.desc())
        )
        if kind is not None:
            query = query.where(decisions.c.kind == kind)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            found = [Decision.from_row(row) for row in conn.execute(query).mappings()]
        return [
            dataclasses.replace(d, outcome=None, outcome_detail=None, outcome_at=None)
            if d.outcome_at is not None and d.outcome_at > moment
            else d
            for d in found
        ]

    def pending(self, kind: str | None = None) -> list[Decision]:
        """Decisions without an outcome yet, newest first."""
        query = (
            select(decisions)
            .where(decisions.c.model == self.model, decisions.c.outcome.is_(None))
            .order_by(decisions.c.decided_at.desc(), decisions.c.id.desc())
        )
        if kind is not None:
            query = query.where(decisions.c.kind == kind)
        with self.engine.connect() as conn:
            return [Decision.from_row(row) for row in conn.execute(query).mappings()]


def ledger_url(settings: Settings) -> str:
    """The configured ledger URL, else the SQLite file under the runtime home."""
    return getattr(settings, "ledger_url", None) or default_url(settings.home)


_LEDGERS: dict[tuple[int, str, str], Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def ledger(settings: Settings) -> Ledger:
    """The decision ledger the settings point at: one per store and model in a process (its engine and connection
    pool reused by every call, e.g. each /v1/history request), never shared across a fork."""
    key = (os.getpid(), ledger_url(settings), getattr(settings, "model", None) or "")
    with _LEDGERS_LOCK:
        found = _LEDGERS.get(key)
        if found is None:
            found = _LEDGERS[key] = Ledger(key[1], key[2])
        return found
