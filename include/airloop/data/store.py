"""Versioned dataset store: content-hashed Parquet versions with metadata, written atomically; and the quarantine."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

DATA_FILE = "data.parquet"
METADATA_FILE = "metadata.json"
LATEST_FILE = "LATEST"


class DatasetNotFound(LookupError):
    """The requested dataset version is not in the store."""


@dataclass(frozen=True)
class PublishResult:
    """What a publish did: the version, where it lives, and whether this call created it."""

    version: str
    path: str
    created: bool
    rows: int


def content_version(frame: pd.DataFrame) -> str:
    """A stable content hash of a frame: column names, dtypes and every value, independent of the index."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


class DatasetStore:
    """Published versions of one dataset under ``root/<version>/`` with a ``LATEST`` pointer."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def version_dir(self, version: str) -> Path:
        """Folder of one version."""
        return self.root / version

    def exists(self, version: str) -> bool:
        """Whether this version has been published."""
        return (self.version_dir(version) / METADATA_FILE).is_file()

    def versions(self) -> list[str]:
        """Published versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if not p.name.startswith(".") and (p / METADATA_FILE).is_file()]
        return [p.name for p in sorted(found, key=lambda p: self.metadata(p.name)["created_at"])]

    def latest(self) -> str | None:
        """The most recently published version, or None."""
        pointer = self.root / LATEST_FILE
        return pointer.read_text().strip() if pointer.is_file() else None

    def metadata(self, version: str) -> dict[str, Any]:
        """The metadata written with a version."""
        path = self.version_dir(version) / METADATA_FILE
        if not path.is_file():
            raise DatasetNotFound(f"dataset version {version!r} not found under {self.root}")
        return json.loads(path.read_text())

    def load(self, version: str | None = None) -> pd.DataFrame:
        """Read a version (the latest when None)."""
        version = version or self.latest()
        if version is None or not self.exists(version):
            raise DatasetNotFound(f"dataset version {version!r} not found under {self.root}")
        return pd.read_parquet(self.version_dir(version) / DATA_FILE)

    def publish(self, frame: pd.DataFrame, metadata: dict[str, Any]) -> PublishResult:
        """Write ``frame`` as a new version unless the same content is already published (then write nothing)."""
        version = content_version(frame)
        target = self.version_dir(version)
        if self.exists(version):
            log.info("dataset version %s already published at %s: nothing new to publish", version, target)
            return PublishResult(version, str(target), created=False, rows=len(frame))
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{version}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            frame.to_parquet(tmp / DATA_FILE, index=False)
            full = {
                **metadata,
                "version": version,
                "rows": len(frame),
                "schema": {str(c): str(t) for c, t in frame.dtypes.items()},
                "created_at": datetime.now(UTC).isoformat(),
            }
            _write_json_atomic(tmp / METADATA_FILE, full)
            os.rename(tmp, target)  # atomic on one filesystem; fails if a concurrent publish won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if self.exists(version):
                log.info("dataset version %s was published concurrently: nothing new to publish", version)
                return PublishResult(version, str(target), created=False, rows=len(frame))
            raise
        self._point_latest(version)
        log.info("published dataset version %s (%d rows) at %s", version, len(frame), target)
        return PublishResult(version, str(target), created=True, rows=len(frame))

    def _point_latest(self, version: str) -> None:
        tmp = self.root / f".{LATEST_FILE}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / LATEST_FILE)


@dataclass(frozen=True)
class QuarantineRecord:
    """Where a rejected batch was put and why."""

    path: str
    reason: str


def quarantine(root: Path, batch: Path, validation_result: dict[str, Any], reason: str, stage: str) -> QuarantineRecord:
    """Move a rejected batch file into ``root/<timestamp>-<stage>-<id>/`` beside its validation result and reason."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = Path(root) / f"{stamp}-{stage}-{uuid.uuid4().hex[:8]}"
    tmp = Path(root) / f".tmp-{target.name}"
    tmp.mkdir(parents=True)
    shutil.copy2(batch, tmp / batch.name)
    _write_json_atomic(tmp / "validation_result.json", validation_result)
    (tmp / "reason.txt").write_text(reason + "\n")
    record = QuarantineRecord(str(target), reason)
    _write_json_atomic(tmp / "record.json", asdict(record))
    os.rename(tmp, target)
    batch.unlink()  # moved, not copied: the batch now exists only in quarantine
    return record
