"""What reading the log costs on S3: requests to moto's server, counted at the HTTP layer by kind.

``benchmarks/bench_log.py`` counts them at the server (a WSGI middleware around moto); the session's moto server
(``tests/s3_server.py``) is shared, so here a counting forwarder stands in front of it instead, and only the reads go
through it: the log is written and compacted straight to moto, then read through the forwarder.
"""

from __future__ import annotations

import http.client
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from airloop.predlog import PREDICTIONS, load_predictions, reader
from airloop.predlog.compact import compact_hour
from airloop.predlog.reader import LogFile
from airloop.storage import S3Options, Storage
from tests.pg_server import HOST
from tests.predlog.test_compact import later, write_parts
from tests.predlog.test_prediction_log import EVER, H10
from tests.s3_server import ACCESS_KEY, SECRET_KEY

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


def kind_of(method: str, path: str, query: str) -> str:
    """The kind of an S3 request, as bench_log.py's ``classify`` names it (path-style: /bucket/key)."""
    key = path.lstrip("/").partition("/")[2]
    if method == "GET" and not key:
        args = {part.split("=", 1)[0] for part in query.split("&") if part}
        return "LIST" if not args or args & {"list-type", "prefix", "delimiter", "continuation-token"} else "GET bucket"
    return method if key else f"{method} bucket"


class CountingForwarder:
    """A WSGI app that forwards every request to ``upstream`` and counts it by kind."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname, parts.port
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        with self.lock:
            self.requests[kind_of(method, environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", ""))] += 1
        stream = environ["wsgi.input"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = stream.read() if environ.get("wsgi.input_terminated") else stream.read(length) if length else None
        headers = {name[5:].replace("_", "-"): value for name, value in environ.items() if name.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["CONTENT-TYPE"] = environ["CONTENT_TYPE"]
        if body:
            headers["CONTENT-LENGTH"] = str(len(body))
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, environ["REQUEST_URI"], body=body, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
        finally:
            connection.close()
        out = [(name, value) for name, value in answer.getheaders() if name.lower() not in _HOP_BY_HOP]
        if method != "HEAD" and not any(name.lower() == "content-length" for name, _ in out):
            out.append(("Content-Length", str(len(content))))
        start_response(f"{answer.status} {answer.reason}", out)
        return [content]

    def taken(self) -> Counter[str]:
        """The requests counted since the last call, by kind."""
        with self.lock:
            counted, self.requests = self.requests, Counter()
        return counted


@dataclass
class CountedLog:
    """One log on moto: ``direct`` writes and compacts it, ``counted`` reads it through ``requests``."""

    direct: Storage
    counted: Storage
    requests: CountingForwarder


@pytest.fixture
def counted_log(s3_server) -> Iterator[CountedLog]:
    from werkzeug.serving import make_server

    bucket = f"requests-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    forwarder = CountingForwarder(s3_server.endpoint_url)
    server = make_server(HOST, 0, forwarder, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="counting-forwarder")
    thread.start()

    def storage(endpoint: str) -> Storage:
        options = S3Options(endpoint_url=endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        return Storage.from_url(f"s3://{bucket}/predictions", options)

    try:
        yield CountedLog(storage(s3_server.endpoint_url), storage(f"http://{HOST}:{server.server_port}"), forwarder)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def write_hours(storage: Storage, hours: int, parts: int) -> list[str]:
    """``parts`` parts in each of ``hours`` hour folders from 10:00 on (one date folder)."""
    ids = []
    for hour in range(hours):
        ids += write_parts(storage, f"h{hour}", parts, at=H10 + timedelta(hours=hour))
    return ids


def test_a_window_of_compacted_hours_costs_at_most_two_gets_per_file_and_no_head(counted_log):
    hours = 6
    ids = write_hours(counted_log.direct, hours, parts=5)
    for hour in range(hours):  # the parts stay (grace): the reader must not open a single one of them
        folder = f"date=2026-01-01/hour={10 + hour:02d}"
        assert compact_hour(counted_log.direct, PREDICTIONS, folder, now=later(), grace_s=3600)["compacted"]
    counted_log.requests.taken()

    frame = load_predictions(counted_log.counted, *EVER)
    requests = counted_log.requests.taken()

    assert sorted(frame["request_id"]) == sorted(ids)
    # The root and the one date folder are listed; each compacted file: its footer once, its rows once.
    assert requests["LIST"] <= 2, requests
    assert requests["HEAD"] == 0, requests
    assert requests["GET"] <= 2 * hours, requests
    assert sum(requests.values()) == requests["LIST"] + requests["GET"], requests


def test_a_window_of_uncompacted_parts_reads_each_footer_once_and_no_head(counted_log):
    parts = 8
    ids = write_hours(counted_log.direct, 1, parts=parts)
    counted_log.requests.taken()

    frame = load_predictions(counted_log.counted, *EVER, columns=["request_id", "record"])
    requests = counted_log.requests.taken()

    assert sorted(frame["request_id"]) == sorted(ids)
    assert requests["HEAD"] == 0, requests
    assert requests["GET"] <= 2 * parts, requests


def test_past_the_footer_budget_a_read_still_returns_every_row_reading_those_footers_again(counted_log, monkeypatch):
    monkeypatch.setattr(reader, "_KEPT_FOOTERS_BYTES", 0)  # as if the window held thousands of uncompacted parts
    parts = 6
    ids = write_hours(counted_log.direct, 1, parts=parts)
    counted_log.requests.taken()

    frame = load_predictions(counted_log.counted, *EVER)
    requests = counted_log.requests.taken()

    assert sorted(frame["request_id"]) == sorted(ids)
    assert requests["HEAD"] == 0, requests
    assert 2 * parts < requests["GET"] <= 3 * parts, requests


def test_a_part_removed_from_s3_after_the_listing_is_skipped_with_a_warning_naming_it(counted_log, monkeypatch, caplog):
    write_hours(counted_log.direct, 1, parts=3)
    gone = counted_log.direct.walk_files()[0]
    real_read = LogFile.read

    def read_after_a_compaction_deleted_it(self, columns=None):
        if self.path == counted_log.direct.path(gone):
            counted_log.direct.delete(gone)  # its footer was read; its rows are not there any more
        return real_read(self, columns)

    monkeypatch.setattr(LogFile, "read", read_after_a_compaction_deleted_it)
    with caplog.at_level(logging.WARNING, logger="airloop.predlog"):
        frame = load_predictions(counted_log.counted, *EVER)

    assert len(frame) == 2 * 3 and frame["request_id"].is_unique
    assert any(gone in message and "damaged" in message for message in caplog.messages), caplog.messages
