"""The one time parser: a time given as a DAG param, a CLI option or an API query, as an aware datetime in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

EXAMPLE = "2026-11-25T10:00:00Z"
RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)?$", re.ASCII)


def parse_time(value: Any, what: str = "time", *, strict: bool = False) -> datetime:
    """``value`` as an aware datetime in UTC: a datetime, or its text as ISO 8601 (e.g. ``2026-11-25T10:00:00Z``).

    A time without an offset is UTC. With ``strict`` only an RFC 3339 date-time is read (what an API documents as
    ``format: date-time``; a leap second is read as :59).

    Raises:
        ValueError: the text is not such a time; the message names ``what`` and the value.
    """
    try:
        if isinstance(value, datetime):
            moment = value
        elif strict:
            moment = _rfc3339(str(value))
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        kind = "an RFC 3339 time" if strict else "an ISO timestamp"
        raise ValueError(f"{what} {value!r} is not {kind} such as {EXAMPLE}") from error


def _rfc3339(text: str) -> datetime:
    found = RFC3339.match(text)
    if found is None:
        raise ValueError("not RFC 3339")
    day, minutes, seconds, fraction, offset = found.groups()
    offset = "+00:00" if offset in (None, "Z", "z") else offset
    return datetime.fromisoformat(f"{day}T{minutes}:{min(int(seconds), 59):02d}{(fraction or '')[:7]}{offset}")
