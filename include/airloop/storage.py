"""The runtime root as a URL: a local folder (the embedded default) or ``s3://bucket/prefix``.

Datasets, quarantine, Data Docs, reports and the prediction/feedback logs all live under one ``Storage``. Callers
address files by relative parts (``storage.write_bytes(data, "datasets", "readmission", v, "data.parquet")``) and
never build paths or branch on the scheme themselves. ``Storage.fs`` is a ``pyarrow.fs.FileSystem``, so Parquet reads
and writes go straight through it on either backend.

Atomicity: a single object is written to a temporary name and renamed on a local disk; on S3 a PUT is already
all-or-nothing, so it is written in place. Publishing several files together is ``publish_dir`` (local: temp folder
then rename; object stores: the objects first, then a ``_MANIFEST.json`` last that readers trust).
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

MANIFEST = "_MANIFEST.json"


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store (credentials come from the environment / default chain)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None


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
        path = self.path(*parts)
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
        target = self.path(*parts)
        if self.is_local:
            self.fs.create_dir(posixpath.dirname(target), recursive=True)
            tmp = posixpath.join(posixpath.dirname(target), f".{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp")
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, target)
        else:
            with self.fs.open_output_stream(target) as out:
                out.write(data)
        return self.url(*parts)

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
