"""The runtime root as a URL: a local folder (the embedded default) or ``s3://bucket/prefix``.

Datasets, quarantine, Data Docs (and the validation results they show), reports and the prediction/feedback logs all
live under one ``Storage``. Callers address files by relative parts (``storage.write_bytes(data, "datasets", "<name>",
v, "data.parquet")``) and never build paths or branch on the scheme themselves. ``Storage.fs`` is a
``pyarrow.fs.FileSystem``, so Parquet reads and writes go straight through it on either backend.

Atomicity: a single object is written to a temporary name and renamed on a local disk; on S3 a PUT is already
all-or-nothing, so it is written in place. Publishing several files together is ``publishing``/``publish_dir`` (local:
temp folder then rename; object stores: the objects first, then a ``_MANIFEST.json`` last that readers trust), and
``is_published`` is how a reader asks whether such a folder is complete.

``RuntimeLayout`` is the one owner of where things live below the root: datasets, quarantine, Data Docs, validation
results, reports, baselines, the prediction and feedback logs and per-run staging folders. Nobody else joins those
names.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import posixpath
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

MANIFEST = "_MANIFEST.json"
#: Rows per Parquet row group of ``write_parquet``: the most a chunked reader (batch scoring) decodes at once.
ROW_GROUP_ROWS = 65_536

# Folders below the runtime root; only RuntimeLayout uses these names.
DATASETS = "datasets"
QUARANTINE = "quarantine"
DATA_DOCS = "data_docs"
VALIDATIONS = "validations"
REPORTS = "reports"
BASELINES = "baselines"
PREDICTIONS = "predictions"
FEEDBACK = "feedback"
SCORING_ERRORS = "scoring-errors"
BATCH_SCORES = "batch-scores"
STAGING = "staging"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def folder_name(text: str) -> str:
    """``text`` as one safe path segment (run ids hold ':' and '+'); ``ValueError`` when nothing usable is left."""
    name = _UNSAFE.sub("_", text)
    if not name.strip("."):
        raise ValueError(f"{text!r} cannot name a folder")
    return name


def _manifest_document(files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    published_at = datetime.now(UTC).isoformat()
    return {"files": {name: dict(entry) for name, entry in sorted(files.items())}, "published_at": published_at}


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store; without keys, credentials come from the environment / default chain."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:  # never print a secret
        return f"S3Options(endpoint_url={self.endpoint_url!r}, region={self.region!r}, keys={bool(self.access_key)})"


def s3_options(endpoint_url: str | None, region: str | None, conn_id: str | None) -> S3Options:
    """How the runtime root's S3 is reached: endpoint and region from settings; inside Airflow, credentials (and an
    endpoint or region settings leave unset) from the Airflow connection ``conn_id`` through the Amazon provider's
    ``AwsBaseHook``; otherwise, or when that connection does not exist, the standard AWS chain (environment, IAM
    role)."""
    found = _connection_options(conn_id) if conn_id else None
    if found is None:
        return S3Options(endpoint_url=endpoint_url, region=region)
    return S3Options(
        endpoint_url=endpoint_url or found.endpoint_url,
        region=region or found.region,
        access_key=found.access_key,
        secret_key=found.secret_key,
        session_token=found.session_token,
    )


@functools.lru_cache(maxsize=8)
def _connection_options(conn_id: str) -> S3Options | None:
    """The S3 options of Airflow connection ``conn_id`` (read once per process), None where there is none."""
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError:  # serving, the CLI: no Airflow here
        return None
    try:
        hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
        config = hook.conn_config
        credentials = hook.get_credentials()
    except Exception as error:  # AirflowNotFoundException and kin: no such connection in this deployment
        log.info("S3 credentials from the environment: no usable Airflow connection %r (%s)", conn_id, error)
        return None
    return S3Options(
        endpoint_url=config.endpoint_url,
        region=config.region_name,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        session_token=credentials.token,
    )


@dataclass(frozen=True)
class Storage:
    """A root folder on a filesystem; every path below it is given as relative parts."""

    fs: pafs.FileSystem
    root: str
    scheme: str  # "file" or "s3"

    @classmethod
    def from_url(cls, url: str | Path, s3: S3Options | None = None) -> Storage:
        """A local path (absolute, or relative to the working directory), ``file://`` URL or ``s3://bucket/prefix``."""
        text = str(url)
        parsed = urlparse(text)
        if parsed.scheme == "s3":
            options = s3 or S3Options()
            kwargs: dict[str, Any] = {"region": options.region or "us-east-1"}
            if options.endpoint_url:
                endpoint = urlparse(options.endpoint_url)
                kwargs["endpoint_override"] = endpoint.netloc or endpoint.path
                kwargs["scheme"] = endpoint.scheme or "https"
            if options.access_key:
                kwargs["access_key"] = options.access_key
                kwargs["secret_key"] = options.secret_key
                if options.session_token:
                    kwargs["session_token"] = options.session_token
            root = posixpath.join(parsed.netloc, parsed.path.lstrip("/")).rstrip("/")
            return cls(pafs.S3FileSystem(**kwargs), root, "s3")
        if parsed.scheme not in ("", "file"):
            raise ValueError(f"unsupported storage URL {text!r}: use a local path or s3://bucket/prefix")
        path = Path(parsed.path if parsed.scheme == "file" else text).expanduser().resolve()
        return cls(pafs.LocalFileSystem(), path.as_posix(), "file")

    @property
    def is_local(self) -> bool:
        """Whether this root is a folder on this machine."""
        return self.scheme == "file"

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` below the root (for ``self.fs``)."""
        return posixpath.join(self.root, *parts) if parts else self.root

    def url(self, *parts: str) -> str:
        """Where ``parts`` lives, as a person would type it: a local path or ``s3://bucket/key``."""
        return self.url_of(self.path(*parts))

    def url_of(self, path: str) -> str:
        """The URL of a filesystem path of this storage (one ``self.fs`` returned, e.g. from a listing)."""
        return path if self.is_local else f"s3://{path}"

    def child(self, *parts: str) -> Storage:
        """The storage rooted at ``parts`` below this one."""
        return Storage(self.fs, self.path(*parts), self.scheme)

    def local_path(self, *parts: str) -> Path:
        """A ``Path`` for libraries that only write local files; only valid on a local root."""
        if not self.is_local:
            raise ValueError(f"{self.url(*parts)} is not on a local filesystem")
        return Path(self.path(*parts))

    def exists(self, *parts: str) -> bool:
        """Whether a file or folder exists at ``parts``."""
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def is_file(self, *parts: str) -> bool:
        """Whether a file exists at ``parts``."""
        return self.fs.get_file_info(self.path(*parts)).type == pafs.FileType.File

    def listdir(self, *parts: str) -> list[str]:
        """Names directly below ``parts`` (files and folders), sorted; empty when it does not exist."""
        selector = pafs.FileSelector(self.path(*parts), recursive=False, allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    def walk_files(self, *parts: str) -> list[str]:
        """Every file below ``parts``, as paths relative to ``parts``, sorted."""
        base = self.path(*parts)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        found = [i.path for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]
        return sorted(posixpath.relpath(p, base) for p in found)

    def makedirs(self, *parts: str) -> None:
        """Create the folder ``parts`` (a no-op on object stores, where folders are prefixes)."""
        if self.is_local:
            self.fs.create_dir(self.path(*parts), recursive=True)

    def read_bytes(self, *parts: str) -> bytes:
        """The whole content of the file at ``parts``; ``FileNotFoundError`` naming its URL when absent."""
        try:
            with self.fs.open_input_stream(self.path(*parts)) as stream:
                return stream.read()
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{self.url(*parts)} does not exist") from error
        except OSError as error:
            if "not found" in str(error).lower() or "nosuchkey" in str(error).lower():
                raise FileNotFoundError(f"{self.url(*parts)} does not exist") from error
            raise

    def read_text(self, *parts: str) -> str:
        """The file at ``parts`` as UTF-8 text."""
        return self.read_bytes(*parts).decode()

    def read_json(self, *parts: str) -> Any:
        """The JSON document at ``parts``."""
        return json.loads(self.read_bytes(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Write ``data`` to ``parts`` atomically (readers see the old content or the new one); returns its URL."""

        def write(path: str) -> None:
            with self.fs.open_output_stream(path) as out:
                out.write(data)

        self.write_atomic(write, *parts)
        return self.url(*parts)

    def write_atomic(self, write: Callable[[str], object], *parts: str) -> None:
        """Publish what ``write(path)`` writes at ``parts`` all at once: readers see the whole file or none.

        Local: a hidden sibling, renamed over the target. Object stores: an upload is visible only once complete."""
        target = self.path(*parts)
        if not self.is_local:
            write(target)
            return
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        tmp = posixpath.join(posixpath.dirname(target), f".{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp")
        try:
            write(tmp)
            self.fs.move(tmp, target)
        except BaseException:
            if self.fs.get_file_info(tmp).type == pafs.FileType.File:
                self.fs.delete_file(tmp)
            raise

    def write_text(self, text: str, *parts: str) -> str:
        """Write UTF-8 text atomically; returns its URL."""
        return self.write_bytes(text.encode(), *parts)

    def write_json(self, payload: Any, *parts: str) -> str:
        """Write a JSON document atomically (sorted keys, indented); returns its URL."""
        return self.write_bytes(json.dumps(payload, indent=2, sort_keys=True, default=str).encode(), *parts)

    def delete(self, *parts: str) -> None:
        """Remove the file or folder at ``parts`` (no error when it does not exist)."""
        info = self.fs.get_file_info(self.path(*parts))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(*parts))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(*parts))

    def read_parquet(self, *parts: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The Parquet file at ``parts`` as a frame; ``FileNotFoundError`` naming its URL when absent."""
        import pandas as pd

        try:
            return pd.read_parquet(self.path(*parts), filesystem=self.fs, columns=columns)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{self.url(*parts)} does not exist") from error

    def write_table(self, table: pa.Table, *parts: str, compression: str = "zstd") -> str:
        """Write an Arrow ``table`` as Parquet at ``parts`` atomically (a reader never sees half a file); its URL."""
        import pyarrow.parquet as pq

        def write(path: str) -> None:
            pq.write_table(table, path, filesystem=self.fs, compression=compression)

        self.write_atomic(write, *parts)
        return self.url(*parts)

    def write_parquet(self, frame: pd.DataFrame, *parts: str) -> str:
        """Write ``frame`` (without its index) as Parquet at ``parts`` atomically; returns its URL.

        Row groups of ``ROW_GROUP_ROWS`` rows, so a reader can take a large file a row group at a time.
        """

        def write(path: str) -> None:
            frame.to_parquet(path, filesystem=self.fs, index=False, row_group_size=ROW_GROUP_ROWS)

        self.write_atomic(write, *parts)
        return self.url(*parts)

    # --- folders published all at once ---------------------------------------------------------------------------

    def manifest(self, *parts: str) -> dict[str, Any] | None:
        """The manifest of the published folder at ``parts`` (``{"files": {name: {"size": ...}}}``), or None."""
        try:
            document = self.read_json(*parts, MANIFEST)
        except (FileNotFoundError, ValueError):  # absent, or not a whole JSON document: not published
            return None
        return document if isinstance(document, dict) and isinstance(document.get("files"), dict) else None

    def is_published(self, *parts: str) -> bool:
        """Whether a complete folder was published at ``parts`` (local: it exists; object stores: its manifest does)."""
        if self.is_local:
            return self.fs.get_file_info(self.path(*parts)).type == pafs.FileType.Directory
        return self.manifest(*parts) is not None

    def published_dirs(self, *parts: str) -> list[str]:
        """Names of the complete published folders directly below ``parts``, sorted (half-written ones are left out)."""
        names = [n for n in self.listdir(*parts) if not n.startswith(".") and n != MANIFEST]
        return [n for n in names if self.is_published(*parts, n)]

    @contextmanager
    def publishing(self, *parts: str) -> Iterator[Storage]:
        """Publish a new folder at ``parts`` all at once: write into the yielded storage; it appears on a clean exit.

        Local: files go to a hidden folder beside the target that is renamed into place at the end. Object stores: the
        objects are written in place and ``_MANIFEST.json`` listing them with their sizes goes last; until it exists
        readers (``is_published``) treat the folder as absent. Raises ``FileExistsError`` naming the URL when the
        folder is already published (also when a concurrent publish of the same folder won the race on a local disk).
        """
        if not parts:
            raise ValueError(f"publishing needs a folder below {self.url()}")
        if self.is_published(*parts):
            raise FileExistsError(f"{self.url(*parts)} is already published")
        target = self.path(*parts)
        if self.is_local:
            parent, name = posixpath.split(target)
            folder = Storage(self.fs, posixpath.join(parent, f".tmp-{name}-{uuid.uuid4().hex}"), self.scheme)
            self.fs.create_dir(folder.root, recursive=True)
        else:
            folder = self.child(*parts)
        try:
            yield folder
            folder.write_json(_manifest_document(folder._sizes()), MANIFEST)
            if self.is_local:
                try:
                    self.fs.move(folder.root, target)
                except OSError as error:
                    if self.exists(*parts):
                        raise FileExistsError(f"{self.url(*parts)} was published concurrently") from error
                    raise
        except BaseException:
            # A local temp folder is removed; objects without a manifest are invisible and get overwritten on retry.
            if self.is_local:
                folder.delete()
            raise

    def publish_dir(self, files: Mapping[str, bytes], *parts: str) -> str:
        """Publish ``files`` (relative name -> content) as a new folder at ``parts`` all at once; returns its URL."""
        with self.publishing(*parts) as folder:
            for name, data in files.items():
                folder.write_bytes(data, *name.split("/"))
        return self.url(*parts)

    def sync_dir(self, source: Path, *parts: str, prune: bool = True) -> str:
        """Mirror the local folder ``source`` at ``parts``: changed files, then the manifest, then stale files go.

        Each file is replaced atomically and the manifest (with sizes and SHA-256) always describes complete files,
        so repeated syncs (a Data Docs site after each build) upload only what changed. With ``prune=False`` nothing
        is deleted and the manifest keeps the files ``source`` lacks: a folder that several machines publish into,
        each from its own copy (a Data Docs site built by every worker). Returns the folder's URL.
        """
        if not source.is_dir():
            raise FileNotFoundError(f"{source} is not a folder")
        old = (self.manifest(*parts) or {}).get("files", {})
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            name = path.relative_to(source).as_posix()
            if name == MANIFEST:
                continue
            data = path.read_bytes()
            files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            if old.get(name) != files[name]:
                self.write_bytes(data, *parts, *name.split("/"))
        self.write_json(_manifest_document(files if prune else {**old, **files}), *parts, MANIFEST)
        for name in sorted(set(old) - set(files) if prune else ()):
            self.delete(*parts, *name.split("/"))
        return self.url(*parts)

    def fetch_dir(self, target: Path, *parts: str) -> list[str]:
        """Copy the files below ``parts`` that the local folder ``target`` lacks into it; their names, sorted.

        The way back of an unpruned ``sync_dir``: ``target`` is one machine's working copy of a folder that several
        machines publish into. A file ``target`` already has is left as it is; each one copied appears whole."""
        have = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}  # none when absent
        fetched = [name for name in self.walk_files(*parts) if name != MANIFEST and name not in have]
        for name in fetched:
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
            partial.write_bytes(self.read_bytes(*parts, *name.split("/")))
            partial.replace(path)
        return fetched

    def _sizes(self) -> dict[str, dict[str, int]]:
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        found = [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]
        sizes = {posixpath.relpath(i.path, self.root): {"size": int(i.size)} for i in found}
        sizes.pop(MANIFEST, None)
        return sizes


@dataclass(frozen=True)
class RuntimeLayout:
    """Where each runtime artefact lives below the one root; the only place these folder names are written."""

    root: Storage
    model: str = ""  # the model whose logs, reports, baselines and staging these are ("" = not model-specific)

    def _of_model(self, folder: str) -> Storage:
        return self.root.child(folder, folder_name(self.model)) if self.model else self.root.child(folder)

    def datasets(self, name: str) -> Storage:
        """Published versions of the dataset ``name``."""
        return self.root.child(DATASETS, folder_name(name))

    def quarantine(self, name: str) -> Storage:
        """Rejected batches of the dataset ``name``, each beside its validation result."""
        return self.root.child(QUARANTINE, folder_name(name))

    def data_docs(self) -> Storage:
        """The Great Expectations Data Docs site (copied here when the root is not local)."""
        return self.root.child(DATA_DOCS)

    def validation_results(self) -> Storage:
        """Great Expectations validation results of every machine, the source the Data Docs site is built from."""
        return self.root.child(VALIDATIONS)

    def reports(self) -> Storage:
        """Drift and experiment reports of every model (each report's folder starts with its model's name)."""
        return self.root.child(REPORTS)

    def baselines(self) -> Storage:
        """Baseline profiles kept outside MLflow."""
        return self._of_model(BASELINES)

    def predictions(self) -> Storage:
        """The serving prediction log (partitioned Parquet)."""
        return self._of_model(PREDICTIONS)

    def feedback(self) -> Storage:
        """Observed outcomes posted to /v1/feedback."""
        return self._of_model(FEEDBACK)

    def errors(self) -> Storage:
        """Model calls that failed in serving (the A/B evaluation's error-rate guardrail reads them)."""
        return self._of_model(SCORING_ERRORS)

    def batch_scores(self, name: str) -> Storage:
        """Predictions of <model>_batch_score for the dataset ``name``, one published folder per job."""
        return self.root.child(BATCH_SCORES, folder_name(name))

    def staging(self, run_id: str) -> Storage:
        """Intermediate files of one pipeline run, readable by its tasks on any machine."""
        return self._of_model(STAGING).child(folder_name(run_id))
