"""Prediction request ids that any replica can recognise later, with no shared state: 24 random hex digits and an
8-digit HMAC-SHA256 tag of them under ``serving.request_id_key``.

Outcomes arrive long after the prediction (a spec's target.delay_days), at whichever replica the load balancer picks,
so ``/v1/feedback`` cannot look the id up in memory and must not scan the log per call. The tag lets it refuse an id
airloop never issued (a typo, a truncated id, another system's id) with a 404 at once. Set the key in production so
clients cannot mint valid ids; the default key still catches every mistake.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

DEFAULT_KEY = "airloop-request-ids"
RANDOM_HEX = 24
TAG_HEX = 8
_FORMAT = re.compile(rf"^[0-9a-f]{{{RANDOM_HEX + TAG_HEX}}}$")


def _tag(random_part: str, key: str | None) -> str:
    digest = hmac.new((key or DEFAULT_KEY).encode(), random_part.encode(), hashlib.sha256).hexdigest()
    return digest[:TAG_HEX]


def new_request_id(key: str | None = None) -> str:
    """A fresh request id (32 lowercase hex digits, like a UUID's hex)."""
    random_part = secrets.token_hex(RANDOM_HEX // 2)
    return random_part + _tag(random_part, key)


def new_request_ids(count: int, key: str | None = None) -> list[str]:
    """``count`` fresh request ids."""
    return [new_request_id(key) for _ in range(count)]


def is_issued(request_id: str, key: str | None = None) -> bool:
    """Whether ``request_id`` was issued by a replica sharing ``key`` (constant-time tag comparison)."""
    if not isinstance(request_id, str) or not _FORMAT.match(request_id):
        return False
    return hmac.compare_digest(request_id[RANDOM_HEX:], _tag(request_id[:RANDOM_HEX], key))
