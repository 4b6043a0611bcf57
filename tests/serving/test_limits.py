"""Bounded by construction: every endpoint refuses a body past its limit before reading it (413), and a scan of paths
that exist only under a static mount or not at all adds no metric series."""

from __future__ import annotations

import gc
import itertools
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.main import create_app
from tests.serving.conftest import API_KEY, NAME, app_settings, uvicorn_app

pytestmark = pytest.mark.security

WRITE_ENDPOINTS = [
    ("POST", "/v1/predict"),
    ("POST", "/v1/feedback"),
    ("PUT", "/v1/routing"),
    ("POST", "/v1/reload"),
    ("POST", f"/v1/models/{NAME}/feedback"),
    ("PUT", f"/v1/models/{NAME}/routing"),
    ("PUT", f"/v1/feedback/{'a' * 32}"),
    ("PUT", f"/v1/models/{NAME}/feedback/{'a' * 32}"),
]
# What an 800 MB body may add to this process's peak resident memory (the service runs in it): a bound far below the
# body, above what serving a request costs anyway.
MEMORY_BOUND_BYTES = 64 * 2**20


@pytest.fixture(scope="module")
def settings(registry, tmp_path_factory):
    return app_settings(tmp_path_factory.mktemp("limits"), registry, poll_interval_s=3600)


@pytest.fixture(scope="module")
def running(settings):
    with uvicorn_app(create_app(settings)) as running:
        yield running


def raw_request(url: str, head: str, body_chunks, timeout: float = 10) -> tuple[int, float]:
    """Send ``head`` then the chunks on a raw socket; the status line's code and the seconds until it came."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):  # the server answered and hung up: what we want
            pass
        answer = sock.recv(4096).decode("latin-1")
    return int(answer.split(" ", 2)[1]), time.monotonic() - started


@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
def test_a_declared_800_mb_body_is_refused_before_a_byte_of_it_is_read(running, endpoint):
    method, path = endpoint
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\n"
        "Content-Length: 800000000\r\n\r\n"
    )
    status, _ = raw_request(running.url, head, [b"{" * 1024])
    assert status == 413


# POST /reload reads no body: a streamed one is never buffered (uvicorn stops reading the socket), it is answered.
@pytest.mark.parametrize(
    "endpoint", [e for e in WRITE_ENDPOINTS if "reload" not in e[1]], ids=lambda e: f"{e[0]} {e[1]}"
)
def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(running, settings, endpoint):
    method, path = endpoint
    limit = settings.serving.max_body_bytes if path.endswith("/predict") else settings.serving.max_request_bytes
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * 16384
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    chunks = [chunk] * (limit // len(piece) + 2)  # just past the limit, never the terminating chunk
    status, _ = raw_request(running.url, head, chunks)
    assert status == 413


def resident_bytes(field: str) -> int:
    """VmRSS or VmHWM (the peak since the last reset) of this process, in bytes."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, flags=re.MULTILINE).group(1)) * 1024


def test_an_800_mb_body_sent_as_fast_as_it_goes_to_every_write_endpoint_keeps_memory_within_the_bound(running):
    """Each write endpoint gets 800 MB streamed at it without a declared length (chunked: the server cannot refuse it
    up front); the peak resident memory of the process serving it grows by less than MEMORY_BOUND_BYTES."""
    clear_refs = Path("/proc/self/clear_refs")
    if not clear_refs.exists():
        pytest.skip("no /proc/self/clear_refs on this kernel: the peak resident memory cannot be reset")
    piece = b" " * 2**20
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    grown = {}
    for method, path in WRITE_ENDPOINTS:
        gc.collect()
        clear_refs.write_text("5")  # the peak (VmHWM) starts again from the current resident size
        before = resident_bytes("VmRSS")
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: test\r\nX-API-Key: {API_KEY}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        status, _ = raw_request(running.url, head, itertools.repeat(chunk, 800))
        grown[f"{method} {path}"] = (status, resident_bytes("VmHWM") - before)
    assert {status for status, _ in grown.values()} <= {413, 401, 200}, grown  # reload reads no body: answered
    assert all(growth < MEMORY_BOUND_BYTES for _, growth in grown.values()), grown


def test_a_body_within_the_limit_is_answered_as_before(running):
    with httpx.Client(base_url=running.url, timeout=10) as http:
        answer = http.post("/v1/feedback", json={"request_id": "x" * 40, "outcome": 1})
    assert answer.status_code == 404  # read, parsed, and judged: an id this service never issued


def test_random_paths_and_files_under_a_static_mount_add_no_metric_series(running):
    with httpx.Client(base_url=running.url, timeout=10) as http:
        http.get("/health"), http.get("/metrics")  # their own series exist before we count
        before = series(http.get("/metrics").text)
        for i in range(1250):  # 5,000 paths nobody routes
            http.post(f"/docs-assets/x{i}")
            http.get(f"/docs-assets/x{i}.js")
            http.get(f"/no/such/path/{i}")
            http.post(f"/v1/models/not-a-model-{i}/predict", json={})
        after = series(http.get("/metrics").text)
    assert after - before <= {"<unmatched>", "/docs-assets"}, sorted(after - before)


def series(text: str) -> set[str]:
    """The endpoint labels of the request metrics in a /metrics page (each one a family of series)."""
    return set(re.findall(r'^airloop_request\w*\{[^}]*endpoint="([^"]*)"', text, flags=re.MULTILINE))


def test_past_the_queue_bound_a_request_gets_503_with_retry_after_and_nothing_is_scored(registry, tmp_path):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    settings = app_settings(tmp_path, registry, poll_interval_s=3600, max_queued_records=1)
    body = {"records": [dict(registry.records[0])]}
    with TestClient(create_app(settings)) as client:
        model = client.app.state.airloop.models["readmission"]
        gate = threading.Event()
        model.executor.submit(gate.wait)  # the model thread is busy: nothing gets scored until the gate opens
        with ThreadPoolExecutor(2) as pool:
            taken = pool.submit(client.post, "/v1/predict", json=body)  # dispatched, waits for the model thread
            time.sleep(0.5)  # time to arrive and be taken by the dispatcher, which then waits for the model thread
            assert model.batchers["champion"].queued == 0
            queued = pool.submit(client.post, "/v1/predict", json=body)  # waits in the queue: it is full now
            wait_for(lambda: model.batchers["champion"].queued == 1)
            refused = client.post("/v1/predict", json=body)
            gate.set()
            answered = [taken.result(timeout=30), queued.result(timeout=30)]
        metrics = client.get("/metrics").text
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "has its limit of 1 records waiting (serving.max_queued_records)" in refused.json()["detail"]
    assert [a.status_code for a in answered] == [200, 200]
    assert 'airloop_errors_total{kind="overloaded",model="readmission"} 1.0' in metrics


def test_a_storage_outage_spills_the_log_says_degraded_and_loses_nothing_when_storage_is_back(registry, tmp_path):
    from datetime import UTC, datetime

    from airloop import predlog

    settings = app_settings(tmp_path / "home", registry, poll_interval_s=3600, log_flush_interval_s=0.1)
    folder = Path(settings.layout.predictions().url())
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("storage is down")  # every part under it fails
    record = dict(registry.records[0])
    with TestClient(create_app(settings)) as client:
        ids = [client.post("/v1/predict", json={"records": [record]}).json()["predictions"][0]["request_id"]
               for _ in range(30)]  # fmt: skip
        ready = wait_for(lambda: (r := client.get("/ready").json())["status"] == "degraded" and r)
        metrics = client.get("/metrics").text
        assert "the readmission logs cannot be written to storage (predictions: " in ready["reason"]
        assert re.search(
            r"airloop_log_rows{log=\"predictions\",model=\"readmission\",state=\"spilled\"} [1-9]", metrics
        )
        assert 'airloop_log_failing{log="predictions",model="readmission"} 1.0' in metrics

        folder.unlink()  # storage is back
        wait_for(lambda: client.get("/ready").json()["status"] == "ready")
    logged = predlog.load_predictions(
        settings.layout.predictions(), datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC)
    )
    assert set(logged["request_id"]) == set(ids)  # nothing lost (each request scored by both variants) ...
    assert not logged.duplicated(["request_id", "model_version"]).any()  # ... and nothing twice


def wait_for(condition, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_request_not_over_within_the_timeout_is_ended_with_503_and_retry_after_and_a_fast_one_is_untouched():
    import asyncio

    from serving.main import RequestTimeout

    async def app(scope, receive, send) -> None:
        await receive()  # waits for a body that a slow client never finishes sending
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    timeouts: list[int] = []
    limited = RequestTimeout(app, timeout_s=0.05, on_timeout=lambda: timeouts.append(1))

    async def call(receive) -> list[dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        await limited({"type": "http", "path": "/v1/feedback", "headers": []}, receive, send)
        return sent

    async def never() -> dict:
        await asyncio.Event().wait()
        return {}

    async def body() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    slow, fast = asyncio.run(call(never)), asyncio.run(call(body))
    assert slow[0]["status"] == 503 and (b"retry-after", b"1") in slow[0]["headers"]
    assert b"not completed within 0.05 s" in slow[1]["body"] and timeouts == [1]
    assert fast[0]["status"] == 200 and fast[1]["body"] == b"ok"
