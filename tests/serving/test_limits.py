"""Bounded by construction: every endpoint refuses a body past its limit before reading it (413), and a scan of paths
that exist only under a static mount or not at all adds no metric series."""

from __future__ import annotations

import re
import socket
import time

import pytest
from fastapi.testclient import TestClient

from serving.main import create_app
from tests.serving.conftest import API_KEY, NAME, app_settings, uvicorn_app

WRITE_ENDPOINTS = [
    ("POST", "/v1/predict"),
    ("POST", "/v1/feedback"),
    ("PUT", "/v1/routing"),
    ("POST", "/v1/reload"),
    ("POST", f"/v1/models/{NAME}/feedback"),
    ("PUT", f"/v1/models/{NAME}/routing"),
]


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


def test_a_body_within_the_limit_is_answered_as_before(registry, tmp_path):
    with TestClient(create_app(app_settings(tmp_path, registry, poll_interval_s=3600))) as client:
        answer = client.post("/v1/feedback", json={"request_id": "x" * 40, "outcome": 1})
        assert answer.status_code == 404  # read, parsed, and judged: an id this service never issued


def test_random_paths_and_files_under_a_static_mount_add_no_metric_series(registry, tmp_path):
    with TestClient(create_app(app_settings(tmp_path, registry, poll_interval_s=3600))) as client:
        client.get("/health"), client.get("/metrics")  # their own series exist before we count
        before = series(client.get("/metrics").text)
        for i in range(300):
            client.post(f"/docs-assets/x{i}")
            client.get(f"/docs-assets/x{i}.js")
            client.get(f"/no/such/path/{i}")
            client.post(f"/v1/models/not-a-model-{i}/predict", json={})
        after = series(client.get("/metrics").text)
    assert after - before <= {"<unmatched>", "/docs-assets"}, sorted(after - before)


def series(text: str) -> set[str]:
    """The endpoint labels of the request metrics in a /metrics page (each one a family of series)."""
    return set(re.findall(r'^airloop_request\w*\{[^}]*endpoint="([^"]*)"', text, flags=re.MULTILINE))
