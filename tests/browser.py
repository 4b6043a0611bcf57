"""Headless Chromium for UI tests: Debian's package (installed when missing and we are root), driven from its
command line: ``--dump-dom`` after the page's scripts ran, and ``--screenshot``.

No Playwright and nothing downloaded at run time: the page is loaded with a virtual time budget, so the single-page
apps (MLflow's, Airflow's) finish their requests before the DOM is written out.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
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


def _run(url: str, *extra: str, budget_ms: int = 20_000) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="airloop-chromium-") as profile:
        command = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


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
