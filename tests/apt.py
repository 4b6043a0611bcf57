"""Debian packages that tests need (PostgreSQL, Chromium), installed with apt-get when missing and we are root.

One installer at a time on the machine: test workers (``make test`` runs pytest-xdist) that need a package at the same
moment queue on a lock file instead of failing on dpkg's own lock, and a worker that waited finds the package already
installed and installs nothing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "airloop-tests-apt.lock"


class AptUnavailable(RuntimeError):
    """The packages are missing and cannot be installed here (not root, no apt-get, or apt-get failed)."""


def install(packages: Sequence[str], installed: Callable[[], bool], recommends: bool = True) -> None:
    """Install ``packages`` unless ``installed()`` says they are there, checked again under the lock."""
    if installed():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise AptUnavailable(f"{' '.join(packages)}: missing, and not root with apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    extra = [] if recommends else ["--no-install-recommends"]
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if installed():  # another worker installed them while this one waited
            return
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *extra, *packages]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 0:
                raise AptUnavailable(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
