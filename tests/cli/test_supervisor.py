"""The demo's supervisor stops every process of every service on SIGTERM, SIGINT and SIGHUP, and `stop` does the same
from another process even after the supervisor was killed with SIGKILL. Services here are shell sleeps, no Airflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airloop.cli.supervisor import AlreadyRunning, Supervisor, members

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")

# Each service is a shell with a child: stopping only the shell would leave the child running, as `airflow standalone`
# would leave its scheduler and API server.
SERVICE = "sleep 300 & sleep 300"
DEAF_SERVICE = "trap '' TERM; sleep 300 & sleep 300"  # ignores SIGTERM: only SIGKILL stops it

SUPERVISE = """
import sys
from pathlib import Path
from airloop.cli.supervisor import Stopped, Supervisor

state_file, logs, timeout, service = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
try:
    with Supervisor(state_file, logs, stop_timeout=timeout) as supervisor:
        for name in ("first", "second"):
            supervisor.start(name, ["sh", "-c", service])
        print("ready", flush=True)
        supervisor.watch(every=0.1)
except Stopped as stopped:
    print(f"stopped: {stopped}", flush=True)
"""


def alive(pids: list[int]) -> list[int]:
    """The pids that are still running (a zombie has stopped: it only waits for its parent to read its status)."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in "ZX":
            running.append(pid)
    return running


def start_supervisor(tmp_path: Path, service: str = SERVICE, timeout: float = 10) -> tuple[subprocess.Popen, list]:
    """A supervisor in a subprocess with two services; returns it and every pid of both services once all run."""
    state_file = tmp_path / "demo-processes.json"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISE, str(state_file), str(tmp_path / "logs"), str(timeout), service],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert supervisor.stdout.readline().strip() == "ready"
    groups = [s["group"] for s in json.loads(state_file.read_text())["services"]]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = members(groups)
        if all(len(found[group]) >= 2 for group in groups):  # the shell (or its last sleep) and the background sleep
            return supervisor, [pid for group in groups for pid, _ in found[group]]
        time.sleep(0.05)
    supervisor.kill()
    raise AssertionError(f"services did not start their children: {members(groups)}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_stop_signal_stops_every_process_of_every_service(tmp_path, sig):
    supervisor, pids = start_supervisor(tmp_path)
    assert alive(pids) == pids

    supervisor.send_signal(sig)
    out, _ = supervisor.communicate(timeout=30)

    assert supervisor.returncode == 0
    assert f"stopped: received {sig.name}" in out
    assert alive(pids) == []
    assert not (tmp_path / "demo-processes.json").exists()


def test_processes_deaf_to_sigterm_are_killed_after_the_timeout(tmp_path):
    supervisor, pids = start_supervisor(tmp_path, DEAF_SERVICE, timeout=0.5)

    started = time.monotonic()
    supervisor.terminate()
    supervisor.communicate(timeout=30)

    assert alive(pids) == []
    assert time.monotonic() - started < 10


def stop_command(home: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"AIRLOOP_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "airloop", "stop"], capture_output=True, text=True, env=env, timeout=60
    )


def test_stop_command_stops_the_services_of_a_supervisor_killed_with_sigkill(tmp_path):
    supervisor, pids = start_supervisor(tmp_path)
    supervisor.kill()
    supervisor.wait(timeout=10)
    assert alive(pids) == pids, "SIGKILL leaves the services running: what `stop` is for"

    done = stop_command(tmp_path)

    assert done.returncode == 0, done.stderr
    assert "first (process group" in done.stdout and "second (process group" in done.stdout
    assert alive(pids) == []
    assert not (tmp_path / "demo-processes.json").exists()


def test_stop_command_asks_a_running_supervisor_to_stop(tmp_path):
    supervisor, pids = start_supervisor(tmp_path)

    done = stop_command(tmp_path)
    out, _ = supervisor.communicate(timeout=30)

    assert done.returncode == 0, done.stderr
    assert f"supervisor pid {supervisor.pid} stopped its services" in done.stdout
    assert "stopped: received SIGTERM" in out
    assert alive(pids) == []


def test_a_second_supervisor_on_the_same_state_file_is_refused(tmp_path):
    supervisor, pids = start_supervisor(tmp_path)
    try:
        with (
            pytest.raises(AlreadyRunning, match=rf"already running as pid {supervisor.pid}"),
            Supervisor(tmp_path / "demo-processes.json", tmp_path / "logs"),
        ):
            pass
        assert alive(pids) == pids
    finally:
        supervisor.terminate()
        supervisor.communicate(timeout=30)
