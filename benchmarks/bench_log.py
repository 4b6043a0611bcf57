"""A day of one replica's prediction log, read before and after compaction, on a local disk and on S3 (moto).

Usage: python benchmarks/bench_log.py [--hours 24] [--parts-per-hour 3600] [--s3-hours 24] [--s3-parts-per-hour 360]
       [--rate 13] [--backends local s3] [--repeats 3] [--quick]  -> benchmarks/results/log.{json,md}

Traffic: one replica scoring ``--rate`` predictions per second (13/s: 46,800 rows an hour) for ``--hours`` simulated
hours, written through the real ``LogWriter`` (built with a long interval; ``append`` then ``flush()`` once per
simulated flush, ``--parts-per-hour`` flushes an hour: 3,600 is one flush per simulated second, as serving does under
steady traffic). Every row's ``predicted_at`` is its simulated time and its ``record`` a readmission-like encounter of
22 fields (a pool of 4,096 generated ones); request ids come from ``new_request_ids``. The simulated day starts at
``DAY_START``, a fixed instant in the future, so that ``compact_log`` can be given ``now`` = the end of the day and
still see the compacted files (stamped with the real clock) as older than ``grace_s=0``.

Each backend, in turn:

1. write the day (timed: the ``append`` + ``flush`` calls only; generating rows is not);
2. ``load_predictions(storage, start, end)`` (every column, records flattened) for the last hour and for the whole
   day, before compaction: files in the window, seconds (median of ``--repeats``; the day's window once: it is the
   slow one), S3 requests by kind;
3. ``compact_log(now=end of day, lookback_hours=hours + 1, settle_s=0, grace_s=0)`` twice: the first pass writes one
   ``compact-<digest>.parquet`` per hour folder, the second deletes the parts they hold (timed and counted apart);
4. the same reads after: the row count, the set of request ids and a content digest of every window must equal what
   was written and what was read before, or the benchmark fails.

S3 is moto's server (as ``tests/s3_server.py`` runs it) in a child process, behind a WSGI middleware that counts every
HTTP request by kind (LIST, HEAD, GET with bytes sent, PUT, DELETE, ...); the benchmark reads the counters before and
after each phase, so reads, writes and compaction are counted apart. The child process keeps moto off the benchmark's
GIL (as a real S3 would be). moto answers in milliseconds, so S3 seconds here are not S3 seconds; the request counts are
what carries over.

The S3 day is smaller by default (``--s3-parts-per-hour 360``: a flush every 10 simulated seconds, 130 rows a part,
the same rows an hour): through moto the full 86,400 parts would take well over half an hour to write and as long
again to read before compaction. What was run is recorded as it was, and nothing is scaled up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hostinfo import machine

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
DAY_START = datetime(2030, 3, 4, 12, tzinfo=UTC)  # noon to noon: a day's window spans two date folders
WRITER_ID = "replica-0"
TARGET_LOCAL_S = 2.0  # a 24 h window of one replica, after compaction, local disk
TARGET_S3_REQUESTS = 100  # the same window on S3
RECORD_POOL = 4096
COUNTS_PATH = "/__bench__/counts"
ACCESS_KEY, SECRET_KEY = "bench-log", "bench-log-secret"
PACKAGES = ("pyarrow", "pandas", "moto", "werkzeug")


# ------------------------------------------------------------------------------------------------ S3 (moto), counted


def classify(method: str, path: str, query: str) -> str:
    """The kind of an S3 request (path-style addressing: /bucket/key)."""
    _, _, key = path.lstrip("/").partition("/")
    args = {part.split("=", 1)[0] for part in query.split("&") if part}
    if method == "GET":
        if key:
            return "GET"
        return "LIST" if not args or args & {"list-type", "prefix", "delimiter", "continuation-token"} else "GET bucket"
    if method == "HEAD":
        return "HEAD" if key else "HEAD bucket"
    if method == "PUT":
        if not key:
            return "PUT bucket"
        return "PUT part" if "partNumber" in args else "PUT"
    if method == "POST":
        if "delete" in args:
            return "POST delete"
        return "POST multipart" if args & {"uploads", "uploadId"} else "POST"
    if method == "DELETE":
        return ("DELETE multipart" if "uploadId" in args else "DELETE") if key else "DELETE bucket"
    return method


class CountingApp:
    """WSGI middleware: counts requests by kind and the bytes of GET answers; ``COUNTS_PATH`` returns the counters."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.get_bytes = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "/")
        if path == COUNTS_PATH:
            with self.lock:
                body = json.dumps({"requests": dict(self.requests), "get_bytes": self.get_bytes}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        kind = classify(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""))
        with self.lock:
            self.requests[kind] += 1
        answer = self.app(environ, start_response)
        if kind != "GET":
            return answer
        return self._counted(answer)

    def _counted(self, answer: Any) -> Iterator[bytes]:
        try:
            for chunk in answer:
                with self.lock:
                    self.get_bytes += len(chunk)
                yield chunk
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()


def serve_s3(port: int) -> None:
    """The child process: moto's S3 (as ThreadedMotoServer builds it) behind ``CountingApp``, until killed."""
    import logging

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request

    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    print("ready", flush=True)
    server.serve_forever()


class S3Server:
    """The counted moto server in a child process."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-s3", str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the moto server did not start")

    def counts(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.endpoint + COUNTS_PATH, timeout=30) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The requests made between two counter readings, by kind, with the total."""
    kinds = {k: after["requests"].get(k, 0) - before["requests"].get(k, 0) for k in after["requests"]}
    kinds = {k: v for k, v in sorted(kinds.items()) if v}
    return {"total": sum(kinds.values()), "by_kind": kinds, "get_bytes": after["get_bytes"] - before["get_bytes"]}


# ---------------------------------------------------------------------------------------------------------- traffic


def make_records(seed: int) -> list[dict[str, Any]]:
    """Readmission-like encounters as clients post them: 22 fields (ids, demographics, counts, codes, medications)."""
    rng = random.Random(seed)
    icd9 = ["428", "250.01", "414", "786", "427", "V45", "276", "38", "E888", "401", "599", "250.6", "682", "?"]
    records = []
    for _ in range(RECORD_POOL):
        records.append(
            {
                "patient_nbr": 100_000_000 + rng.randrange(10_000_000),
                "race": rng.choice(["Caucasian", "AfricanAmerican", "Hispanic", "Asian", "Other", "?"]),
                "gender": rng.choice(["Female", "Male"]),
                "age": f"[{(lo := rng.randrange(0, 100, 10))}-{lo + 10})",
                "admission_type_id": rng.randint(1, 8),
                "discharge_disposition_id": rng.randint(1, 30),
                "admission_source_id": rng.randint(1, 26),
                "time_in_hospital": rng.randint(1, 14),
                "medical_specialty": rng.choice(["InternalMedicine", "Cardiology", "Surgery-General", "?"]),
                "num_lab_procedures": rng.randint(1, 132),
                "num_procedures": rng.randint(0, 6),
                "num_medications": rng.randint(1, 81),
                "number_outpatient": rng.randint(0, 5),
                "number_emergency": rng.randint(0, 3),
                "number_inpatient": rng.randint(0, 6),
                "diag_1": rng.choice(icd9),
                "diag_2": rng.choice(icd9),
                "diag_3": rng.choice(icd9),
                "number_diagnoses": rng.randint(1, 16),
                "A1Cresult": rng.choice(["None", "Norm", ">7", ">8"]),
                "insulin": rng.choice(["No", "Steady", "Up", "Down"]),
                "diabetesMed": rng.choice(["No", "Yes"]),
            }
        )
    return records


def id_digest(ids: Any) -> str:
    """One digest of a set of request ids (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def write_day(storage: Any, hours: int, parts_per_hour: int, rate: float, seed: int) -> dict[str, Any]:
    """``hours`` of traffic at ``rate`` predictions/s through a ``LogWriter``, ``parts_per_hour`` flushes an hour."""
    from airloop.predlog import PREDICTIONS, LogWriter, PredictionRow, new_request_ids
    from airloop.registry.contract import Alias

    rng = random.Random(seed)
    records = make_records(seed)
    rows_per_hour = round(rate * 3600)
    writer = LogWriter(storage, PREDICTIONS, interval_s=86_400, writer_id=WRITER_ID)
    start = DAY_START.timestamp()
    all_ids: list[str] = []
    last_hour_ids: list[str] = []
    writing_s = 0.0
    flush_s: list[float] = []
    parts = rows = 0
    wall = time.perf_counter()
    for hour in range(hours):
        ids = new_request_ids(rows_per_hour)
        hour_start = start + hour * 3600
        for flush in range(parts_per_hour):
            lo, hi = flush * rows_per_hour // parts_per_hour, (flush + 1) * rows_per_hour // parts_per_hour
            batch = []
            for j in range(lo, hi):
                probability = rng.random()
                batch.append(
                    PredictionRow(
                        request_id=ids[j],
                        predicted_at=hour_start + (j + 0.5) * 3600 / rows_per_hour,
                        experiment_id=None,
                        variant=Alias.CHAMPION.value,
                        model_version="7",
                        entity_id=str(200_000_000 + hour * rows_per_hour + j),
                        probability=probability,
                        predicted_class=int(probability >= 0.5),
                        shadow=False,
                        record=records[(hour * rows_per_hour + j) % RECORD_POOL],
                        latency_ms=round(rng.uniform(1.0, 6.0), 2),
                    )
                )
            began = time.perf_counter()
            writer.append(batch)
            written = writer.flush()
            took = time.perf_counter() - began
            writing_s += took
            flush_s.append(took)
            if written != len(batch):
                raise RuntimeError(f"flush wrote {written} of {len(batch)} rows")
            parts += 1
            rows += written
        all_ids += ids
        last_hour_ids = ids
        if (hour + 1) % 4 == 0 or hour + 1 == hours:
            print(f"  wrote hour {hour + 1}/{hours}: {parts:,} parts, {writing_s:.1f} s in the writer", flush=True)
    flush_s.sort()
    return {
        "hours": hours,
        "parts_per_hour": parts_per_hour,
        "rate_per_s": rate,
        "rows_per_hour": rows_per_hour,
        "parts": parts,
        "rows": rows,
        "writer_s": round(writing_s, 2),
        "wall_s": round(time.perf_counter() - wall, 2),
        "flush_ms_median": round(1000 * flush_s[len(flush_s) // 2], 3),
        "flush_ms_p99": round(1000 * flush_s[min(len(flush_s) - 1, int(len(flush_s) * 0.99))], 3),
        "_ids": {"last_hour": id_digest(last_hour_ids), "all": id_digest(all_ids)},
    }


# ---------------------------------------------------------------------------------------------------------- reading


def files_in_window(storage: Any, start: datetime, end: datetime) -> dict[str, int]:
    """The files stored in the window's hour folders, and those a reader reads (``live_files``)."""
    from airloop.predlog.compact import COMPACT_PREFIX, PART_PREFIX, live_files

    stored = Counter()
    live = 0
    hour = start
    while hour < end:
        folder = f"date={hour:%Y-%m-%d}/hour={hour:%H}"
        names = [n for n in storage.listdir(*folder.split("/")) if n.endswith(".parquet")]
        stored["parts"] += sum(n.startswith(PART_PREFIX) for n in names)
        stored["compacted"] += sum(n.startswith(COMPACT_PREFIX) for n in names)
        live += len(live_files(storage, storage.path(folder), names).live)
        hour += timedelta(hours=1)
    return {"parts_stored": stored["parts"], "compacted_stored": stored["compacted"], "files_read": live}


def frame_digest(frame: Any) -> str:
    """A digest of a frame's columns and content, whatever the order of its rows."""
    import pandas as pd

    ordered = frame.sort_values("request_id", kind="stable").reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(ordered, index=False).to_numpy()
    return hashlib.sha256(("\n".join(ordered.columns) + "\n").encode() + hashed.tobytes()).hexdigest()


def read_window(
    storage: Any, start: datetime, end: datetime, repeats: int, server: S3Server | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``load_predictions`` of ``[start, end)`` ``repeats`` times: seconds, S3 requests; and what it returned."""
    import gc

    from airloop.predlog import load_predictions

    seconds, requests = [], []
    frame = None
    for _ in range(repeats):
        frame = None
        gc.collect()
        before = server.counts() if server else None
        began = time.perf_counter()
        frame = load_predictions(storage, start, end)
        seconds.append(round(time.perf_counter() - began, 3))
        if server:
            requests.append(diff(server.counts(), before))
    assert frame is not None
    ids = frame["request_id"]
    result: dict[str, Any] = {
        "seconds": seconds,
        "median_s": round(statistics.median(seconds), 3),
        "rows": len(frame),
        "columns": len(frame.columns),
    }
    if server:
        result["requests"] = requests[0]
        if any(r["total"] != requests[0]["total"] for r in requests):
            result["requests_per_run"] = [r["total"] for r in requests]
    seen = {
        "rows": len(frame),
        "unique_ids": int(ids.nunique()),
        "ids": id_digest(ids.tolist()),
        "content": frame_digest(frame),
    }
    return result, seen


# ------------------------------------------------------------------------------------------------------ one backend


def run_backend(
    name: str, storage: Any, server: S3Server | None, hours: int, parts_per_hour: int, args: argparse.Namespace
) -> dict[str, Any]:
    from airloop.predlog import PREDICTIONS
    from airloop.predlog.compact import COMPACT_PREFIX, compact_log

    def counted() -> dict[str, Any] | None:
        return server.counts() if server else None

    end = DAY_START + timedelta(hours=hours)
    windows = {"1h": (end - timedelta(hours=1), end), f"{hours}h": (DAY_START, end)}
    out: dict[str, Any] = {"backend": name, "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}

    print(f"[{name}] writing {hours} h x {parts_per_hour} parts/h at {args.rate:g} predictions/s", flush=True)
    before = counted()
    written = write_day(storage, hours, parts_per_hour, args.rate, args.seed)
    if server:
        written["requests"] = diff(server.counts(), before)
    ids_by_hour = written.pop("_ids")
    out["write"] = written
    print(f"[{name}] wrote {written['parts']:,} parts in {written['writer_s']} s", flush=True)

    expected = {
        "1h": {"rows": written["rows_per_hour"], "ids": ids_by_hour["last_hour"]},
        f"{hours}h": {"rows": written["rows"], "ids": ids_by_hour["all"]},
    }
    seen: dict[str, dict[str, Any]] = {}
    out["before"], out["after"] = {}, {}
    for label, (lo, hi) in windows.items():
        repeats = args.repeats if label == "1h" else 1
        print(f"[{name}] reading {label} before compaction ({repeats}x)", flush=True)
        result, seen[label] = read_window(storage, lo, hi, repeats, server)
        result.update(files_in_window(storage, lo, hi))
        out["before"][label] = result
        print(f"[{name}]   {result['files_read']:,} files, {result['median_s']} s, {result.get('requests', '')}")

    out["compaction"] = []
    compact_now = end  # the day's end; DAY_START is in the future, so every compacted file is "older" than now
    for run in (1, 2):
        print(f"[{name}] compaction pass {run}", flush=True)
        before = counted()
        began = time.perf_counter()
        done = compact_log(storage, PREDICTIONS, now=compact_now, lookback_hours=hours + 1, settle_s=0, grace_s=0)
        took = time.perf_counter() - began
        entry: dict[str, Any] = {
            "pass": run,
            "seconds": round(took, 2),
            "hour_folders": len(done),
            "compacted_files_written": sum(1 for d in done if d.get("compacted")),
            "files_merged": sum(d["files"] for d in done if d.get("compacted")),
            "rows_merged": sum(d["rows"] for d in done),
            "files_deleted": sum(d["deleted"] for d in done),
        }
        if server:
            entry["requests"] = diff(server.counts(), before)
        out["compaction"].append(entry)
        print(f"[{name}]   {entry}", flush=True)

    # The compacted files: sizes and footers (the footer lists every part a file holds).
    import pyarrow.parquet as pq

    compacted = [p for p in storage.walk_files() if p.rsplit("/", 1)[-1].startswith(COMPACT_PREFIX)]
    sizes, footers, groups = [], [], []
    for path in compacted:
        info = storage.fs.get_file_info(storage.path(*path.split("/")))
        metadata = pq.read_metadata(storage.path(*path.split("/")), filesystem=storage.fs)
        sizes.append(info.size)
        footers.append(metadata.serialized_size)
        groups.append(metadata.num_row_groups)
    remaining = [p for p in storage.walk_files() if p.rsplit("/", 1)[-1].endswith(".parquet")]
    out["stored_after"] = {
        "compacted_files": len(compacted),
        "parquet_files_left": len(remaining),
        "compacted_bytes_total": sum(sizes),
        "compacted_file_bytes_median": int(statistics.median(sizes)) if sizes else 0,
        "compacted_footer_bytes_median": int(statistics.median(footers)) if footers else 0,
        "compacted_row_groups_median": int(statistics.median(groups)) if groups else 0,
    }

    checks = {}
    for label, (lo, hi) in windows.items():
        print(f"[{name}] reading {label} after compaction ({args.repeats}x)", flush=True)
        result, after = read_window(storage, lo, hi, args.repeats, server)
        result.update(files_in_window(storage, lo, hi))
        out["after"][label] = result
        print(f"[{name}]   {result['files_read']:,} files, {result['median_s']} s, {result.get('requests', '')}")
        first = seen[label]
        want = expected[label]
        check = {
            "rows_written": want["rows"],
            "rows_before": first["rows"],
            "rows_after": after["rows"],
            "no_duplicate_ids": first["unique_ids"] == first["rows"] and after["unique_ids"] == after["rows"],
            "ids_before_equal_after": first["ids"] == after["ids"],
            "content_before_equal_after": first["content"] == after["content"],
        }
        check["ids_equal_written"] = first["ids"] == want["ids"]
        check["ok"] = (
            check["rows_written"] == check["rows_before"] == check["rows_after"]
            and check["no_duplicate_ids"]
            and check["ids_before_equal_after"]
            and check["content_before_equal_after"]
            and check["ids_equal_written"]
        )
        checks[label] = check
    out["checks"] = checks
    out["ratios"] = ratios(out)
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    """Before / after, per window: files read, seconds (medians), S3 requests."""
    found = {}
    for label, before in out["before"].items():
        after = out["after"][label]
        entry = {
            "files": round(before["files_read"] / max(after["files_read"], 1), 1),
            "seconds": round(before["median_s"] / max(after["median_s"], 1e-9), 1),
        }
        if "requests" in before:
            entry["requests"] = round(before["requests"]["total"] / max(after["requests"]["total"], 1), 1)
            entry["requests_per_file_read_before"] = round(before["requests"]["total"] / before["files_read"], 2)
            entry["requests_per_file_read_after"] = round(after["requests"]["total"] / after["files_read"], 2)
        found[label] = entry
    return found


BACKEND_ORDER = ["local", "s3", "s3-full-rate"]


def earlier_backends(ran: set[str]) -> dict[str, Any]:
    """The backends of the committed results that this run did not run (``--backends local`` keeps the S3 runs and
    the reverse), each with the time of the run that measured it."""
    path = RESULTS / "log.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    family = {name.split("-")[0] for name in ran}
    return {
        name: {**entry, "when": entry.get("when", old["when"])}
        for name, entry in old["backends"].items()
        if name.split("-")[0] not in family and name in BACKEND_ORDER
    }


# ----------------------------------------------------------------------------------------------------------- report


def targets(backends: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, on the day's window after compaction, as run (the scale is part of the verdict)."""
    found = {}
    local, s3 = backends.get("local"), backends.get("s3")
    if local:
        hours = local["write"]["hours"]
        value = local["after"][f"{hours}h"]["median_s"]
        found["local_day_window_s"] = {
            "value": value,
            "target": f"<= {TARGET_LOCAL_S:g} s for 24 h",
            "scale": f"{hours} h x {local['write']['parts_per_hour']} parts/h",
            "met": value <= TARGET_LOCAL_S and hours >= 24,
        }
    if s3:
        hours = s3["write"]["hours"]
        value = s3["after"][f"{hours}h"]["requests"]["total"]
        found["s3_day_window_requests"] = {
            "value": value,
            "target": f"<= {TARGET_S3_REQUESTS} requests for 24 h",
            "scale": f"{hours} h x {s3['write']['parts_per_hour']} parts/h",
            "met": value <= TARGET_S3_REQUESTS and hours >= 24,
        }
    return found


def kinds(requests: dict[str, Any] | None) -> str:
    if not requests:
        return ""
    parts = ", ".join(f"{k} {v:,}" for k, v in requests["by_kind"].items())
    return f"{requests['total']:,} ({parts})"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Prediction log: a day of one replica, read before and after compaction",
        "",
        f"{result['when']}, {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"{m['packages']}; load average at start {m['load_average_at_start']} (other jobs share this host). "
        f"Total run {result['total_run_s']} s.",
        "",
        "## Targets (24 h window of one replica, after compaction)",
        "",
    ]
    for name, t in result["targets"].items():
        verdict = "met" if t["met"] else "NOT met"
        lines.append(f"- **{name}**: {t['value']} (target {t['target']}; run at {t['scale']}): {verdict}")
    lines += ["", "## Reads: `load_predictions(storage, start, end)`, every column", ""]
    lines += [
        "| backend | scale | window | | files read | files stored | rows | seconds (median) | runs | S3 requests |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for name, b in result["backends"].items():
        w = b["write"]
        scale = f"{w['hours']} h x {w['parts_per_hour']:,} parts/h"
        for label in b["before"]:
            for phase in ("before", "after"):
                r = b[phase][label]
                lines.append(
                    f"| {name} | {scale} | {label} | {phase} | {r['files_read']:,} | "
                    f"{r['parts_stored'] + r['compacted_stored']:,} | "
                    f"{r['rows']:,} | {r['median_s']} | {r['seconds']} | {kinds(r.get('requests'))} |"
                )
    lines += ["", "Before / after:", ""]
    for name, b in result["backends"].items():
        for label, r in b["ratios"].items():
            extra = (
                f", requests {r['requests']}x ({r['requests_per_file_read_before']} -> "
                f"{r['requests_per_file_read_after']} a file read)"
                if "requests" in r
                else ""
            )
            lines.append(f"- {name} {label}: files {r['files']}x, seconds {r['seconds']}x{extra}")
    lines += ["", "## Writing and compacting", ""]
    lines += [
        "| backend | parts written | rows | writer s | flush ms median / p99 | S3 write requests |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, b in result["backends"].items():
        w = b["write"]
        lines.append(
            f"| {name} | {w['parts']:,} | {w['rows']:,} | {w['writer_s']} | {w['flush_ms_median']} / "
            f"{w['flush_ms_p99']} | {kinds(w.get('requests'))} |"
        )
    lines += [
        "",
        "| backend | compaction pass | seconds | hour folders | compacted files written | files merged | rows "
        "| files deleted | S3 requests |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, b in result["backends"].items():
        for c in b["compaction"]:
            lines.append(
                f"| {name} | {c['pass']} | {c['seconds']} | {c['hour_folders']} | {c['compacted_files_written']} | "
                f"{c['files_merged']:,} | {c['rows_merged']:,} | {c['files_deleted']:,} | "
                f"{kinds(c.get('requests'))} |"
            )
    lines += ["", "Stored after compaction:", ""]
    for name, b in result["backends"].items():
        s = b["stored_after"]
        lines.append(
            f"- {name}: {s['compacted_files']} compacted files, {s['parquet_files_left']} Parquet files in all, "
            f"{s['compacted_bytes_total'] / 1024**2:.1f} MiB; per file median {s['compacted_file_bytes_median']:,} "
            f"bytes, footer {s['compacted_footer_bytes_median']:,} bytes, {s['compacted_row_groups_median']} row "
            "groups"
        )
    lines += ["", "Load average (1, 5, 15 min) at each backend's start and end:", ""]
    for name, b in result["backends"].items():
        lines.append(
            f"- {name} (run {b.get('when', result['when'])}): {b['load_average_at_start']} -> "
            f"{b['load_average_at_end']}"
        )
    lines += ["", "## Checks (the benchmark fails unless every one holds)", ""]
    for name, b in result["backends"].items():
        for label, c in b["checks"].items():
            lines.append(f"- {name} {label}: {c}")
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=int, default=24, help="simulated hours on the local disk")
    parser.add_argument("--parts-per-hour", type=int, default=3600, help="flushes (parts) an hour, local disk")
    parser.add_argument("--s3-hours", type=int, default=24, help="simulated hours on S3 (moto)")
    parser.add_argument("--s3-parts-per-hour", type=int, default=360, help="flushes (parts) an hour on S3")
    parser.add_argument(
        "--s3-full-rate-hours",
        type=int,
        default=1,
        help="hours of a second S3 run at --parts-per-hour (the full rate: compacted files as large as a real "
        "hour's, footers listing every part); 0 skips it",
    )
    parser.add_argument("--rate", type=float, default=13.0, help="predictions per second of the replica")
    parser.add_argument("--backends", nargs="+", choices=("local", "s3"), default=["local", "s3"])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each read (the day's window before: one)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--quick", action="store_true", help="2 h x 60 parts/h on each backend; writes no files")
    parser.add_argument("--serve-s3", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_s3:
        serve_s3(args.serve_s3)
        return 0
    if args.quick:
        args.hours = args.s3_hours = 2
        args.parts_per_hour = args.s3_parts_per_hour = 60
        args.s3_full_rate_hours = 0
    if min(args.hours, args.s3_hours) < 1 or min(args.parts_per_hour, args.s3_parts_per_hour) < 1:
        parser.error("hours and parts per hour must be at least 1")
    if round(args.rate * 3600) < max(args.parts_per_hour, args.s3_parts_per_hour):
        parser.error("fewer rows an hour than parts an hour")

    from airloop.storage import S3Options, Storage

    started = time.perf_counter()
    info = machine(PACKAGES)
    print(f"load average at start: {info['load_average_at_start']}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="airloop-bench-log-"))
    backends: dict[str, Any] = {}
    try:
        if "local" in args.backends:
            storage = Storage.from_url(work / "predictions")
            backends["local"] = run_backend("local", storage, None, args.hours, args.parts_per_hour, args)
            shutil.rmtree(work / "predictions", ignore_errors=True)
        if "s3" in args.backends:
            server = S3Server()
            try:
                import boto3

                client = boto3.client(
                    "s3",
                    endpoint_url=server.endpoint,
                    aws_access_key_id=ACCESS_KEY,
                    aws_secret_access_key=SECRET_KEY,
                    region_name="us-east-1",
                )
                options = S3Options(endpoint_url=server.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
                runs = [("s3", args.s3_hours, args.s3_parts_per_hour)]
                if args.s3_full_rate_hours:
                    runs.append(("s3-full-rate", args.s3_full_rate_hours, args.parts_per_hour))
                for name, hours, parts_per_hour in runs:
                    client.create_bucket(Bucket=f"airloop-{name}")
                    storage = Storage.from_url(f"s3://airloop-{name}/predictions/readmission", options)
                    backends[name] = run_backend(name, storage, server, hours, parts_per_hour, args)
            finally:
                server.stop()
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for entry in backends.values():
        entry["when"] = now
    kept = {} if args.quick else earlier_backends(set(backends))
    backends = {name: (kept | backends)[name] for name in sorted(kept | backends, key=BACKEND_ORDER.index)}
    result = {
        "benchmark": "prediction log: a day of one replica written through LogWriter, read before and after "
        "compaction (local disk and moto S3)",
        "when": now,
        "quick": args.quick,
        "machine": info,
        "setup": {
            "day_start": DAY_START.isoformat(),
            "rate_per_s": args.rate,
            "writer": f"LogWriter(interval_s=86400, writer_id={WRITER_ID!r}); append + flush() per simulated flush",
            "record_fields": len(make_records(args.seed)[0]),
            "read": "load_predictions(storage, start, end): every column, records flattened",
            "compaction": "compact_log(now=end of the day, lookback_hours=hours + 1, settle_s=0, grace_s=0), twice",
            "repeats": args.repeats,
        },
        "backends": backends,
        "targets": targets(backends),
        "notes": [
            "Seconds are wall time of the call on a shared 2-CPU host (see the load averages); the day's window before "
            "compaction is read once, every other read --repeats times (median reported, each run listed).",
            "The windows end at the end of the simulated day, which starts at noon: the last hour lives in a date "
            "folder holding 12 hours, and the reader lists that whole date folder to find it (recursive listing per "
            "date in the window).",
            "S3 is moto in a child process on this host: its seconds are not S3's; its request counts are the "
            "reader's and compaction's own (each phase counted apart, at the server, by HTTP method and target).",
            "Checks: each window's rows, set of request ids and content (every column, rows sorted by request id) "
            "are the same before and after compaction, every id once; the ids equal the ids written.",
        ],
        "total_run_s": round(time.perf_counter() - started, 1),
    }
    for name, entry in kept.items():
        result["notes"].append(
            f"{name}: kept from the run of {entry['when']} (this run had --backends {' '.join(args.backends)})."
        )
    if "s3" in backends and backends["s3"]["write"]["parts_per_hour"] != backends.get("local", {}).get("write", {}).get(
        "parts_per_hour"
    ):
        w = backends["s3"]["write"]
        result["notes"].append(
            f"S3 ran at {w['hours']} h x {w['parts_per_hour']:,} parts/h ({w['parts']:,} parts of "
            f"{w['rows'] // w['parts']:,} rows), not at the local scale: through moto the full day's parts take too "
            "long to write and read. Nothing here is scaled up from it."
        )
    failed = [f"{n} {label}" for n, b in backends.items() for label, c in b["checks"].items() if not c["ok"]]
    text = json.dumps(result, indent=2) + "\n"
    page = markdown(result)
    if args.quick:
        print(text)
        print(page)
    else:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "log.json").write_text(text)
        (RESULTS / "log.md").write_text(page)
        print(page)
        print(f"written to {RESULTS / 'log.json'} and {RESULTS / 'log.md'}")
    if failed:
        print(f"FAILED: rows read before and after compaction differ: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
