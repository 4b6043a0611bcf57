"""Run services each in its own session, record them in a state file, and stop every process of them on a signal.

Each service starts in a new session, so it is a process group of its own that a terminal's Ctrl-C does not reach;
the supervisor stops it, children and all, when it receives SIGTERM, SIGINT or SIGHUP (SIGTERM to every process,
SIGKILL to whatever is left after ``stop_timeout``; a second signal skips the wait). The state file lists the groups,
so :func:`stop_recorded` (``python -m airloop stop``) can stop them from another terminal, even when the supervising
process itself was killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_KILL_WAIT = 5.0
_PROC = Path("/proc")


class Stopped(BaseException):
    """A stop signal reached the supervisor (a BaseException, as KeyboardInterrupt: ``except Exception`` misses it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


class AlreadyRunning(RuntimeError):
    """Another supervisor recorded in the same state file is still running."""


@dataclass
class Service:
    """A command the supervisor started: the leader of its own process group and session."""

    name: str
    process: subprocess.Popen
    log: Path
    started: int | None

    @property
    def group(self) -> int:
        """The process group (and session) id: the leader's pid."""
        return self.process.pid

    def running(self) -> bool:
        """Whether the leader has not exited yet."""
        return self.process.poll() is None


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, process group, session, start time) of a live process from /proc, or None."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[2]), int(fields[3]), int(fields[19])


def _start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[3] if stat else None


def _boot_id() -> str | None:
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None


def _is_same_process(pid: int, started: int | None) -> bool:
    """Whether ``pid`` is still the process that was recorded (not exited, not a zombie, not a reused pid)."""
    if not _PROC.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZX" and (started is None or stat[3] == started)


def _live_processes() -> list[tuple[int, int, int]]:
    """(pid, process group, session) of every process that is not a zombie."""
    processes = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] not in "ZX":
            processes.append((int(entry.name), stat[1], stat[2]))
    return processes


def members(groups: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
    """For each of ``groups``: its live processes (zombies excluded) as (pid, process group), in group or session."""
    wanted = {group: [] for group in groups}
    if not _PROC.is_dir():  # no /proc (macOS): whether anything, zombies included, is left in the group
        for group in wanted:
            try:
                os.killpg(group, 0)
                wanted[group].append((group, group))
            except ProcessLookupError:
                pass
            except PermissionError:
                wanted[group].append((group, group))
        return wanted
    for pid, group, session in _live_processes():
        for key in {group, session} & wanted.keys():
            wanted[key].append((pid, group))
    return wanted


def _signal_groups(groups: Iterable[int], sig: signal.Signals) -> None:
    # A session's members that moved to a process group of their own are signalled through that group.
    targets = {group for found in members(groups).values() for _, group in found} | set(groups)
    for target in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(target, sig)


def stop_groups(
    groups: Iterable[int],
    timeout: float,
    hurry: Callable[[], bool] = lambda: False,
    reap: Callable[[], object] | None = None,
) -> list[int]:
    """SIGTERM every process of ``groups`` at once, SIGKILL what is left after ``timeout``; return the groups left.

    Args:
        groups: process group ids (each also a session id, as the supervisor starts them).
        timeout: seconds to wait after SIGTERM before SIGKILL.
        hurry: polled while waiting; when it returns True, SIGKILL without waiting longer.
        reap: called while waiting, so that a parent can reap its exited children (a zombie is not waited for).
    """
    left = [group for group, found in members(groups).items() if found]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, _KILL_WAIT)):
        _signal_groups(left, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline and (sig == signal.SIGKILL or not hurry()):
            if reap:
                reap()
            time.sleep(0.05)
            left = [group for group, found in members(left).items() if found]
        if not left:
            break
    return left


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=2))
    os.replace(partial, path)


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {}  # a torn or edited file: nothing recorded can be trusted


def _say(message: str) -> None:
    with contextlib.suppress(OSError):  # the terminal went away (SIGHUP): keep stopping regardless
        print(message, flush=True)


class Supervisor:
    """Start services and stop them all on leaving the ``with`` block or on SIGTERM, SIGINT and SIGHUP.

    Use in the main thread (signal handlers can only be installed there)::

        with Supervisor(home / "demo-processes.json", home / "logs") as supervisor:
            supervisor.start("mlflow-server", ["mlflow", "server"])
            supervisor.watch()  # until a service exits; a stop signal raises Stopped
    """

    def __init__(self, state_file: Path, logs_dir: Path, stop_timeout: float = 20.0) -> None:
        self.state_file = state_file
        self.logs_dir = logs_dir
        self.stop_timeout = stop_timeout
        self.services: list[Service] = []
        self._previous_handlers: dict[int, Any] = {}
        self._starting = False
        self._pending: int | None = None
        self._stopping = False
        self._hurry = False

    def __enter__(self) -> Supervisor:
        self._take_over_state_file()
        self._record()
        for sig in STOP_SIGNALS:
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        while True:
            try:
                self.stop()
                break
            except Stopped:  # arrived before stop() could mark itself as stopping: just stop again
                continue
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Service:
        """Start ``command`` in a session of its own (in ``cwd``, else this working directory), output to
        ``logs_dir/<name>.log``, and record it."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = self.logs_dir / f"{name}.log"
        # A stop signal waits until the new group is recorded: otherwise it could be left behind unrecorded.
        self._starting = True
        try:
            with log.open("ab") as out:
                process = subprocess.Popen(
                    list(command),
                    env=None if env is None else dict(env),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            service = Service(name, process, log, _start_time(process.pid))
            self.services.append(service)
            self._record()
        finally:
            self._starting = False
        if self._pending is not None:
            raise Stopped(self._pending)
        return service

    def watch(self, every: float = 1.0) -> Service:
        """Block until a service exits and return it (a stop signal raises :class:`Stopped` instead)."""
        while True:
            for service in self.services:
                if not service.running():
                    return service
            time.sleep(every)

    def stop(self) -> None:
        """Stop every service's processes (SIGTERM, then SIGKILL after ``stop_timeout``); forget the state file."""
        self._stopping = True
        alive = members(s.group for s in self.services)
        running = [s for s in self.services if alive[s.group]]
        if running:
            _say(f"stopping {', '.join(s.name for s in running)} ...")
        left = stop_groups(
            [s.group for s in running],
            self.stop_timeout,
            hurry=lambda: self._hurry,
            reap=lambda: [s.process.poll() for s in self.services],
        )
        for service in self.services:
            service.process.poll()
        if left:
            _say(f"could not stop process groups {left}; they stay recorded in {self.state_file}")
            return
        self.services.clear()
        self.state_file.unlink(missing_ok=True)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._stopping:
            self._hurry = True  # asked again while stopping: SIGKILL what is left now
        elif self._starting:
            self._pending = signum
        else:
            raise Stopped(signum)

    def _take_over_state_file(self) -> None:
        state = _read_state(self.state_file)
        if state is None:
            return
        owner = state.get("supervisor") or {}
        if owner.get("pid") != os.getpid() and _recorded_live(state, owner):
            raise AlreadyRunning(
                f"already running as pid {owner['pid']} (state in {self.state_file}); stop it with `make stop`"
            )
        for line in stop_recorded(self.state_file, self.stop_timeout):
            _say(f"left over from an earlier run: {line}")

    def _record(self) -> None:
        _write_json(
            self.state_file,
            {
                "boot_id": _boot_id(),
                "supervisor": {"pid": os.getpid(), "started": _start_time(os.getpid())},
                "services": [
                    {
                        "name": s.name,
                        "group": s.group,
                        "started": s.started,
                        "command": s.process.args,
                        "log": str(s.log),
                    }
                    for s in self.services
                ],
            },
        )


def _recorded_live(state: Mapping[str, Any], process: Mapping[str, Any]) -> bool:
    """Whether a recorded process is still the same one (same boot, same pid and start time)."""
    if state.get("boot_id") != _boot_id() or not process.get("pid"):
        return False
    return _is_same_process(int(process["pid"]), process.get("started"))


def _recorded_groups(state: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The recorded groups that still hold processes of ours (a group whose leader's pid was reused is not ours)."""
    if state.get("boot_id") != _boot_id():
        return []
    recorded = [(s["name"], int(s["group"]), s.get("started")) for s in state.get("services", [])]
    alive = members(group for _, group, _ in recorded)
    groups = []
    for name, group, started in recorded:
        leader = _stat(group)
        reused = leader is not None and started is not None and leader[3] != started
        if not reused and alive[group]:
            groups.append((name, group))
    return groups


def stop_recorded(state_file: Path, timeout: float = 20.0) -> list[str]:
    """Stop what ``state_file`` records: ask a live supervisor to stop, then stop any group left; say what was done.

    Works whether the supervisor is running, exited, or was killed with SIGKILL (its groups are then orphans).
    """
    state = _read_state(state_file)
    if state is None:
        return []
    done = []
    owner = state.get("supervisor") or {}
    if owner.get("pid") != os.getpid() and _recorded_live(state, owner):
        pid = int(owner["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout + 2 * _KILL_WAIT
        while _is_same_process(pid, owner.get("started")) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_same_process(pid, owner.get("started")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            done.append(f"supervisor pid {pid} did not stop in time: killed")
        else:
            done.append(f"supervisor pid {pid} stopped its services")
    groups = _recorded_groups(state)
    left = stop_groups([group for _, group in groups], timeout)
    for name, group in groups:
        done.append(f"{name} (process group {group}): {'still running' if group in left else 'stopped'}")
    if not left:
        state_file.unlink(missing_ok=True)
    return done
