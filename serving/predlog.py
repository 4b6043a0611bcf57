"""Append-only prediction and feedback logs: buffered in memory, flushed by a background thread to partitioned
Parquet (``<root>/date=YYYY-MM-DD/part-*.parquet``, written to a temp name then renamed), flushed on shutdown."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SLICE = 128


class ParquetLog:
    """A thread-safe buffer of rows that a background thread writes out every ``interval`` seconds or ``max_rows``."""

    def __init__(self, root: Path, interval: float, max_rows: int) -> None:
        self.root = Path(root)
        self.interval = interval
        self.max_rows = max_rows
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows; never blocks on I/O."""
        with self._lock:
            self._rows.extend(rows)
            full = len(self._rows) >= self.max_rows
        if full:
            self._wake.set()

    def start(self) -> None:
        """Start the background writer."""
        self._thread = threading.Thread(target=self._run, name=f"parquet-log-{self.root.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a failed write keeps the rows for the next attempt; never kill the writer
                log.exception("writing %s failed; will retry", self.root)

    def flush(self) -> int:
        """Write everything buffered now; returns the number of rows written."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            now = datetime.now(UTC)
            folder = self.root / f"date={now:%Y-%m-%d}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{now:%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
            tmp = folder / f".{name}.tmp"
            # Converting Python rows holds the GIL; slices with a yield between keep each pause on the
            # event loop short (a 1,000-row conversion in one piece showed up in the request latency tail).
            tables = []
            for start in range(0, len(rows), _SLICE):
                tables.append(pa.Table.from_pylist(rows[start : start + _SLICE]))
                time.sleep(0)
            pq.write_table(pa.concat_tables(tables, promote_options="default"), tmp)
            tmp.rename(folder / name)
        except Exception:
            with self._lock:
                self._rows[:0] = rows
            raise
        self.written += len(rows)
        return len(rows)

    def close(self) -> None:
        """Stop the writer and flush what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()


def read_log(root: Path):
    """Every row written under ``root`` as one DataFrame (empty when nothing was logged)."""
    import pandas as pd

    parts = sorted(Path(root).glob("date=*/part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()
