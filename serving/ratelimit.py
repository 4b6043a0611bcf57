"""Rate limits: a token bucket per (key, client address), checked before a request is routed or its body read.

A request over its bucket gets 429 with ``Retry-After`` (whole seconds until a token is back). The key part of a
bucket is which configured key the ``X-API-Key`` header is (its setting's name, never the key), so every holder of one
key is limited per address; a request without a key, or with a key that is none of them, takes its address's bucket
(a new made-up key each time buys no new burst). At most ``max_clients`` buckets are kept (the least recently used
goes first), so a scan from many addresses cannot grow memory. FastAPI-free.

A refused request is held ``hold_s`` before its 429 (tarpitting): answered at once, a flood of refusals keeps the one
worker busy and every other client waits behind it (measured with ``make bench-serving``, scenario ``rate_limit``);
held, each of the flood's connections costs a sleeping task. At most ``held_per_client`` requests of one bucket and
``held_max`` in all are held at once (held requests occupy the server's concurrency limit): past that, 429 at once.
"""

from __future__ import annotations

import asyncio
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
        hold_s: float = 0.0,
        held_per_client: int = 0,
        held_max: int = 0,
    ) -> None:
        self.app, self.buckets, self.key_name, self.on_limited = app, buckets, key_name, on_limited
        self.hold_s, self.held_per_client, self.held_max = hold_s, held_per_client, held_max
        self.held: dict[tuple[str, str], int] = {}  # bucket -> its requests held now (no entry at 0)
        self.held_total = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = dict(scope.get("headers") or ()).get(b"x-api-key", b"")
        name = (self.key_name(key) if key else None) or "-"
        client = (scope.get("client") or ("?", 0))[0]
        bucket = (name, str(client))
        wait = self.buckets.take(bucket)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        if self.on_limited is not None:
            self.on_limited()
        if self.hold_s > 0 and self.held_total < self.held_max and self.held.get(bucket, 0) < self.held_per_client:
            await self._hold(bucket)
        retry = str(max(1, math.ceil(wait)))
        body = json.dumps({"detail": f"too many requests from this client: retry in {retry} s"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send(
            {"type": "http.response.start", "status": 429, "headers": [*headers, (b"retry-after", retry.encode())]}
        )
        await send({"type": "http.response.body", "body": body})

    async def _hold(self, bucket: tuple[str, str]) -> None:
        self.held[bucket] = self.held.get(bucket, 0) + 1
        self.held_total += 1
        try:
            await asyncio.sleep(self.hold_s)
        finally:
            self.held_total -= 1
            if self.held[bucket] <= 1:
                del self.held[bucket]
            else:
                self.held[bucket] -= 1
