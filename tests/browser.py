"""Headless Chromium for UI tests: Debian's package (installed when missing and we are root), driven from its
command line: ``--dump-dom`` after the page's scripts ran, and ``--screenshot``.

No Playwright and nothing downloaded at run time: the page is loaded with a virtual time budget, so the single-page
apps (MLflow's, Airflow's) finish their requests before the DOM is written out.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import apt

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's network is closed: no update or sync calls
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    """The Chromium binary; installs Debian's package when it is missing (as root), else skips saying why."""

    def found() -> str | None:
        return shutil.which("chromium") or shutil.which("chromium-browser")

    try:
        apt.install(["chromium"], installed=lambda: found() is not None)
    except apt.AptUnavailable as error:
        pytest.skip(f"headless Chromium is not installed: {error}")
    binary = found()
    if not binary:
        pytest.skip("apt-get installed chromium but there is no chromium binary on PATH")
    return binary


@contextlib.contextmanager
def chromium_profile() -> Iterator[str]:
    """A throwaway Chromium profile folder, removed once every process of the browser that used it is gone.

    Chromium's helpers (renderer, GPU, crash handler) can outlive the main process for a moment and keep writing
    into the profile: a plain TemporaryDirectory then fails with "Directory not empty". Launch the browser with
    ``start_new_session=True`` and call :func:`stop_chromium` before leaving."""
    profile = tempfile.mkdtemp(prefix="airloop-chromium-")
    try:
        yield profile
    finally:
        for _ in range(20):
            try:
                shutil.rmtree(profile)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.25)  # a helper still writing: it is being killed with its session
        else:
            shutil.rmtree(profile, ignore_errors=True)


def stop_chromium(process: subprocess.Popen) -> None:
    """Stop a browser started with ``start_new_session=True`` and every helper process of its session."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # helpers left in the session


def _run(url: str, *extra: str, budget_ms: int = 20_000) -> subprocess.CompletedProcess:
    with chromium_profile() as profile:
        command = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            stdout, stderr = process.communicate(timeout=120)
        finally:
            stop_chromium(process)
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def page_text(url: str) -> str:
    """The visible text of ``url`` once its scripts ran (tags and styles removed, whitespace collapsed)."""
    done = _run(url, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", done.stdout, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom))).strip()


def screenshot(url: str, path: Path, size: str = "1400,900") -> Path:
    """A PNG of ``url`` at ``size`` (width,height)."""
    done = _run(url, f"--screenshot={path}", f"--window-size={size}", "--hide-scrollbars")
    assert path.is_file(), done.stderr[-2000:]
    return path
