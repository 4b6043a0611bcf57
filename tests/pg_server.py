"""A real, throwaway PostgreSQL server for tests: found (or apt-installed when root), started on a free loopback port.

Use the session fixture ``postgres_server`` (import it into a conftest.py) or ``start()``/``stop()`` directly. The
server trusts every local connection, listens on 127.0.0.1 only and keeps its socket and data in one temp folder.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import apt

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DATABASE = "airloop"
SYSTEM_USER = "postgres"  # initdb and postgres refuse to run as root
# No fsync at initdb; C locale so collation does not depend on the machine's locales.
INITDB_OPTIONS = ("-E", "UTF8", "--locale=C", "--no-sync")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be found, installed or started here."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server and how to reach it."""

    bindir: Path
    root: Path
    port: int
    host: str = HOST
    user: str = SUPERUSER
    dbname: str = DATABASE

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    def airflow_connection(self) -> str:
        """The value of an ``AIRFLOW_CONN_<ID>`` environment variable pointing at this server's database."""
        return json.dumps(
            {"conn_type": "postgres", "host": self.host, "port": self.port, "login": self.user, "schema": self.dbname}
        )


def _version(bindir: str) -> int:
    try:
        return int(Path(bindir).parent.name)
    except ValueError:
        return 0


def find_bindir() -> Path | None:
    """The newest Debian/Ubuntu PostgreSQL bin folder, else the folder of ``pg_ctl`` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version)
    found = [d for d in found if Path(d, "initdb").is_file() and Path(d, "pg_ctl").is_file()]
    if found:
        return Path(found[-1])
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl and Path(pg_ctl).with_name("initdb").is_file() else None


def install() -> None:
    """Install the distribution's PostgreSQL with apt-get (root only; one installer at a time, see ``tests.apt``)."""
    try:
        apt.install(["postgresql"], installed=lambda: find_bindir() is not None, recommends=False)
    except apt.AptUnavailable as error:
        raise PostgresUnavailable(f"no PostgreSQL under /usr/lib/postgresql/*/bin: {error}") from error


RESERVED_PORTS = {5000, 8000, 8080, 8793, 8794}  # a demo may be running on these


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it), never one a demo uses."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def _as_system_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], cwd: Path, timeout: float = 60) -> None:
    done = subprocess.run(_as_system_user(command), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise PostgresUnavailable(f"{' '.join(command)} failed ({done.returncode}): {output}")


def start(bindir: Path | None = None) -> PostgresServer:
    """initdb a temp cluster, start it on a free loopback port and create the ``airloop`` database."""
    bindir = bindir or find_bindir()
    if bindir is None:
        install()
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailable("apt-get installed postgresql but no initdb/pg_ctl under /usr/lib/postgresql")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresUnavailable(f"running as root but there is no {SYSTEM_USER!r} system user") from None
    # Directly under the system temp dir: pytest's tmp_path lives in a root-only 0700 folder postgres cannot enter.
    root = Path(tempfile.mkdtemp(prefix="airloop-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user=SYSTEM_USER, group=SYSTEM_USER)
    server = PostgresServer(bindir=bindir, root=root, port=free_port())
    try:
        _run(
            [str(bindir / "initdb"), "-D", str(server.datadir), "-U", SUPERUSER, "-A", "trust", *INITDB_OPTIONS],
            cwd=root,
        )
        options = (
            f"-c listen_addresses={HOST} -c port={server.port} -c unix_socket_directories={root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log_file = root / "server.log"
        _run(
            [str(bindir / "pg_ctl"), "-D", str(server.datadir), "-o", options, "-l", str(log_file), "-w", "start"],
            cwd=root,
        )
        _run([str(bindir / "createdb"), "-h", HOST, "-p", str(server.port), "-U", SUPERUSER, DATABASE], cwd=root)
    except (PostgresUnavailable, subprocess.TimeoutExpired) as exc:
        log_text = (root / "server.log").read_text()[-2000:] if (root / "server.log").is_file() else ""
        stop(server)
        raise PostgresUnavailable(f"{exc}\n{log_text}".strip()) from exc
    return server


def stop(server: PostgresServer) -> None:
    """Stop the server (fast shutdown) and remove its folder."""
    if (server.datadir / "postmaster.pid").is_file():
        with contextlib.suppress(PostgresUnavailable):  # already gone; the folder is removed either way
            _run(
                [str(server.bindir / "pg_ctl"), "-D", str(server.datadir), "-m", "fast", "-w", "stop"], cwd=server.root
            )
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session; skips, saying why, where none can be found or started."""
    try:
        server = start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server for tests: {exc}")
    try:
        yield server
    finally:
        stop(server)
