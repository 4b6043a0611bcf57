"""The ETL → training hand-off, exactly once: every published dataset version ends in one training run or a skip.

Airflow can collapse Asset events into one run (or none) while ``<model>_train`` is busy, so the Asset stays for
lineage and the UI only. Instead, ``<model>_etl`` records each new version in the decision ledger
(``published``) and triggers ``<model>_train`` under a run id derived from the version (``training_run_id``): a
retried trigger cannot start a second run. The training run names its version in its conf and ``claim``s it before it
reads anything: the ledger row's outcome becomes the run that trains it, or, when a newer version was published
before this one's hand-off run started, "superseded by version X before training started".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airloop.ledger import Decision, Kind, Resolution, ledger, run_id_for
from airloop.settings import Settings

log = logging.getLogger(__name__)

TRAIN_RUN_PREFIX = "train"


def dataset_key(settings: Settings, version: str) -> str:
    """The ledger key of a published dataset version."""
    return f"dataset:{settings.data.dataset_name}:{version}"


def dataset_subject(settings: Settings) -> str:
    """The ledger subject shared by every version of the configured dataset."""
    return f"dataset:{settings.data.dataset_name}"


def training_run_id(settings: Settings, version: str) -> str:
    """The ``<model>_train`` run id that trains ``version`` after its publication."""
    return run_id_for(dataset_key(settings, version), TRAIN_RUN_PREFIX)


def _record(settings: Settings, version: str, payload: Mapping[str, Any], actor: str) -> Decision:
    return ledger(settings).record(
        Kind.DATASET_PUBLISHED, dataset_key(settings, version), dataset_subject(settings), dict(payload), actor
    )


def published(settings: Settings, result: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """Record a newly published version; returns the training run id and conf that hand it to training.

    Args:
        settings: airloop settings.
        result: the publish result (``version``, ``rows``, ``url``).
        actor: who published it (``airflow:<model>_etl/<run id>``).
    """
    version = str(result["version"])
    row = _record(
        settings, version, {"version": version, "rows": int(result["rows"]), "url": str(result["url"])}, actor
    )
    run_id = training_run_id(settings, version)
    log.info("dataset version %s recorded (ledger id %s): training run %s", version, row.id, run_id)
    return {"version": version, "ledger_id": row.id, "train_run_id": run_id, "conf": {"dataset_version": version}}


def claim(settings: Settings, version: str | None, run_id: str, actor: str) -> dict[str, Any]:
    """Decide whether the training run ``run_id`` trains ``version`` (the latest published when None).

    Returns:
        ``{"version", "train": bool, "reason"}``. A hand-off run whose version was superseded before it started
        returns ``train=False`` and records the skip; every other run trains and, when the version had no outcome
        yet, records itself as the run that trains it.
    """
    from airloop.data.store import DatasetNotFound, dataset_store

    store = dataset_store(settings)
    version = version or store.latest()
    if version is None:
        raise DatasetNotFound(f"no dataset published at {store.url()}: run {settings.spec.dag_id('etl')} first")
    book = ledger(settings)
    key = dataset_key(settings, version)
    row = book.get(key)
    if row is None:  # published before the ledger existed, or by hand: record it now
        meta = store.metadata(version)
        payload = {"version": version, "rows": meta.get("rows"), "url": store.url(version)}
        row = _record(settings, version, payload, actor)
    handoff_run = run_id == training_run_id(settings, version)
    if row.outcome is None and handoff_run:
        newest = book.rows(kind=Kind.DATASET_PUBLISHED, subject=dataset_subject(settings))
        if newest and newest[0].id > row.id:
            newer = newest[0].payload.get("version")
            row = book.set_outcome(
                key, Resolution.TRAINING_SKIPPED, f"superseded by version {newer} before training started"
            )
    if row.outcome is None:
        row = book.set_outcome(key, Resolution.TRAINING_STARTED, run_id)
    if row.outcome == Resolution.TRAINING_SKIPPED and handoff_run:
        log.info("dataset version %s: %s", version, row.outcome_detail)
        return {"version": version, "train": False, "reason": row.outcome_detail}
    if row.outcome_detail != run_id:
        reason = f"requested by run {run_id}; the ledger has {row.outcome} ({row.outcome_detail})"
    else:
        reason = f"hand-off of version {version}" if handoff_run else f"requested by run {run_id}"
    log.info("dataset version %s: training (%s)", version, reason)
    return {"version": version, "train": True, "reason": reason}
