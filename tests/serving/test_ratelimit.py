"""Rate limits per (key, client): a token bucket that never lets more than burst + rate x elapsed through, answers 429
with Retry-After in the app, leaves other clients alone, and keeps a bounded number of buckets."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from serving.main import create_app
from serving.ratelimit import TokenBuckets
from tests.serving.conftest import app_settings

pytestmark = pytest.mark.security


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.property
@given(
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_a_bucket_never_lets_more_than_burst_plus_rate_times_elapsed_through(rate, burst, gaps):
    clock = Clock()
    buckets = TokenBuckets(rate, burst, max_clients=10, clock=clock)
    allowed = 0
    for gap in gaps:
        clock.now += gap
        wait = buckets.take(("key", "client"))
        allowed += wait == 0
        assert wait >= 0 and (wait == 0 or wait <= 1 / rate + 1e-9)
    assert allowed <= burst + rate * clock.now + 1e-6


@pytest.mark.property
@given(clients=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=300))
def test_the_buckets_kept_never_exceed_their_bound(clients):
    buckets = TokenBuckets(1, 1, max_clients=25, clock=Clock())
    for client in clients:
        buckets.take(("-", client))
    assert len(buckets) <= 25


def test_a_client_past_its_rate_gets_429_with_retry_after_and_another_key_is_not_held_up(registry, tmp_path):
    settings = app_settings(
        tmp_path, registry, poll_interval_s=3600, rate_limit_per_s=0.5, rate_limit_burst=3, predict_key="k-predict-01"
    )
    with TestClient(create_app(settings)) as client:
        first = [client.get("/health").status_code for _ in range(3)]
        limited = client.get("/health")
        made_up = client.get("/health", headers={"X-API-Key": "made-up-1"})  # no key of ours: the address's bucket
        other = client.get("/health", headers={"X-API-Key": "k-predict-01"})  # another bucket: the key's
        metrics = client.get("/metrics", headers={"X-API-Key": "k-predict-01"}).text
    assert first == [200, 200, 200]
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert "too many requests" in limited.json()["detail"]
    assert made_up.status_code == 429 and other.status_code == 200
    assert 'airloop_errors_total{kind="rate_limited",model=""} 2.0' in metrics


def test_refusals_are_held_before_their_429_within_per_client_and_total_bounds_and_the_rest_answered_at_once():
    import asyncio

    from serving.ratelimit import RateLimit

    async def ok(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    buckets = TokenBuckets(0.001, 1, max_clients=10)  # one token each, none back during the test
    limiter = RateLimit(ok, buckets, key_name=lambda _: None, hold_s=0.2, held_per_client=2, held_max=3)
    answered: list[tuple[str, int]] = []

    async def call(client: str) -> None:
        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                answered.append((client, message["status"]))

        await limiter({"type": "http", "headers": [], "client": (client, 1)}, None, send)

    async def scenario() -> None:
        await call("a")
        await call("b")
        tasks = [asyncio.create_task(call(c)) for c in ("a", "a", "a", "a", "b", "b")]
        for _ in range(5):
            await asyncio.sleep(0)
        # a's first two refusals are held (its bound), b's first one (the total bound): the other three are answered
        assert limiter.held == {("-", "a"): 2, ("-", "b"): 1} and limiter.held_total == 3
        assert answered[2:] == [("a", 429), ("a", 429), ("b", 429)]
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert answered[:2] == [("a", 200), ("b", 200)] and len(answered) == 8
    assert {status for _, status in answered[2:]} == {429}
    assert limiter.held == {} and limiter.held_total == 0
