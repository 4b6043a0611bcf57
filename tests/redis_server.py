"""A real, throwaway Redis server for tests (the Celery broker): found (or apt-installed when root), started on a free
loopback port.

Use the session fixture ``redis_server`` (import it into a conftest.py) or ``start()``/``stop()`` directly. The server
listens on 127.0.0.1 only, keeps nothing on disk (no RDB snapshots, no AOF) and runs in the foreground as a child of
the test process, so it goes when the session ends.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import apt
from tests.pg_server import HOST, free_port

PACKAGE = "redis-server"  # Debian's package
CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")


class RedisUnavailable(RuntimeError):
    """No Redis server could be found, installed or started here."""


@dataclass
class RedisServer:
    """A running server and how to reach it."""

    process: subprocess.Popen
    root: Path
    port: int
    host: str = HOST

    def url(self, db: int = 0) -> str:
        """The ``redis://`` URL of database ``db`` (Celery's broker_url)."""
        return f"redis://{self.host}:{self.port}/{db}"

    def ping(self) -> bool:
        """Whether the server answers PING (RESP inline command)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


def find_binary() -> str | None:
    """``redis-server`` on PATH, else where Debian installs it."""
    return shutil.which("redis-server") or next((c for c in CANDIDATES if Path(c).is_file()), None)


def install() -> None:
    """Install Debian's redis-server with apt-get (root only; one installer at a time, see ``tests.apt``)."""
    try:
        apt.install([PACKAGE], installed=lambda: find_binary() is not None, recommends=False)
    except apt.AptUnavailable as error:
        raise RedisUnavailable(f"no redis-server binary: {error}") from error


def start(binary: str | None = None, timeout: float = 30) -> RedisServer:
    """Start redis-server on a free loopback port, persisting nothing, and wait until it answers PING."""
    binary = binary or find_binary()
    if binary is None:
        install()
        binary = find_binary()
        if binary is None:
            raise RedisUnavailable(f"apt-get installed {PACKAGE} but there is no redis-server binary")
    root = Path(tempfile.mkdtemp(prefix="airloop-redis-"))
    port = free_port()
    command = [
        binary, "--port", str(port), "--bind", HOST, "--protected-mode", "no", "--dir", str(root),
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(root / "server.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = RedisServer(process=process, root=root, port=port)
    deadline = time.monotonic() + timeout
    while not server.ping():
        if process.poll() is not None or time.monotonic() > deadline:
            log = (root / "server.log").read_text(errors="replace")[-2000:] if (root / "server.log").is_file() else ""
            stderr = process.stderr.read().decode(errors="replace")[-2000:] if process.poll() is not None else ""
            stop(server)
            raise RedisUnavailable(f"{' '.join(command)} did not answer PING ({process.returncode}): {stderr}{log}")
        time.sleep(0.1)
    return server


def stop(server: RedisServer) -> None:
    """Stop the server (SIGTERM, SIGKILL after 10 s) and remove its folder."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
    with contextlib.suppress(AttributeError, OSError):
        server.process.stderr.close()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real Redis server for the whole session; skips, saying why, where none can be found or started."""
    try:
        server = start()
    except RedisUnavailable as exc:
        pytest.skip(f"no Redis server for tests: {exc}")
    try:
        yield server
    finally:
        stop(server)
