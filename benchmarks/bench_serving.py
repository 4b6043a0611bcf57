"""Serve the same registered champion with `mlflow models serve` and with airloop serving and load both with wrk.

Usage: python benchmarks/bench_serving.py [--duration 10] [--warmup 3]  -> benchmarks/results/serving.{json,md}

In a throwaway airloop home: synthetic data is generated and published, and the package's training stages register
one HistGradientBoosting champion (a ColumnTransformer + OneHotEncoder pipeline). airloop serves it as one of two
hosted models, as a deployment of several specs does: the second is a copy of the model's spec under another name, in a
throwaway models folder, registered from the same artifact (idle while the default model is measured, but checked to
answer identically). Both servers then run on loopback,
one uvicorn worker each, with OMP_NUM_THREADS=1. The same wrk script (benchmarks/wrk_post.lua, keep-alive, one wrk
thread) drives each with the same records in the server's own request format: 1 and 32 concurrent clients, bodies of
1 and 100 records, a warm-up run and then a fixed-duration measured run per scenario. Before timing, both servers must
give the same probabilities for the same records. airloop is measured twice: as `airloop` (plain answers) and as
`airloop+explain` (the same server, every body with `"explain": true`: each answer carries its risk factors, checked
before timing to add up to the probability's log-odds); both are set against `mlflow models serve` without
explanations. Needs `wrk` on PATH (Debian: apt-get install wrk), except with
--check-only (prepare, start both servers, check they agree, stop: no measurements, no results files).

Then the rate_limit scenario, against airloop only (`mlflow models serve` has no rate limiting): airloop restarted
alone with rate limiting at RATE_LIMIT_PER_S per bucket (burst RATE_LIMIT_BURST). A bucket is (which configured key
the X-API-Key header is, client address) (serving/ratelimit.py), so two clients on 127.0.0.1 with different keys are
two buckets: a "polite" client (the predict key, one connection paced by a wrk delay well under the rate) is measured
alone, then again while an "abusive" client (the admin api_key, which also grants predict) runs wrk at full speed on
ABUSIVE_CLIENTS connections; a wrk Lua response hook counts each client's responses per status and its 429s that
carry Retry-After. `--only rate_limit` runs just this scenario (~40 s after the champion is trained) and writes it
into the existing results files, leaving the other numbers as they are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hostinfo import machine

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
# airloop's predict key (scope predict): every request to either server carries it, so both get the same bytes and
# airloop checks it on each request as it does in production; mlflow ignores the header.
PREDICT_KEY = secrets.token_urlsafe(24)
VENV_BIN = Path(sys.executable).parent
# One HGB candidate, so the served model is the HistGradientBoosting pipeline. An environment override of a dict
# setting is merged into config/airloop.yaml's, not put in its place: the YAML's other kinds must be emptied here.
CANDIDATES = {"hist_gradient_boosting": [{"max_iter": 100}], "logistic_regression": []}
CLIENTS = (1, 32)
BATCH_SIZES = (1, 100)
SERVERS = ("mlflow", "airloop")
RECORDS = 1000  # distinct dataset records replayed round-robin (10 bodies of 100, 1000 bodies of 1)
TARGET_THROUGHPUT_RATIO = 20.0  # airloop / mlflow req/s, 32 clients, single record
TARGET_P99_MS = 50.0  # airloop p99, 32 clients, single record
TARGET_P50_RATIO = 0.5  # airloop / mlflow p50, 1 client, single record
EXPLAIN = "airloop+explain"  # airloop again, every body asking for explanations (issue 22): the same targets
READY_TIMEOUT_S = 180
TOLERANCE = 1e-9
PACKAGES = ("mlflow", "scikit-learn", "fastapi", "uvicorn", "uvloop", "pydantic")
SECOND_MODEL = "twin"  # the copy airloop hosts beside the measured model
SCENARIOS = ("rate_limit",)  # what --only may pick
# rate_limit: the limiter's settings, the polite client's pacing and the abusive client's connections.
ADMIN_KEY = secrets.token_urlsafe(24)  # serving.api_key: every scope, predict included; the abusive client's
RATE_LIMIT_PER_S = 200
RATE_LIMIT_BURST = 40
RATE_LIMIT_HOLD_S = 1.0  # a refused request waits this long before its 429 (serving.rate_limit_hold_s, the default)
POLITE_DELAY_MS = 10  # one connection, 10 ms between a response and the next request: < 100 req/s, half the rate
ABUSIVE_CLIENTS = 64
ABUSIVE_HEAD_START_S = 1.0  # the abusive client runs this long before (and after) the polite client's window


class BenchmarkFailed(RuntimeError):
    """A server did not come up, answered wrongly, or the load generator failed."""


def prepare(rows: int, seed: int) -> tuple[Any, list[dict[str, Any]], list[str], dict[str, Any]]:
    """Publish synthetic data and register a champion with the package's own stages (settings from the env)."""
    from airloop.data.store import dataset_store
    from airloop.registry.contract import Outcome
    from airloop.settings import get_settings
    from airloop.training import features, pipeline
    from airloop.usecases.readmission.synthetic import generate
    from airloop.usecases.readmission.transform import prepare as prepare_rows

    settings = get_settings()
    frame = prepare_rows(generate(rows, seed))
    published = dataset_store(settings).publish(
        frame, {"dataset": settings.data.dataset_name, "source": f"synthetic rows={rows} seed={seed}"}
    )
    run_id = "bench-serving"
    dataset = pipeline.load(settings, published.version)
    validation = pipeline.validate(settings, dataset["version"], run_id)
    split_info = pipeline.split(settings, dataset["version"], run_id)
    trained = pipeline.train(settings, dataset, split_info, validation, run_id)
    registered = pipeline.register(settings, dataset, split_info, trained, "bench_serving")
    if registered["decision"] != Outcome.CHAMPION or trained["kind"] != "hist_gradient_boosting":
        raise BenchmarkFailed(f"expected a hist_gradient_boosting champion, got {trained['kind']}: {registered}")
    inputs = features.model_inputs(settings.spec, frame.sample(RECORDS, random_state=seed))
    model = {"version": registered["version"], "kind": trained["kind"], "test_metrics": trained["test_metrics"]}
    return settings, inputs.to_dict("records"), list(inputs.columns), model


def host_second_model(settings: Any, folder: Path) -> str:
    """A models folder holding the default model's spec and a copy of it named ``SECOND_MODEL``, whose registered
    model gets the default champion's artifact and threshold as its champion; the copy's version."""
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias, VersionRecord

    text = settings.catalog.paths[settings.model].read_text()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{settings.model}.yaml").write_text(text)
    copy = re.sub(r"^name: .*$", f"name: {SECOND_MODEL}", text, count=1, flags=re.MULTILINE)
    (folder / f"{SECOND_MODEL}.yaml").write_text(copy)
    client = connect(settings)
    champion = client.get_model_version_by_alias(settings.mlflow.model_name, Alias.CHAMPION)
    client.create_registered_model(SECOND_MODEL)
    tags = VersionRecord.from_tags(champion.tags).to_tags()
    version = client.create_model_version(SECOND_MODEL, source=champion.source, run_id=champion.run_id, tags=tags)
    client.set_registered_model_alias(SECOND_MODEL, Alias.CHAMPION, str(version.version))
    return str(version.version)


def hosted(base_url: str) -> dict[str, Any]:
    """airloop's hosted models and their readiness; every one must be ready."""
    status, raw = http("GET", f"{base_url}/v1/models")
    found = json.loads(raw).get("hosted", {}) if status == 200 else {}
    if status != 200 or any(m["status"] != "ready" for m in found.values()):
        raise BenchmarkFailed(f"airloop's models are not all ready ({status}): {raw[:1000]!r}")
    return found


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body) of one request; HTTP errors are returned, not raised."""
    headers = {"Content-Type": "application/json", "X-API-Key": PREDICT_KEY}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextlib.contextmanager
def serving(name: str, command: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[None]:
    """Run a server in its own process group until it answers 200 on ``ready_url``; kill the group on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise BenchmarkFailed(f"{name} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if http("GET", ready_url, timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"{name} not ready after {READY_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def airloop_body(records: list[dict[str, Any]], explain: bool = False) -> str:
    """A /v1/predict body (with ``"explain": true`` when ``explain``)."""
    body = {"records": records, "explain": True} if explain else {"records": records}
    return json.dumps(body, separators=(",", ":"))


def check_explanations(url: str, body: str) -> float:
    """Ask for explanations; each answer's base value + contributions must give its probability's log-odds. The
    largest difference, in log-odds."""
    import math

    status, raw = http("POST", url, body.encode(), timeout=30)
    if status != 200:
        raise BenchmarkFailed(f"airloop answered {status} with explain: {raw[:500]!r}")
    worst = 0.0
    for answer in json.loads(raw)["predictions"]:
        explanation = answer.get("explanation")
        if explanation is None:
            raise BenchmarkFailed(f"no explanation in {str(answer)[:300]}")
        total = explanation["base_value"] + explanation["other_factors"]
        total += sum(f["contribution"] for f in explanation["factors"])
        p = answer["probability"]
        worst = max(worst, abs(total - math.log(p / (1 - p))))
    return worst


def mlflow_body(records: list[dict[str, Any]], columns: list[str]) -> str:
    """An /invocations body (dataframe_split, the compact format MLflow documents)."""
    data = [[record[c] for c in columns] for record in records]
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}}, separators=(",", ":"))


def probabilities(server: str, url: str, body: str) -> list[float]:
    """Positive-class probabilities from one request, in record order."""
    status, raw = http("POST", url, body.encode(), timeout=30)
    if status != 200:
        raise BenchmarkFailed(f"{server} answered {status}: {raw[:500]!r}")
    answer = json.loads(raw)
    if server == "airloop":
        return [p["probability"] for p in answer["predictions"]]
    rows = answer["predictions"]  # pyfunc_predict_fn="predict_proba": one [p(0), p(1)] row per record
    if not all(isinstance(r, list) and len(r) == 2 for r in rows):
        raise BenchmarkFailed(f"mlflow answered an unexpected shape: {str(rows)[:300]}")
    return [r[1] for r in rows]


def start_wrk(
    script: Path, url: str, bodies: Path, key: str, clients: int, duration: float, timeout: float
) -> subprocess.Popen[str]:
    """Start one wrk run (one thread, ``clients`` keep-alive connections) of ``script`` sending ``key``."""
    command = [
        "wrk",
        "-t1",
        f"-c{clients}",
        f"-d{duration:g}s",
        f"--timeout={timeout:g}s",
        "-s",
        str(script),
        url,
        "--",
        str(bodies),
        key,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wrk_outcome(process: subprocess.Popen[str], duration: float, timeout: float) -> dict[str, Any]:
    """The statistics a wrk run started by ``start_wrk`` prints (its WRK_JSON line), once it has ended."""
    try:
        stdout, stderr = process.communicate(timeout=duration + timeout + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise BenchmarkFailed(f"wrk did not end: {stdout[-2000:]}{stderr[-2000:]}") from None
    line = next((x for x in stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise BenchmarkFailed(f"wrk failed ({process.returncode}): {stdout[-2000:]}{stderr[-2000:]}")
    return json.loads(line.removeprefix("WRK_JSON "))


def run_wrk(url: str, bodies: Path, clients: int, duration: float, timeout: float) -> dict[str, Any]:
    """One wrk run of benchmarks/wrk_post.lua with the predict key; its statistics."""
    process = start_wrk(WRK_SCRIPT, url, bodies, PREDICT_KEY, clients, duration, timeout)
    return wrk_outcome(process, duration, timeout)


def scenario_result(raw: dict[str, Any], batch: int) -> dict[str, Any]:
    """req/s, records/s, latency percentiles (ms) and error counts of one measured run."""
    seconds = raw["duration_us"] / 1e6
    errors = raw["errors"]
    return {
        "requests": raw["requests"],
        "req_per_s": round(raw["requests"] / seconds, 1),
        "records_per_s": round(raw["requests"] * batch / seconds, 1),
        "p50_ms": round(raw["latency_us"]["p50"] / 1000, 2),
        "p90_ms": round(raw["latency_us"]["p90"] / 1000, 2),
        "p99_ms": round(raw["latency_us"]["p99"] / 1000, 2),
        "max_ms": round(raw["latency_us"]["max"] / 1000, 2),
        "non_2xx": raw["non_2xx"],
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
    }


def scenario_name(clients: int, batch: int) -> str:
    """e.g. c32_b1: 32 concurrent clients, 1 record per request."""
    return f"c{clients}_b{batch}"


def drain(url: str, body: str, timeout: float) -> None:
    """Wait until requests queued by an earlier run are done: wrk hangs up, but a server finishes what it accepted."""
    status, raw = http("POST", url, body.encode(), timeout=timeout)
    if status != 200:
        raise BenchmarkFailed(f"{url} answered {status} after a run: {raw[:500]!r}")
    time.sleep(0.5)


def measure(name: str, url: str, bodies: dict[int, Path], args: argparse.Namespace) -> dict[str, Any]:
    """All scenarios against one running server: warm-up, then the measured run, each starting on an idle server."""
    results = {}
    probe = bodies[1].read_text().splitlines()[0]
    for clients in CLIENTS:
        for batch in BATCH_SIZES:
            drain(url, probe, args.timeout * 6)
            run_wrk(url, bodies[batch], clients, args.warmup, args.timeout)
            drain(url, probe, args.timeout * 6)
            raw = run_wrk(url, bodies[batch], clients, args.duration, args.timeout)
            results[scenario_name(clients, batch)] = result = scenario_result(raw, batch)
            print(
                f"{name:8} {clients:>2} clients x {batch:>3} records: {result['req_per_s']:>8.1f} req/s "
                f"p50 {result['p50_ms']:>7.2f} ms  p99 {result['p99_ms']:>7.2f} ms  non-2xx {result['non_2xx']}",
                flush=True,
            )
    return results


def table(servers: dict[str, dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| server | clients | records/request | req/s | records/s | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server, scenarios in servers.items():
        for clients in CLIENTS:
            for batch in BATCH_SIZES:
                r = scenarios[scenario_name(clients, batch)]
                lines.append(
                    f"| {server} | {clients} | {batch} | {r['req_per_s']:.1f} | {r['records_per_s']:.1f} | "
                    f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} |"
                )
    return "\n".join(lines)


def rate_limit_scripts(home: Path) -> dict[str, Path]:
    """The rate_limit scenario's wrk scripts in ``home``: "abusive" (as fast as wrk goes) and "polite" (paced)."""
    scripts = {"abusive": WRK_SCRIPT, "polite": home / "wrk-paced.lua"}  # the polite client: wrk_post.lua, paced
    paced = f"dofile({json.dumps(str(WRK_SCRIPT))})\nfunction delay()\n  return {POLITE_DELAY_MS}\nend\n"
    scripts["polite"].write_text(paced)
    return scripts


def limited_result(raw: dict[str, Any]) -> dict[str, Any]:
    """One client's run under rate limiting: req/s, responses per status, 429s with Retry-After, latency (ms)."""
    seconds = raw["duration_us"] / 1e6
    statuses = {k: raw["statuses"][k] for k in sorted(raw["statuses"], key=int)}
    limited, errors, retry = statuses.get("429", 0), raw["errors"], raw["retry_after"]
    return {
        "requests": raw["requests"],
        "req_per_s": round(raw["requests"] / seconds, 1),
        "statuses": statuses,
        "ok_per_s": round(statuses.get("200", 0) / seconds, 1),
        "limited_429": limited,
        "limited_share": round(limited / raw["requests"], 4) if raw["requests"] else 0.0,
        "limited_with_retry_after": retry["count"],
        "retry_after_s": [retry["min"], retry["max"]] if retry["count"] else None,
        "p50_ms": round(raw["latency_us"]["p50"] / 1000, 2),
        "p90_ms": round(raw["latency_us"]["p90"] / 1000, 2),
        "p99_ms": round(raw["latency_us"]["p99"] / 1000, 2),
        "max_ms": round(raw["latency_us"]["max"] / 1000, 2),
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
    }


def rate_limited_total(base_url: str) -> float:
    """The service's own count of the requests its rate limit refused (airloop_errors_total, kind rate_limited)."""
    status, raw = http("GET", f"{base_url}/metrics")
    pattern = r'^airloop_errors_total\{kind="rate_limited",model=""\} (\S+)$'
    found = re.search(pattern, raw.decode(), flags=re.MULTILINE) if status == 200 else None
    return float(found.group(1)) if found else 0.0


def measure_rate_limit(
    home: Path, env: dict[str, str], command: Any, bodies: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The rate_limit scenario: airloop alone, rate limited; the polite client alone, then beside the abusive one.

    ``command(port)`` is airloop's command line; ``bodies`` single-record /v1/predict bodies."""
    limited_env = {
        **env,
        "AIRLOOP_SERVING__API_KEY": ADMIN_KEY,
        "AIRLOOP_SERVING__RATE_LIMIT_PER_S": str(RATE_LIMIT_PER_S),
        "AIRLOOP_SERVING__RATE_LIMIT_BURST": str(RATE_LIMIT_BURST),
        "AIRLOOP_SERVING__RATE_LIMIT_HOLD_S": str(RATE_LIMIT_HOLD_S),
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v1/predict"
    scripts = rate_limit_scripts(home)
    probe = bodies.read_text().splitlines()[0]
    attack_s = args.duration + 2 * ABUSIVE_HEAD_START_S
    load = os.getloadavg()[0]
    started = time.perf_counter()

    def polite(duration: float) -> subprocess.Popen[str]:
        return start_wrk(scripts["polite"], url, bodies, PREDICT_KEY, 1, duration, args.timeout)

    running: list[subprocess.Popen[str]] = []
    with serving("airloop (rate limited)", command(port), limited_env, f"{base}/ready", home / "airloop-limited.log"):
        try:
            drain(url, probe, args.timeout * 6)
            wrk_outcome(polite(args.warmup), args.warmup, args.timeout)  # warm-up
            time.sleep(0.5)
            alone = limited_result(wrk_outcome(polite(args.duration), args.duration, args.timeout))
            time.sleep(0.5)  # every bucket full again (burst / rate = 0.2 s)
            abuser = start_wrk(scripts["abusive"], url, bodies, ADMIN_KEY, ABUSIVE_CLIENTS, attack_s, args.timeout)
            running.append(abuser)
            time.sleep(ABUSIVE_HEAD_START_S)
            running.append(polite_under_attack := polite(args.duration))
            attacked = limited_result(wrk_outcome(polite_under_attack, args.duration, args.timeout))
            abusive = limited_result(wrk_outcome(abuser, attack_s, args.timeout))
            drain(url, probe, args.timeout * 6)
            counted = rate_limited_total(base)
        finally:
            for process in running:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    phases = {"polite_alone": alone, "polite_under_attack": attacked, "abusive": abusive}
    for phase, r in phases.items():
        print(
            f"rate_limit {phase:19} {r['req_per_s']:>8.1f} req/s  200 {r['statuses'].get('200', 0):>6}  "
            f"429 {r['limited_429']:>6} ({r['limited_with_retry_after']} with Retry-After)  "
            f"p50 {r['p50_ms']:>7.2f} ms  p99 {r['p99_ms']:>7.2f} ms",
            flush=True,
        )
    seen_429 = sum(r["limited_429"] for r in phases.values())
    summary = {
        "abusive_429_share": abusive["limited_share"],
        "abusive_200_per_s": abusive["ok_per_s"],
        "polite_429s_alone": alone["limited_429"],
        "polite_429s_under_attack": attacked["limited_429"],
        "all_429s_with_retry_after": all(r["limited_with_retry_after"] == r["limited_429"] for r in phases.values()),
        "polite_p50_ratio_under_attack": round(attacked["p50_ms"] / alone["p50_ms"], 2),
        "polite_p99_ratio_under_attack": round(attacked["p99_ms"] / alone["p99_ms"], 2),
        "clients_429_total": seen_429,
        "server_rate_limited_total": counted,
    }
    return {
        "server": "airloop",
        "setup": {
            "rate_limit_per_s": RATE_LIMIT_PER_S,
            "rate_limit_burst": RATE_LIMIT_BURST,
            "rate_limit_hold_s": RATE_LIMIT_HOLD_S,
            "bucket": "(configured key the X-API-Key header is, client address): serving/ratelimit.py",
            "records_per_request": 1,
            "polite": {"key": "predict_key", "connections": 1, "delay_ms": POLITE_DELAY_MS},
            "abusive": {"key": "api_key (admin, grants predict)", "connections": ABUSIVE_CLIENTS},
            "warmup_s": args.warmup,
            "polite_duration_s": args.duration,
            "abusive_duration_s": attack_s,
            "load_average_1m_at_start": round(load, 2),
            "wall_s": round(time.perf_counter() - started, 1),
            "notes": [
                "airloop only: mlflow models serve has no rate limiting",
                "airloop restarted alone with rate limiting at the rate above (mlflow stopped); one uvicorn worker",
                "both clients on 127.0.0.1 with different keys, so two buckets; wrk -t1 each, keep-alive, "
                "a Lua response hook counts statuses and 429s carrying Retry-After",
                "polite: paced by a wrk delay() (closed loop, well under the rate); its latency excludes the delay",
                f"abusive: full speed, starts {ABUSIVE_HEAD_START_S:g} s before the polite client's window and "
                "ends after it",
                "server_rate_limited_total may exceed clients_429_total by the abusive client's requests in flight "
                "when wrk stops (it does not count their answers)",
                "server and both wrk processes share this machine's CPUs: the latency ratio is noisy",
            ],
        },
        **phases,
        "summary": summary,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def rate_limit_markdown(rate_limit: dict[str, Any]) -> list[str]:
    """The rate_limit scenario's section of serving.md."""
    setup, summary = rate_limit["setup"], rate_limit["summary"]
    rows = [
        ("polite", "predict_key", setup["polite"]["connections"], "alone", rate_limit["polite_alone"]),
        ("polite", "predict_key", setup["polite"]["connections"], "under attack", rate_limit["polite_under_attack"]),
        ("abusive", "api_key", setup["abusive"]["connections"], "attack", rate_limit["abusive"]),
    ]
    lines = [
        "## Rate limiting (airloop only)",
        "",
        f"{rate_limit['when']}: airloop alone (`mlflow models serve` has no rate limiting), one worker, rate limit "
        f"{setup['rate_limit_per_s']:g} req/s per bucket, burst {setup['rate_limit_burst']}, each refusal held "
        f"{setup.get('rate_limit_hold_s', 0):g} s before its 429 (serving.rate_limit_hold_s); a bucket is "
        "(configured key, client address), so two clients on 127.0.0.1 with different keys are two buckets. "
        f"Polite: one connection, {setup['polite']['delay_ms']} ms between a response and the next request; "
        f"abusive: wrk at full speed on {setup['abusive']['connections']} connections for "
        f"{setup['abusive_duration_s']:g} s around the polite client's {setup['polite_duration_s']:g} s. Single-record "
        f"requests; 1-minute load average {setup['load_average_1m_at_start']:g} at the start.",
        "",
        "| client | key | connections | phase | requests | req/s | 200 | 429 | 429 + Retry-After | p50 ms | p99 ms |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for client, key, connections, phase, r in rows:
        lines.append(
            f"| {client} | {key} | {connections} | {phase} | {r['requests']} | {r['req_per_s']:.1f} | "
            f"{r['statuses'].get('200', 0)} | {r['limited_429']} | {r['limited_with_retry_after']} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        )
    retry = rate_limit["abusive"]["retry_after_s"]
    lines += [
        "",
        f"The abusive client got 429 on {summary['abusive_429_share']:.1%} of its requests "
        f"({'all' if summary['all_429s_with_retry_after'] else 'NOT all'} with Retry-After"
        f"{f', {retry[0]}-{retry[1]} s' if retry and retry[0] != retry[1] else f': {retry[0]} s' if retry else ''}) "
        f"and 200 at {summary['abusive_200_per_s']:.1f} req/s; the polite client got "
        f"{summary['polite_429s_alone']} 429s alone and {summary['polite_429s_under_attack']} under attack, and its "
        f"p99 under attack was {summary['polite_p99_ratio_under_attack']:g}x its p99 alone (p50 "
        f"{summary['polite_p50_ratio_under_attack']:g}x). The service counted "
        f"{summary['server_rate_limited_total']:g} rate-limited requests, the clients {summary['clients_429_total']}. "
        "The server and both wrk processes share the machine's CPUs: the latency ratios are noisy.",
        "",
    ]
    return lines


def markdown(result: dict[str, Any]) -> str:
    """serving.md from serving.json's contents (either part may be missing after a run of one scenario)."""
    lines = ["# Serving benchmark: airloop vs `mlflow models serve`", ""]
    if "servers" in result:
        setup, targets = result["setup"], result["targets"]
        lines += [
            f"{result['when']}, {result['machine']['cpus']} CPUs ({result['machine']['cpu']}), one worker each, "
            f"OMP_NUM_THREADS=1, {setup['load_generator']}, {setup['warmup_s']:g} s warm-up + "
            f"{setup['duration_s']:g} s per scenario. airloop hosts {len(setup['airloop_hosted_models'])} models"
            f" ({', '.join(setup['airloop_hosted_models'])}); the default one is measured."
            + (
                f" 1-minute load average {result['machine']['load_average_at_start'][0]:g} at the start."
                if result["machine"].get("load_average_at_start")
                else ""
            ),
            "",
            table(result["servers"]),
            "",
            *(
                f"- {name}: {t['measured']} (target {t['target']}): {'met' if t['met'] else 'NOT met'}"
                for name, t in targets.items()
            ),
            "",
        ]
    if "rate_limit" in result:
        lines += rate_limit_markdown(result["rate_limit"])
    return "\n".join(lines)


def machine_with_wrk() -> dict[str, Any]:
    """Where the numbers come from: the host (``hostinfo.machine``) and the load generator's version."""
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n", 1)[0].strip()
    return {**machine(PACKAGES), "wrk": wrk_version}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="synthetic rows to train on")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per scenario")
    parser.add_argument("--timeout", type=float, default=10.0, help="wrk's per-request timeout in seconds")
    parser.add_argument("--keep-home", action="store_true", help="keep the throwaway home (logs, registry)")
    parser.add_argument("--check-only", action="store_true", help="start both servers, check they agree, stop")
    parser.add_argument(
        "--only",
        choices=SCENARIOS,
        help="run only this scenario (airloop alone) and write it into the existing results files",
    )
    args = parser.parse_args()
    if args.check_only and args.only:
        parser.error("--check-only and --only exclude each other")
    if shutil.which("wrk") is None and not args.check_only:
        print("wrk is not on PATH (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="airloop-bench-serving-"))
    try:
        return run(args, home)
    finally:
        if args.keep_home:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace, home: Path) -> int:
    """Prepare the champion in ``home``, check both servers agree, measure both, write the results files."""
    os.environ.update({"AIRLOOP_HOME": str(home / "airloop"), "AIRLOOP_TRAINING__CANDIDATES": json.dumps(CANDIDATES)})
    from airloop.registry.client import model_uri
    from airloop.registry.contract import Alias

    started = time.perf_counter()
    settings, records, columns, model = prepare(args.rows, args.seed)
    prepare_s = time.perf_counter() - started
    name = settings.mlflow.model_name
    print(f"champion {name} v{model['version']} ({model['kind']}) registered in {prepare_s:.0f}s", flush=True)
    models_folder = home / "models"
    second_version = host_second_model(settings, models_folder)
    print(f"airloop also hosts {SECOND_MODEL} v{second_version}, the same artifact under another name", flush=True)

    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow execs `uvicorn`
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.registry_uri,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "include"), str(PROJECT_ROOT)]),
        "AIRLOOP_MODELS__FOLDER": str(models_folder),
        "AIRLOOP_SERVING__PREDICT_KEY": PREDICT_KEY,
        # Rate limiting on, as in the Helm values, at a rate no scenario reaches: the cost of checking, not a refusal.
        "AIRLOOP_SERVING__RATE_LIMIT_PER_S": "1000000",
        "AIRLOOP_SERVING__RATE_LIMIT_BURST": "1000000",
        "AIRLOOP_SERVING__REQUEST_ID_KEY": secrets.token_urlsafe(24),
    }
    ports = {server: free_port() for server in SERVERS}
    champion = model_uri(settings.mlflow.model_name, alias=Alias.CHAMPION)

    def airloop_command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "--factory", "serving.main:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    commands = {
        "mlflow": [
            str(VENV_BIN / "mlflow"), "models", "serve", "-m", champion,
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(ports["mlflow"]), "-w", "1",
        ],
        "airloop": airloop_command(ports["airloop"]),
    }  # fmt: skip
    base = {server: f"http://127.0.0.1:{port}" for server, port in ports.items()}
    ready = {"mlflow": base["mlflow"] + "/ping", "airloop": base["airloop"] + "/ready"}
    predict = {"mlflow": base["mlflow"] + "/invocations", "airloop": base["airloop"] + "/v1/predict"}
    encode = {"mlflow": lambda rs: mlflow_body(rs, columns), "airloop": airloop_body}

    bodies: dict[str, dict[int, Path]] = {}
    encode[EXPLAIN] = lambda rs: airloop_body(rs, explain=True)
    for server in (*SERVERS, EXPLAIN):
        bodies[server] = {}
        for batch in BATCH_SIZES:
            path = home / f"{server}-{batch}.jsonl"
            chunks = [records[i : i + batch] for i in range(0, len(records), batch)]
            path.write_text("".join(encode[server](chunk) + "\n" for chunk in chunks))
            bodies[server][batch] = path

    if args.only == "rate_limit":
        rate_limit = measure_rate_limit(home, env, airloop_command, bodies["airloop"][1], args)
        previous = RESULTS / "serving.json"
        result = json.loads(previous.read_text()) if previous.is_file() else {}
        result = with_rate_limit(result, rate_limit)
        write_results(result)
        return 0

    # Both servers stay up for the correctness check and the runs; the one not being measured is idle.
    logs = {server: home / f"{server}.log" for server in SERVERS}
    with contextlib.ExitStack() as stack:
        for server in SERVERS:
            stack.enter_context(serving(server, commands[server], env, ready[server], logs[server]))
        hosted_models = hosted(base["airloop"])
        check = records[:100]
        answers = {s: probabilities(s, predict[s], encode[s](check)) for s in SERVERS}
        answers_single = {s: probabilities(s, predict[s], encode[s](check[:1]))[0] for s in SERVERS}
        second = probabilities("airloop", f"{base['airloop']}/v1/models/{SECOND_MODEL}/predict", airloop_body(check))
        worst = max(abs(a - b) for a, b in zip(answers["mlflow"], answers["airloop"], strict=True))
        worst = max(worst, abs(answers_single["mlflow"] - answers_single["airloop"]))
        worst = max(worst, *(abs(a - b) for a, b in zip(answers["mlflow"], second, strict=True)))
        if worst > TOLERANCE:
            raise BenchmarkFailed(f"the servers disagree: max |p_mlflow - p_airloop| = {worst:.3g} > {TOLERANCE}")
        explained = check_explanations(predict["airloop"], encode[EXPLAIN](check))
        if explained > 1e-6:
            raise BenchmarkFailed(f"explanations do not add up to the log-odds: off by {explained:.3g}")
        print(
            f"same probabilities from both servers on 100 records, from both of airloop's models {list(hosted_models)} "
            f"(max abs difference {worst:.2g})",
            flush=True,
        )
        if args.check_only:
            return 0
        measured = {server: measure(server, predict[server], bodies[server], args) for server in SERVERS}
        measured[EXPLAIN] = measure("explain", predict["airloop"], bodies[EXPLAIN], args)
    rate_limit = measure_rate_limit(home, env, airloop_command, bodies["airloop"][1], args)

    mlflow_single, airloop_single = measured["mlflow"]["c32_b1"], measured["airloop"]["c32_b1"]
    throughput_ratio = airloop_single["req_per_s"] / mlflow_single["req_per_s"]
    p50_ratio = measured["airloop"]["c1_b1"]["p50_ms"] / measured["mlflow"]["c1_b1"]["p50_ms"]
    explained_single = measured[EXPLAIN]["c32_b1"]
    explain_ratio = explained_single["req_per_s"] / mlflow_single["req_per_s"]
    targets = {
        "throughput_ratio_32_clients_single_record": {
            "measured": round(throughput_ratio, 2),
            "target": f">= {TARGET_THROUGHPUT_RATIO:g}",
            "met": throughput_ratio >= TARGET_THROUGHPUT_RATIO,
        },
        "airloop_p99_ms_32_clients_single_record": {
            "measured": airloop_single["p99_ms"],
            "target": f"<= {TARGET_P99_MS:g}",
            "met": airloop_single["p99_ms"] <= TARGET_P99_MS,
        },
        "p50_ratio_1_client_single_record": {
            "measured": round(p50_ratio, 3),
            "target": f"<= {TARGET_P50_RATIO:g}",
            "met": p50_ratio <= TARGET_P50_RATIO,
        },
        "explain_throughput_ratio_32_clients_single_record": {
            "measured": round(explain_ratio, 2),
            "target": f">= {TARGET_THROUGHPUT_RATIO:g} (mlflow without explanations)",
            "met": explain_ratio >= TARGET_THROUGHPUT_RATIO,
        },
        "explain_p99_ms_32_clients_single_record": {
            "measured": explained_single["p99_ms"],
            "target": f"<= {TARGET_P99_MS:g}",
            "met": explained_single["p99_ms"] <= TARGET_P99_MS,
        },
    }
    result = {
        "benchmark": "airloop serving vs mlflow models serve, same registered champion, wrk on loopback",
        "model": {
            "name": name,
            "version": model["version"],
            "kind": model["kind"],
            "training_rows": args.rows,
            "test_metrics": {k: round(v, 4) for k, v in model["test_metrics"].items()},
        },
        "setup": {
            "workers": 1,
            "omp_num_threads": 1,
            "load_generator": "wrk -t1, keep-alive, benchmarks/wrk_post.lua",
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "distinct_records": len(records),
            "request_formats": {"mlflow": "dataframe_split", "airloop": "records"},
            "airloop_hosted_models": list(hosted_models),
            "prepare_s": round(prepare_s, 1),
            "max_abs_probability_difference": worst,
            "max_abs_explanation_log_odds_difference": explained,
            "notes": [
                "both servers and wrk share this machine; wrk uses part of one CPU",
                "mlflow models serve runs as shipped (uvicorn access log on, written to a file)",
                "airloop runs as shipped: Prometheus metrics, sticky routing, Parquet prediction log",
                f"{EXPLAIN}: the same airloop server, every body with explain: true (TreeSHAP of the champion, top 5 "
                "factors per answer); mlflow is measured without explanations",
                f"airloop hosts two models ({name} measured on /v1/predict, {SECOND_MODEL} idle), as a deployment "
                "of several specs does",
            ],
        },
        "servers": measured,
        "ratios": {
            "throughput_32_clients_single_record": round(throughput_ratio, 2),
            "p50_1_client_single_record": round(p50_ratio, 3),
            "explain_throughput_32_clients_single_record": round(explain_ratio, 2),
        },
        "targets": targets,
        "meets_targets": all(t["met"] for t in targets.values()),
        "rate_limit": rate_limit,
        "machine": machine_with_wrk(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_results(result)
    return 0


def with_rate_limit(result: dict[str, Any], rate_limit: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its "rate_limit" replaced by ``rate_limit``, placed before "machine" as a full run places it."""
    rest = {k: v for k, v in result.items() if k != "rate_limit"}
    keys = list(rest)
    at = keys.index("machine") if "machine" in keys else len(keys)
    return {**{k: rest[k] for k in keys[:at]}, "rate_limit": rate_limit, **{k: rest[k] for k in keys[at:]}}


def write_results(result: dict[str, Any]) -> None:
    """serving.json and serving.md (rendered from the JSON), printed too."""
    RESULTS.mkdir(exist_ok=True)
    text = markdown(result)
    (RESULTS / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "serving.md").write_text(text)
    print()
    print(text)
    print(f"written to {RESULTS / 'serving.json'} and {RESULTS / 'serving.md'}")


if __name__ == "__main__":
    sys.exit(main())
