"""Versioned dataset store: content-hashed Parquet versions with metadata, published atomically; and the quarantine.

Both live on a ``Storage`` (a local folder or ``s3://``): a version is ``<name>/<version>/{data.parquet,
metadata.json}`` published as one folder, then ``LATEST`` names it. ``dataset_store(settings)`` is the store every
caller uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from airloop.errors import FinalError
from airloop.storage import Storage

if TYPE_CHECKING:
    from airloop.settings import Settings

log = logging.getLogger(__name__)

DATA_FILE = "data.parquet"
METADATA_FILE = "metadata.json"
LATEST_FILE = "LATEST"
VALIDATION_RESULT_FILE = "validation_result.json"
REASON_FILE = "reason.txt"
RECORD_FILE = "record.json"


class DatasetNotFound(FinalError, LookupError):
    """The requested dataset version is not in the store; the message names where it was looked for."""


@dataclass(frozen=True)
class PublishResult:
    """What a publish did: the version, where it lives (URL), and whether this call created it."""

    version: str
    url: str
    created: bool
    rows: int


def content_version(frame: pd.DataFrame) -> str:
    """A stable content hash of a frame: column names, dtypes and every value, independent of the index."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


class DatasetStore:
    """Published versions of one dataset under ``<root>/<version>/`` with a ``LATEST`` pointer."""

    def __init__(self, storage: Storage | str | Path) -> None:
        self.storage = storage if isinstance(storage, Storage) else Storage.from_url(storage)

    def url(self, version: str | None = None) -> str:
        """Where the store (or one version of it) lives: a local path or ``s3://`` URL."""
        return self.storage.url(version) if version else self.storage.url()

    def exists(self, version: str) -> bool:
        """Whether this version has been published completely."""
        return self.storage.is_published(version) and self.storage.is_file(version, METADATA_FILE)

    def versions(self) -> list[str]:
        """Published versions, oldest first."""
        found = [v for v in self.storage.published_dirs() if self.storage.is_file(v, METADATA_FILE)]
        return sorted(found, key=lambda v: self.metadata(v)["created_at"])

    def latest(self) -> str | None:
        """The most recently published version, or None."""
        try:
            return self.storage.read_text(LATEST_FILE).strip() or None
        except FileNotFoundError:
            return None

    def metadata(self, version: str) -> dict[str, Any]:
        """The metadata written with a version."""
        if not self.exists(version):
            raise DatasetNotFound(f"dataset version {version!r} not found at {self.url()}")
        return self.storage.read_json(version, METADATA_FILE)

    def load(self, version: str | None = None) -> pd.DataFrame:
        """Read a version (the latest when None)."""
        version = version or self.latest()
        if version is None:
            raise DatasetNotFound(f"no dataset published at {self.url()}: run its model's <model>_etl DAG first")
        if not self.exists(version):
            raise DatasetNotFound(f"dataset version {version!r} not found at {self.url()}")
        return self.storage.read_parquet(version, DATA_FILE)

    def publish(self, frame: pd.DataFrame, metadata: dict[str, Any]) -> PublishResult:
        """Write ``frame`` as a new version unless the same content is already published (then write nothing)."""
        version = content_version(frame)
        url = self.url(version)
        if self.exists(version):
            run_id = metadata.get("airflow_run_id")
            if run_id is not None and self.metadata(version).get("airflow_run_id") == run_id:
                # This run published it and died before it could report so: finish the job, and say it is new so the
                # retry still emits the dataset event.
                self.storage.write_text(version + "\n", LATEST_FILE)
                log.info("dataset version %s was published by this run (%s) before a retry", version, run_id)
                return PublishResult(version, url, created=True, rows=len(frame))
            log.info("dataset version %s already published at %s: nothing new to publish", version, url)
            return PublishResult(version, url, created=False, rows=len(frame))
        full = {
            **metadata,
            "version": version,
            "rows": len(frame),
            "schema": {str(c): str(t) for c, t in frame.dtypes.items()},
            "created_at": datetime.now(UTC).isoformat(),
        }
        try:
            with self.storage.publishing(version) as folder:
                folder.write_parquet(frame, DATA_FILE)
                folder.write_json(full, METADATA_FILE)
        except FileExistsError:
            log.info("dataset version %s was published concurrently at %s: nothing new to publish", version, url)
            return PublishResult(version, url, created=False, rows=len(frame))
        self.storage.write_text(version + "\n", LATEST_FILE)  # only once the version is complete
        log.info("published dataset version %s (%d rows) at %s", version, len(frame), url)
        return PublishResult(version, url, created=True, rows=len(frame))


def dataset_store(settings: Settings) -> DatasetStore:
    """The store of the configured dataset, on the configured runtime storage."""
    return DatasetStore(settings.layout.datasets(settings.data.dataset_name))


@dataclass(frozen=True)
class QuarantineRecord:
    """Where a rejected batch was put (URL) and why."""

    url: str
    reason: str


def quarantine(
    target: Storage, staging: Storage, batch: str, validation_result: dict[str, Any], reason: str, stage: str
) -> QuarantineRecord:
    """Move the staged file ``batch`` into ``target/<timestamp>-<stage>-<id>/`` beside its validation result and reason.

    The folder is published all at once; only then is the batch removed from staging, so it always exists somewhere.
    """
    data = staging.read_bytes(batch)
    name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{stage}-{uuid.uuid4().hex[:8]}"
    record = QuarantineRecord(target.url(name), reason)
    with target.publishing(name) as folder:
        folder.write_bytes(data, batch)
        folder.write_json(validation_result, VALIDATION_RESULT_FILE)
        folder.write_text(reason + "\n", REASON_FILE)
        folder.write_json(asdict(record), RECORD_FILE)
    staging.delete(batch)  # moved, not copied: the batch now exists only in quarantine
    log.warning("quarantined %s from %s at %s", batch, staging.url(), record.url)
    return record
