"""Rate limits: a token bucket per (key, client address), checked before a request is routed or its body read.

A request over its bucket gets 429 with ``Retry-After`` (whole seconds until a token is back). The key part of a
bucket is which configured key the ``X-API-Key`` header is (its setting's name, never the key), so every holder of one
key is limited per address; a request without a key, or with a key that is none of them, takes its address's bucket
(a new made-up key each time buys no new burst). At most ``max_clients`` buckets are kept (the least recently used
goes first), so a scan from many addresses cannot grow memory. FastAPI-free.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class TokenBuckets:
    """``rate`` tokens a second up to ``burst`` per bucket; ``take`` says whether one was there, else how long until
    one is (seconds)."""

    def __init__(self, rate: float, burst: int, max_clients: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError(f"need rate > 0, burst >= 1, max_clients >= 1; got {rate}, {burst}, {max_clients}")
        self.rate, self.burst, self.max_clients, self.clock = rate, burst, max_clients, clock
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()  # -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, bucket: tuple[str, str]) -> float:
        """0 when the request may go (a token taken), else the seconds until the bucket has a token again."""
        now = self.clock()
        tokens, at = self._buckets.pop(bucket, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[bucket] = (tokens - 1 if wait == 0 else tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


class RateLimit:
    """The ASGI middleware: every HTTP request takes a token of its (key digest, client address) bucket first."""

    def __init__(
        self,
        app: Any,
        buckets: TokenBuckets,
        key_name: Callable[[bytes], str | None],
        on_limited: Callable[[], None] | None = None,
    ) -> None:
        self.app, self.buckets, self.key_name, self.on_limited = app, buckets, key_name, on_limited

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = dict(scope.get("headers") or ()).get(b"x-api-key", b"")
        name = (self.key_name(key) if key else None) or "-"
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.buckets.take((name, str(client)))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        if self.on_limited is not None:
            self.on_limited()
        retry = str(max(1, math.ceil(wait)))
        body = json.dumps({"detail": f"too many requests from this client: retry in {retry} s"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send(
            {"type": "http.response.start", "status": 429, "headers": [*headers, (b"retry-after", retry.encode())]}
        )
        await send({"type": "http.response.body", "body": body})
