"""Where a run's params may make airloop read data from.

``<model>_etl`` and ``<model>_batch_score`` take ``source``, ``path``, ``s3_uri`` and ``postgres_table`` params, and
a task reads whatever they name with the workers' own rights: a file, an S3 object, a table. ``check`` keeps a run
inside the data: the configured source is always allowed; another location only inside ``data.access`` (file roots,
S3 prefixes, table patterns) and, when ``data.access.override_role`` is set, only in a run that a user of that role or
above triggered. A refusal fails the task at once and names the param and the rule, never the value it refused.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airloop import security
from airloop.errors import FinalError

if TYPE_CHECKING:
    from airloop.settings import Settings

LOCATION_PARAMS = ("path", "s3_uri", "postgres_table")
SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})
MAX_LENGTH = {"path": 4096, "s3_uri": 1024, "postgres_table": 127}
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE = re.compile(rf"^(?:(?P<schema>{_IDENTIFIER})\.)?(?P<table>{_IDENTIFIER})$")


class SourceRefused(FinalError):
    """A run's params name a data location outside what ``data.access`` allows; says which param and which rule."""


def _text(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    return None if value in (None, "") else str(value)


def requested_locations(settings: Settings, params: Mapping[str, Any]) -> dict[str, str]:
    """The location params of a run that differ from the configured source's (the ones ``check`` judges)."""
    data = settings.data
    configured = {
        "path": str(data.path) if data.path else None,
        "s3_uri": data.s3_uri,
        "postgres_table": data.postgres_table or settings.model,
    }
    found = {key: text for key in LOCATION_PARAMS if (text := _text(params, key)) is not None}
    return {key: text for key, text in found.items() if text != configured[key]}


def check(settings: Settings, params: Mapping[str, Any] | None, user: str | None) -> dict[str, str]:
    """Refuse a run whose params point a source outside ``data.access``, or whose user may not point it elsewhere;
    else the overrides as checked, for the run to read exactly that (a ``path`` with its symlinks resolved).

    Raises:
        SourceRefused: naming the param and the rule (``data.access.file_roots`` ...), not the refused value.
    """
    requested = requested_locations(settings, params or {})
    if not requested:
        return {}
    access = settings.data.access
    if access.override_role is not None:
        role = security.role_on_model(settings, user)
        if role is None or not role.at_least(access.override_role):
            who = f"user {user!r}" if user else "a run no signed-in user triggered"
            raise SourceRefused(
                f"param {', '.join(sorted(requested))}: {who} may not point the source elsewhere than configured "
                f"(data.access.override_role: {security.roles_from(access.override_role)})"
            )
    checked = {}
    for key, value in requested.items():
        if len(value) > MAX_LENGTH[key]:
            raise SourceRefused(f"param {key}: longer than {MAX_LENGTH[key]} characters")
        if "\x00" in value:
            raise SourceRefused(f"param {key}: holds a NUL character")
        checked[key] = RULES[key](settings, value)
    return checked


def _path(settings: Settings, value: str) -> str:
    path = Path(value)
    if not path.is_absolute():
        raise SourceRefused("param path: must be an absolute path (data.access.file_roots)")
    real = Path(os.path.realpath(path))  # symlinks and ".." resolved: where the read would really go, and will
    roots = settings.data.access.file_roots
    if not any(real.is_relative_to(Path(os.path.realpath(root))) for root in roots):
        raise SourceRefused(
            f"param path: not below an allowed folder (data.access.file_roots: {len(roots)} configured); "
            "an ml_engineer can add one"
        )
    return str(real)


def _s3_uri(settings: Settings, value: str) -> str:
    if not value.startswith("s3://"):
        raise SourceRefused("param s3_uri: must be s3://bucket/key")
    bucket, _, key = value.removeprefix("s3://").partition("/")
    segments = key.split("/")
    if not bucket or not key or key.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise SourceRefused("param s3_uri: must be s3://bucket/key with no empty, '.' or '..' segment")
    prefixes = [p if p.endswith("/") else p + "/" for p in settings.data.access.s3_prefixes]
    if not any(value.startswith(prefix) for prefix in prefixes):
        raise SourceRefused(
            f"param s3_uri: not below an allowed prefix (data.access.s3_prefixes: {len(prefixes)} configured)"
        )
    return value


def _postgres_table(settings: Settings, value: str) -> str:
    match = _TABLE.match(value)
    if match is None or match["schema"] is None:
        # Qualified: an unqualified name is looked up in pg_catalog first, so it could read a system catalog.
        raise SourceRefused("param postgres_table: must be schema.table, letters, digits and _ only")
    schema = match["schema"]
    if schema.lower() in SYSTEM_SCHEMAS or schema.lower().startswith("pg_"):
        raise SourceRefused("param postgres_table: system schemas are never a source")
    name = f"{schema}.{match['table']}"
    patterns = settings.data.access.postgres_tables
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
        raise SourceRefused(
            f"param postgres_table: matches no allowed pattern (data.access.postgres_tables: {len(patterns)} "
            "configured)"
        )
    return name


RULES = {"path": _path, "s3_uri": _s3_uri, "postgres_table": _postgres_table}
