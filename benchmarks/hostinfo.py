"""The machine a benchmark ran on, as every results file records it: CPU, memory, OS, Python, load, packages."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any


def machine(packages: Iterable[str] = ()) -> dict[str, Any]:
    """CPU, memory, OS, Python, the load average now and the versions of ``packages`` (when given)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line for line in cpuinfo.read_text().splitlines() if "model name" in line] if cpuinfo.is_file() else []
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    found: dict[str, Any] = {
        "cpu": names[0].split(":", 1)[1].strip() if names else platform.processor(),
        "cpus": os.cpu_count(),
        "memory_gib": round(int(meminfo[1]) / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if packages:
        found["packages"] = {p: version(p) for p in packages}
    found["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return found
