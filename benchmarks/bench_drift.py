"""Drift report on 100,000 rows x 50 features: airloop's compare() on a stored profile vs Evidently's DataDriftPreset,
and compare() alone from 10,000 to 10,000,000 rows (is it linear in the rows?).

Usage: python benchmarks/bench_drift.py [--rows 100000] [--seed 42] [--quick | --sweep-only]
       -> benchmarks/results/drift.{json,md}

Synthetic reference and current frames (35 numeric, 15 categorical columns; a zero-inflated count, columns with
missing values, a sparse category, and known shifts on some columns) are generated with numpy and written as Parquet
to a temporary folder; every process reads those files. airloop's reference profile is built once from the reference
frame (outside the timing) and round-tripped through JSON; the timed call is ``compare(profile, current)``.
Evidently runs ``Report([DataDriftPreset()])`` on the reference and current frames in its own virtualenv
(.airloop/bench/venv-evidently, built here from benchmarks/requirements-evidently.txt: Evidently needs pandas < 3).
Each side runs in its own subprocess and times only the drift computation (not interpreter start, imports or reading
the Parquet files, which are reported separately); its peak memory is the high-water mark of resident memory during
the computation minus the resident memory after the frames were loaded. Evidently's per-column drift flags are
compared with airloop's, with Evidently's default tests and with PSI at airloop's threshold (0.2) for every column.
Both are also timed at 10k rows (Evidently at 1M would take minutes).

The sweep times ``compare(profile, current)`` alone at 10k, 100k, 1M and 10M rows x the same 50 columns, each size in
a fresh process that generates its current frame in memory (no Parquet: 10M rows would take minutes to write and
read) with the same generator and seed; the profile is built from 100k reference rows at every size (a profile's
size does not grow with the training rows). It reports the seconds per size, per million rows, and
time(10M) / time(10k) / 1000, which is 1 for a linear cost (below 1: the fixed cost per call still shows at 10k).
``--sweep-only`` runs just the sweep and merges it into the results files, keeping their head-to-head.
The --quick mode is a small smoke run: it prints its results and writes no files.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hostinfo import machine

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
PEER_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-evidently.txt"
PEER_VENV = PROJECT_ROOT / ".airloop" / "bench" / "venv-evidently"
TARGET_SPEEDUP = 50.0  # Evidently time / airloop time at --rows
TARGET_MEMORY_RATIO = 2.0  # airloop's peak extra memory / the current frame's memory_usage(deep=True)
SCALING_ROWS = (10_000, 100_000)  # both tools, Parquet read in worker processes (the sweep has airloop's scaling)
EVIDENTLY_MAX_ROWS = 100_000  # Evidently at 1M rows would take several minutes per configuration
SWEEP_ROWS = (10_000, 100_000, 1_000_000, 10_000_000)  # compare() alone
SWEEP_REPEATS = {10_000: 9, 100_000: 7, 1_000_000: 5, 10_000_000: 3}
SWEEP_PROFILE_ROWS = 100_000  # reference rows the sweep's profile is built from, at every size
SWEEP_BYTES_PER_ROW = 1_000  # a sweep worker's peak resident memory per current row (50 columns: ~600), with headroom
PSI_THRESHOLD = 0.2  # airloop's default feature threshold (DriftThresholds.psi)
EVIDENTLY_DISTANCE_THRESHOLD = 0.1  # Evidently's default for Wasserstein (normed) and Jensen-Shannon distance

# Columns with a known shift in the current frame, and what the shift is.
SHIFTS = {
    "num_shift_large": "mean +1.0 sd",
    "num_shift_moderate": "mean +0.25 sd",
    "num_shift_tiny": "mean +0.03 sd",
    "num_scale": "sd x2",
    "num_lognormal_tail": "lognormal sigma 0.5 -> 0.8",
    "visits_zero_inflated": "zero share 0.70 -> 0.40",
    "num_missing_rate": "missing 5% -> 30%, present values unchanged",
    "num_small_domain": "shares of 1..4 from .5/.3/.15/.05 to .2/.3/.3/.2",
    "num_out_of_range": "5% of values far above the reference maximum",
    "cat_shift_large": "shares .60/.25/.15 -> .30/.35/.35",
    "cat_shift_moderate": "shares .40/.30/.20/.10 -> .31/.32/.23/.14",
    "cat_new_category": "a category unseen in the reference takes 8%",
    "cat_missing_rate": "missing 2% -> 20%, present shares unchanged",
}


# ---------------------------------------------------------------------------------------------------------- data


def make_frames(rows: int, seed: int, reference_rows: int | None = None) -> tuple[Any, Any, list[str], list[str]]:
    """Reference and current frames (35 numeric, 15 categorical columns) with the known SHIFTS in the current one;
    the reference has ``reference_rows`` rows (as many as the current one when None)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    reference_rows = rows if reference_rows is None else reference_rows
    numeric: list[str] = []
    categorical: list[str] = []
    reference: dict[str, Any] = {}
    current: dict[str, Any] = {}

    def with_missing(values: Any, rate: float) -> Any:
        values = values.astype("float64")
        values[rng.random(len(values)) < rate] = np.nan
        return values

    def add_numeric(name: str, make: Any, make_current: Any = None) -> None:
        numeric.append(name)
        reference[name] = make(reference_rows)
        current[name] = (make_current or make)(rows)

    def strings(levels: list[str], shares: list[float], missing: float, n: int) -> Any:
        codes = rng.choice(len(levels), size=n, p=np.asarray(shares) / np.sum(shares)).astype("int32")
        mask = rng.random(n) < missing
        return pa.DictionaryArray.from_arrays(pa.array(codes, mask=mask), pa.array(levels)).cast(pa.string())

    def add_categorical(
        name: str,
        levels: list[str],
        shares: list[float],
        missing: float = 0.0,
        current_levels: list[str] | None = None,
        current_shares: list[float] | None = None,
        current_missing: float | None = None,
    ) -> None:
        categorical.append(name)
        reference[name] = strings(levels, shares, missing, reference_rows)
        current[name] = strings(
            current_levels or levels,
            current_shares or shares,
            missing if current_missing is None else current_missing,
            rows,
        )

    # 26 steady numeric columns of assorted shapes.
    for i in range(26):
        family = i % 6
        loc, scale = float(rng.uniform(-50, 50)), float(rng.uniform(0.5, 20))
        if family == 0:
            add_numeric(f"num_normal_{i:02d}", lambda n, m=loc, s=scale: rng.normal(m, s, n))
        elif family == 1:
            add_numeric(f"num_lognormal_{i:02d}", lambda n, s=scale: rng.lognormal(1.0, 0.6, n) * s)
        elif family == 2:
            add_numeric(f"num_uniform_{i:02d}", lambda n, m=loc, s=scale: rng.uniform(m, m + 10 * s, n))
        elif family == 3:
            add_numeric(f"num_exponential_{i:02d}", lambda n, s=scale: rng.exponential(s, n))
        elif family == 4:
            add_numeric(f"int_age_{i:02d}", lambda n: rng.integers(18, 95, n))
        else:
            add_numeric(f"num_with_nulls_{i:02d}", lambda n, m=loc, s=scale: with_missing(rng.normal(m, s, n), 0.1))
    # 9 shifted numeric columns.
    add_numeric("num_shift_large", lambda n: rng.normal(10, 2, n), lambda n: rng.normal(12, 2, n))
    add_numeric("num_shift_moderate", lambda n: rng.normal(10, 2, n), lambda n: rng.normal(10.5, 2, n))
    add_numeric("num_shift_tiny", lambda n: rng.normal(10, 2, n), lambda n: rng.normal(10.06, 2, n))
    add_numeric("num_scale", lambda n: rng.normal(0, 1, n), lambda n: rng.normal(0, 2, n))
    add_numeric("num_lognormal_tail", lambda n: rng.lognormal(2, 0.5, n), lambda n: rng.lognormal(2, 0.8, n))

    def visits(n: int, zeros: float) -> Any:
        return np.where(rng.random(n) < zeros, 0, rng.poisson(3, n) + 1)

    add_numeric("visits_zero_inflated", lambda n: visits(n, 0.7), lambda n: visits(n, 0.4))
    add_numeric(
        "num_missing_rate",
        lambda n: with_missing(rng.gamma(2, 3, n), 0.05),
        lambda n: with_missing(rng.gamma(2, 3, n), 0.30),
    )
    add_numeric(
        "num_small_domain",
        lambda n: rng.choice([1, 2, 3, 4], n, p=[0.5, 0.3, 0.15, 0.05]),
        lambda n: rng.choice([1, 2, 3, 4], n, p=[0.2, 0.3, 0.3, 0.2]),
    )
    add_numeric(
        "num_out_of_range",
        lambda n: rng.normal(100, 15, n),
        lambda n: np.where(rng.random(n) < 0.05, rng.normal(400, 15, n), rng.normal(100, 15, n)),
    )
    # 11 steady categorical columns: 2 to 40 levels (Zipf-like shares), one sparse category, one with missing values.
    for i, k in enumerate((2, 3, 4, 5, 6, 8, 10, 12, 20, 30, 40)):
        levels = [f"c{i:02d}_{j}" for j in range(k)]
        shares = list(1.0 / np.arange(1, k + 1) ** 0.8)
        if i == 3:
            add_categorical(f"cat_sparse_{i:02d}", [*levels, "rare"], [*shares, 0.002 * sum(shares)])
        elif i == 6:
            add_categorical(f"cat_with_nulls_{i:02d}", levels, shares, missing=0.08)
        else:
            add_categorical(f"cat_steady_{i:02d}", levels, shares)
    # 4 shifted categorical columns.
    add_categorical("cat_shift_large", ["a", "b", "c"], [0.6, 0.25, 0.15], current_shares=[0.3, 0.35, 0.35])
    add_categorical(
        "cat_shift_moderate", ["a", "b", "c", "d"], [0.4, 0.3, 0.2, 0.1], current_shares=[0.31, 0.32, 0.23, 0.14]
    )
    add_categorical(
        "cat_new_category",
        ["a", "b", "c", "d", "e"],
        [0.3, 0.25, 0.2, 0.15, 0.1],
        current_levels=["a", "b", "c", "d", "e", "new"],
        current_shares=[0.276, 0.23, 0.184, 0.138, 0.092, 0.08],
    )
    add_categorical("cat_missing_rate", ["a", "b", "c", "d"], [0.4, 0.3, 0.2, 0.1], missing=0.02, current_missing=0.2)
    assert len(numeric) == 35 and len(categorical) == 15 and set(SHIFTS) <= {*numeric, *categorical}
    return pa.table(reference), pa.table(current), numeric, categorical


def write_data(folder: Path, rows: int, seed: int) -> dict[str, Any]:
    """Write reference.parquet, current.parquet and airloop's stored profile.json; return what they hold."""
    import pandas as pd
    import pyarrow.parquet as pq

    from airloop.monitoring.baseline import reference_profile

    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    reference, current, numeric, categorical = make_frames(rows, seed)
    pq.write_table(reference, folder / "reference.parquet")
    pq.write_table(current, folder / "current.parquet")
    generate_s = time.perf_counter() - started
    del reference, current
    frame = pd.read_parquet(folder / "reference.parquet")
    started = time.perf_counter()
    profile = reference_profile(frame, numeric, categorical)
    profile_s = time.perf_counter() - started
    text = json.dumps(profile)
    (folder / "profile.json").write_text(text)
    spec = {"rows": rows, "seed": seed, "numeric": numeric, "categorical": categorical}
    (folder / "spec.json").write_text(json.dumps(spec))
    return {
        **spec,
        "generate_and_write_s": round(generate_s, 2),
        "profile_build_s": round(profile_s, 3),
        "profile_json_bytes": len(text),
        "parquet_bytes": sum((folder / f).stat().st_size for f in ("reference.parquet", "current.parquet")),
    }


# ------------------------------------------------------------------------------------------------------- workers
# Run in subprocesses (the Evidently one with the peer venv's interpreter): standard library imports at the top only.


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset the kernel's resident-memory high-water mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak resident memory above the level after the frames were loaded, in MiB."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self.base_rss_kb = _status_kb("VmRSS")
        self.base_maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.reset = _reset_peak()
        return self

    def __exit__(self, *exc: object) -> None:
        self.maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.hwm_kb = _status_kb("VmHWM")

    def report(self) -> dict[str, Any]:
        mib = 1024.0
        return {
            "rss_after_load_mib": round(self.base_rss_kb / mib, 1),
            "peak_rss_mib": round(self.hwm_kb / mib, 1),
            # The high-water mark was reset to the RSS after loading, so this is the computation's own peak.
            "peak_extra_mib": round((self.hwm_kb - self.base_rss_kb) / mib, 1) if self.reset else None,
            # As the brief asks: ru_maxrss after minus ru_maxrss after loading. A lower bound: reading Parquet may
            # already have peaked above the steady level.
            "ru_maxrss_extra_mib": round((self.maxrss_kb - self.base_maxrss_kb) / mib, 1),
            "hwm_reset": self.reset,
        }


def worker_airloop(data: Path, repeats: int) -> dict[str, Any]:
    """Time compare(stored profile, current frame) in this process."""
    started = time.perf_counter()
    import pandas as pd

    from airloop.monitoring.drift import compare

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    current = pd.read_parquet(data / "current.parquet")
    read_s = time.perf_counter() - started
    frame_bytes = int(current.memory_usage(deep=True).sum())
    times = []
    with PeakMemory() as memory:
        for _ in range(repeats):
            started = time.perf_counter()
            profile = json.loads((data / "profile.json").read_text())
            loaded = time.perf_counter()
            result = compare(profile, current)
            times.append((time.perf_counter() - started, time.perf_counter() - loaded))
    features = {
        name: {"drifted": f.drifted, "psi": f.psi, "js_distance": f.js_distance, "kind": f.kind}
        for name, f in result.features.items()
    }
    # The multivariate step on its own (a drift run adds it when the version stored a reference sample): the
    # domain classifier on every feature (no importances here), 2,000 stored reference rows against the window.
    from airloop.monitoring.multivariate import domain_classifier, reference_sample

    sample = reference_sample(pd.read_parquet(data / "reference.parquet"))
    multivariate_times = []
    for _ in range(min(repeats, 3)):
        started = time.perf_counter()
        found = domain_classifier(sample, current, list(current.columns))
        multivariate_times.append(time.perf_counter() - started)
    return {
        "multivariate_s": [round(t, 3) for t in multivariate_times],
        "multivariate_median_s": round(statistics.median(multivariate_times), 3),
        "multivariate_roc_auc": round(found.roc_auc, 4) if found else None,
        "rules_fired": [f"{h.decision}:{h.rule}" for h in result.rules],
        "tool": "airloop",
        "import_s": round(import_s, 3),
        "read_parquet_s": round(read_s, 3),
        "compare_s": [round(t[1], 4) for t in times],
        "load_profile_and_compare_s": [round(t[0], 4) for t in times],
        "compare_median_s": round(statistics.median(t[1] for t in times), 4),
        "load_profile_and_compare_median_s": round(statistics.median(t[0] for t in times), 4),
        "current_frame_bytes": frame_bytes,
        "memory": memory.report(),
        "verdict": result.verdict,
        "features": features,
        "versions": _versions(("pandas", "numpy", "pyarrow", "scipy")),
    }


def worker_evidently(data: Path, config: str, repeats: int) -> dict[str, Any]:
    """Time Report([DataDriftPreset()]).run(current, reference) in this process (the peer venv's interpreter)."""
    started = time.perf_counter()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    import_s = time.perf_counter() - started
    spec = json.loads((data / "spec.json").read_text())
    started = time.perf_counter()
    reference = pd.read_parquet(data / "reference.parquet")
    current = pd.read_parquet(data / "current.parquet")
    read_s = time.perf_counter() - started
    frame_bytes = {
        "reference": int(reference.memory_usage(deep=True).sum()),
        "current": int(current.memory_usage(deep=True).sum()),
    }
    preset = {"default": {}, "psi": {"method": "psi", "threshold": PSI_THRESHOLD}}[config]
    times = []
    with PeakMemory() as memory:
        for _ in range(repeats):
            started = time.perf_counter()
            definition = DataDefinition(numerical_columns=spec["numeric"], categorical_columns=spec["categorical"])
            report = Report([DataDriftPreset(**preset)], include_tests=True)
            snapshot = report.run(
                Dataset.from_pandas(current, data_definition=definition),
                Dataset.from_pandas(reference, data_definition=definition),
            )
            computed = time.perf_counter()
            result = snapshot.dict()
            times.append((computed - started, time.perf_counter() - computed))
    scores = {
        m["config"]["column"]: {"score": m["value"], "method": m["config"]["method"]}
        for m in result["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }
    for test in result["tests"]:
        column = test["metric_config"]["params"].get("column")
        if column in scores:
            scores[column]["drifted"] = test["status"] == "FAIL"
    import evidently

    return {
        "tool": "evidently",
        "config": config,
        "import_s": round(import_s, 3),
        "read_parquet_s": round(read_s, 3),
        "report_s": [round(t[0], 3) for t in times],
        "to_dict_s": [round(t[1], 3) for t in times],
        "report_median_s": round(statistics.median(t[0] for t in times), 3),
        "frame_bytes": frame_bytes,
        "memory": memory.report(),
        "features": scores,
        "versions": {"evidently": evidently.__version__, **_versions(("pandas", "numpy", "pyarrow", "scipy"))},
    }


def worker_sweep(rows: int, seed: int, repeats: int) -> dict[str, Any]:
    """Generate a current frame of ``rows`` rows in this process and time compare(stored profile, frame) alone."""
    import pandas as pd

    from airloop.monitoring.baseline import reference_profile
    from airloop.monitoring.drift import compare

    load = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    reference, current, numeric, categorical = make_frames(rows, seed, reference_rows=min(rows, SWEEP_PROFILE_ROWS))
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    profile = json.loads(json.dumps(reference_profile(reference.to_pandas(), numeric, categorical)))
    profile_s = time.perf_counter() - started
    del reference
    frame: pd.DataFrame = current.to_pandas()
    del current
    frame_bytes = int(frame.memory_usage(deep=True).sum())
    times = []
    with PeakMemory() as memory:
        for _ in range(repeats):
            started = time.perf_counter()
            result = compare(profile, frame)
            times.append(time.perf_counter() - started)
    return {
        "rows": rows,
        "columns": {"numeric": len(numeric), "categorical": len(categorical)},
        "load_average_at_start": load,
        "generate_s": round(generate_s, 2),
        "profile_build_s": round(profile_s, 3),
        "frame_mib": round(frame_bytes / 1024**2, 1),
        "compare_s": [round(t, 4) for t in times],
        "compare_median_s": round(statistics.median(times), 4),
        "compare_min_s": round(min(times), 4),
        "memory": memory.report(),
        "verdict": result.verdict,
        "drifted_features": result.drifted_features,
    }


def _versions(names: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in names}


# -------------------------------------------------------------------------------------------------- orchestration


def peer_python() -> Path:
    """The Evidently venv's interpreter, (re)built when benchmarks/requirements-evidently.txt changes."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    wanted = hashlib.sha256(PEER_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    uv = Path(sys.executable).with_name("uv")
    print(f"building the Evidently venv at {PEER_VENV} from {PEER_REQUIREMENTS.name}", flush=True)
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(PEER_VENV)], check=True)
    install = [str(uv), "pip", "install", "--quiet", "--python", str(python), "--compile-bytecode"]
    subprocess.run([*install, "-r", str(PEER_REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def run_worker(python: Path, args: list[str], data: Path, timeout: float) -> dict[str, Any]:
    """Run this script as a worker under ``python``; return its result plus the subprocess's wall time."""
    out = data / f"result-{'-'.join(args)}.json"
    command = [str(python), str(Path(__file__).resolve()), "--worker", *args, "--data", str(data), "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({done.returncode}): {done.stderr[-3000:]}")
    return {**json.loads(out.read_text()), "process_wall_s": round(wall, 2)}


def agreement(airloop: dict[str, Any], peer: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """How many of ``columns`` both tools flag the same way, and which they disagree on."""
    differ = sorted(c for c in columns if airloop["features"][c]["drifted"] != peer["features"][c]["drifted"])
    return {
        "columns": len(columns),
        "agree": len(columns) - len(differ),
        "share": round((len(columns) - len(differ)) / len(columns), 3) if columns else None,
        "disagree": {
            c: {
                "airloop": airloop["features"][c]["drifted"],
                "evidently": peer["features"][c]["drifted"],
                "shift": SHIFTS.get(c, "none"),
            }
            for c in differ
        },
    }


def compare_flags(
    airloop: dict[str, Any], default: dict[str, Any], psi: dict[str, Any] | None, spec: dict[str, Any]
) -> dict[str, Any]:
    """Agreement of the per-column flags: overall, per test family, and on the same statistic."""
    columns = [*spec["numeric"], *spec["categorical"]]
    by_method: dict[str, list[str]] = {}
    for c in columns:
        by_method.setdefault(default["features"][c]["method"], []).append(c)
    found: dict[str, Any] = {
        "default_overall": agreement(airloop, default, columns),
        "default_by_evidently_method": {m: agreement(airloop, default, cs) for m, cs in by_method.items()},
    }
    # Same statistic, same threshold: airloop's JS distance (which it reports but does not decide on) >= 0.1 against
    # Evidently's JS verdict, on the columns where Evidently's default is Jensen-Shannon.
    js_columns = by_method.get("Jensen-Shannon distance", [])
    as_js = {
        "features": {
            c: {"drifted": f["js_distance"] >= EVIDENTLY_DISTANCE_THRESHOLD} for c, f in airloop["features"].items()
        }
    }
    found["default_js_columns_same_statistic"] = agreement(as_js, default, js_columns)
    found["default_js_columns_same_statistic"]["max_abs_js_difference"] = round(
        max(
            (abs(airloop["features"][c]["js_distance"] - default["features"][c]["score"]) for c in js_columns),
            default=0,
        ),
        4,
    )
    if psi is not None:
        found["psi_overall"] = agreement(airloop, psi, columns)
        for kind, names in (("numeric", spec["numeric"]), ("categorical", spec["categorical"])):
            found[f"psi_{kind}"] = agreement(airloop, psi, names)
        found["psi_value_pairs"] = {
            c: [round(airloop["features"][c]["psi"], 4), round(float(psi["features"][c]["score"]), 4)] for c in columns
        }
    found["injected_shifts"] = {
        c: {
            "shift": s,
            "airloop": airloop["features"][c]["drifted"],
            "evidently_default": default["features"][c]["drifted"],
            **({"evidently_psi": psi["features"][c]["drifted"]} if psi else {}),
        }
        for c, s in SHIFTS.items()
    }
    steady = [c for c in columns if c not in SHIFTS]
    found["false_alarms_on_steady_columns"] = {
        "columns": len(steady),
        "airloop": sorted(c for c in steady if airloop["features"][c]["drifted"]),
        "evidently_default": sorted(c for c in steady if default["features"][c]["drifted"]),
        **({"evidently_psi": sorted(c for c in steady if psi["features"][c]["drifted"])} if psi else {}),
    }
    return found


def slim(result: dict[str, Any]) -> dict[str, Any]:
    """A worker result without the per-feature details (those go into the agreement section)."""
    return {k: v for k, v in result.items() if k != "features"}


def markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown page: the head-to-head (when run) and the sweep (when run)."""
    lines = (
        head_to_head_markdown(result) if "head_to_head" in result else ["# Drift benchmark: airloop `compare()`", ""]
    )
    if result.get("sweep"):
        lines += sweep_markdown(result["sweep"])
    return "\n".join(lines)


def sweep_markdown(sweep: dict[str, Any]) -> list[str]:
    """The sweep's section of the Markdown page."""
    m = sweep["machine"]
    lines = [
        "## compare() alone from 10k to 10M rows (the sweep)",
        "",
        f"{sweep['when']}, {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB; command `{sweep['command']}`, "
        f"{sweep['total_run_s']} s in all. {sweep['method']}",
        "",
        "| rows | columns | timed calls s | median s | s per 1M rows | x vs previous size | peak extra MiB "
        "| frame MiB | load average at start |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    previous = None
    for r in sweep["sizes"]:
        if "skipped" in r:
            lines.append(f"| {r['rows']:,} | skipped: {r['skipped']} | | | | | | | |")
            continue
        t = r["compare_median_s"]
        growth = f"{t / previous[1]:.1f} (rows x{r['rows'] / previous[0]:g})" if previous else ""
        previous = (r["rows"], t)
        columns = f"{r['columns']['numeric']} numeric + {r['columns']['categorical']} categorical"
        lines.append(
            f"| {r['rows']:,} | {columns} | {r['compare_s']} | {t} | {t / r['rows'] * 1e6:.3f} | {growth} | "
            f"{r['memory']['peak_extra_mib']} | {r['frame_mib']} | {r['load_average_at_start']} |"
        )
    lines += ["", *[f"- {k}: {v}" for k, v in sweep["linearity"].items()], ""]
    return lines


def head_to_head_markdown(result: dict[str, Any]) -> list[str]:
    """The head-to-head's section of the Markdown page (with the notes)."""
    head = result["head_to_head"]
    a, e = head["airloop"], head["evidently_default"]
    p = head.get("evidently_psi")
    m = result["machine"]
    lines = [
        "# Drift benchmark: airloop `compare()` vs Evidently `DataDriftPreset`",
        "",
        f"{result['when']}, {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"load average at start {m['load_average_at_start']}. airloop {a['versions']}; Evidently peer "
        f"{e['versions']} in its own venv. Total run {result['total_run_s']} s.",
        "",
        f"Data: {head['data']['rows']:,} rows x {len(head['data']['numeric'])} numeric + "
        f"{len(head['data']['categorical'])} categorical columns per frame (reference and current, seed "
        f"{head['data']['seed']}), Parquet in a temp folder read by every process. airloop compares the current frame "
        f"with a stored profile (built once from the reference frame in {head['data']['profile_build_s']} s, "
        f"{head['data']['profile_json_bytes']:,} bytes of JSON); Evidently compares the two frames.",
        "",
        f"## Head to head at {head['data']['rows']:,} rows",
        "",
        "| tool | configuration | timed call s (runs) | median s | import s | read Parquet s | process wall s "
        "| frame(s) in memory MiB | peak extra MiB | peak RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    mib = 1024**2
    lines.append(
        f"| airloop | `compare(profile, current)` | {a['compare_s']} | {a['compare_median_s']} | {a['import_s']} | "
        f"{a['read_parquet_s']} | {a['process_wall_s']} | {a['current_frame_bytes'] / mib:.1f} (current) | "
        f"{a['memory']['peak_extra_mib']} | {a['memory']['peak_rss_mib']} |"
    )
    lines.append(
        f"| airloop | multivariate step on its own: `domain_classifier(2,000 stored rows, current)` | "
        f"{a['multivariate_s']} | {a['multivariate_median_s']} | | | | | | |"
    )
    for name, r in (("default", e), ("PSI 0.2 every column", p)):
        if r is None:
            continue
        frames = sum(r["frame_bytes"].values()) / mib
        lines.append(
            f"| evidently | `DataDriftPreset` {name} | {r['report_s']} | {r['report_median_s']} | {r['import_s']} | "
            f"{r['read_parquet_s']} | {r['process_wall_s']} | {frames:.1f} (reference + current) | "
            f"{r['memory']['peak_extra_mib']} | {r['memory']['peak_rss_mib']} |"
        )
    lines += ["", "### Ratios and targets", ""]
    for key, value in result["ratios"].items():
        lines.append(f"- {key}: {value}")
    for key, t in result["targets"].items():
        lines.append(f"- **{key}**: {t['value']} (target {t['target']}): {'met' if t['met'] else 'NOT met'}")
    ag = result["agreement"]
    lines += [
        "",
        "### Per-feature verdicts",
        "",
        "airloop flags a feature when PSI on the profile's bins (about 10 quantile or per-value bins, out-of-range "
        "bins, a missing bin) is >= 0.2. Evidently's default for more than 1,000 reference rows is the normed "
        "Wasserstein distance (numeric, > 5 values) or the Jensen-Shannon distance (categorical and numeric with <= 5 "
        "values), each flagged at >= 0.1, on the values with missing ones dropped. So in the default configuration no "
        "column is decided by the same test; with `DataDriftPreset(method='psi', threshold=0.2)` both decide on PSI "
        ">= 0.2, but on different bins (Evidently: Sturges bins over both frames, or one bin per value for <= 20 "
        "values; missing dropped).",
        "",
        "| comparison | columns | agree | share | disagreeing columns |",
        "|---|---:|---:|---:|---|",
    ]
    rows = [("default, all columns", ag["default_overall"])]
    rows += [(f"default, columns Evidently tests with {m}", v) for m, v in ag["default_by_evidently_method"].items()]
    rows.append(
        (
            "same statistic: airloop's JS distance >= 0.1 vs Evidently's JS verdict, its JS columns (largest JS "
            f"difference {ag['default_js_columns_same_statistic']['max_abs_js_difference']})",
            ag["default_js_columns_same_statistic"],
        )
    )
    if "psi_overall" in ag:
        rows += [
            ("PSI >= 0.2 on both sides, all columns", ag["psi_overall"]),
            ("PSI >= 0.2, numeric", ag["psi_numeric"]),
            ("PSI >= 0.2, categorical", ag["psi_categorical"]),
        ]
    for label, v in rows:
        differ = ", ".join(f"`{c}`" for c in v["disagree"]) or "none"
        lines.append(f"| {label} | {v['columns']} | {v['agree']} | {v['share']} | {differ} |")
    lines += [
        "",
        "Injected shifts and who flags them (steady columns flagged: "
        f"airloop {ag['false_alarms_on_steady_columns']['airloop'] or 'none'}, Evidently default "
        f"{ag['false_alarms_on_steady_columns']['evidently_default'] or 'none'}"
        + (f", Evidently PSI {ag['false_alarms_on_steady_columns']['evidently_psi'] or 'none'}" if p else "")
        + f" of {ag['false_alarms_on_steady_columns']['columns']}):",
        "",
        "| column | shift | airloop PSI | airloop | Evidently default | Evidently PSI |",
        "|---|---|---:|---|---|---|",
    ]
    for c, v in ag["injected_shifts"].items():
        pair = ag.get("psi_value_pairs", {}).get(c)
        airloop_psi = pair[0] if pair else ""
        peer_psi = f"{'drift' if v['evidently_psi'] else 'no'} ({pair[1]})" if p else "not run"
        lines.append(
            f"| `{c}` | {v['shift']} | {airloop_psi} | {'drift' if v['airloop'] else 'no'} | "
            f"{'drift' if v['evidently_default'] else 'no'} | {peer_psi} |"
        )
    lines += [
        "",
        "## Both tools by size (same generator and seed, each size in fresh processes reading Parquet)",
        "",
        "| rows | airloop compare median s | per 1M rows s | x vs previous size | airloop peak extra MiB "
        "| current frame MiB | Evidently default s | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    previous = None
    for s in result["scaling"]:
        t = s["airloop_compare_median_s"]
        growth = f"{t / previous:.1f}" if previous else ""
        previous = t
        peer = s.get("evidently_default_s")
        lines.append(
            f"| {s['rows']:,} | {t} | {t / s['rows'] * 1e6:.2f} | {growth} | {s['airloop_peak_extra_mib']} | "
            f"{s['current_frame_mib']} | {peer if peer is not None else 'not run'} | "
            f"{f'{peer / t:.0f}x' if peer is not None else ''} |"
        )
    lines += ["", *[f"- {note}" for note in result["notes"]], ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows per frame in the head-to-head run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="small smoke run; prints results, writes no files")
    parser.add_argument(
        "--sweep-only",
        action="store_true",
        help="only time compare() from 10k to 10M rows; merged into the results files (their head-to-head is kept)",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tool, *rest = args.worker
        if tool == "airloop":
            found = worker_airloop(args.data, int(rest[0]))
        elif tool == "sweep":
            found = worker_sweep(int(rest[0]), int(rest[2]), int(rest[1]))
        else:
            found = worker_evidently(args.data, rest[0], int(rest[1]))
        args.out.write_text(json.dumps(found))
        return 0
    return run_sweep_only(args) if args.sweep_only else run(args)


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, None where there is none."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def sweep(seed: int, quick: bool) -> dict[str, Any]:
    """Time compare() alone at each of SWEEP_ROWS (a fresh process per size) and how its time grows with the rows."""
    started = time.perf_counter()
    info = machine()
    sizes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="airloop-bench-drift-sweep-") as tmp:
        for n in (2_000, 20_000) if quick else SWEEP_ROWS:
            available, need = _available_bytes(), n * SWEEP_BYTES_PER_ROW
            if available is not None and need > available:
                skipped = f"needs about {need / 1024**3:.1f} GiB, {available / 1024**3:.1f} GiB available"
                print(f"sweep {n:,} rows skipped: {skipped}", flush=True)
                sizes.append({"rows": n, "skipped": skipped})
                continue
            repeats = 3 if quick else SWEEP_REPEATS[n]
            found = run_worker(Path(sys.executable), ["sweep", str(n), str(repeats), str(seed)], Path(tmp), 1200)
            sizes.append(found)
            print(f"sweep {n:,} rows: compare median {found['compare_median_s']} s {found['compare_s']}", flush=True)
    timed = [r for r in sizes if "compare_median_s" in r]
    linearity: dict[str, Any] = {}
    if len(timed) >= 2:
        small, large = timed[0], timed[-1]
        factor = large["rows"] / small["rows"]
        linearity[f"time({large['rows']:,}) / time({small['rows']:,}) / {factor:g} (1 = linear)"] = round(
            large["compare_median_s"] / small["compare_median_s"] / factor, 3
        )
        if len(timed) >= 3:
            before = timed[-2]
            factor = large["rows"] / before["rows"]
            linearity[
                f"time({large['rows']:,}) / time({before['rows']:,}) / {factor:g} (the fixed cost per call amortised)"
            ] = round(large["compare_median_s"] / before["compare_median_s"] / factor, 3)
        linearity["seconds per 1M rows, by size"] = {
            f"{r['rows']:,}": round(r["compare_median_s"] / r["rows"] * 1e6, 3) for r in timed
        }
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "command": "python benchmarks/bench_drift.py --sweep-only" + (" --quick" if quick else ""),
        "method": (
            f"`compare(profile, current)` alone, no probabilities; each size in a fresh process that generates its "
            f"current frame in memory (the head-to-head's generator, seed {seed}; no Parquet) and builds the profile "
            f"from {SWEEP_PROFILE_ROWS:,} reference rows; the median of "
            + ", ".join(f"{r} calls at {n:,}" for n, r in SWEEP_REPEATS.items())
            + " rows. Peak "
            "extra memory: the resident high-water mark during the calls above the RSS before them."
        ),
        "sizes": sizes,
        "linearity": linearity,
        "total_run_s": round(time.perf_counter() - started, 1),
    }


def run_sweep_only(args: argparse.Namespace) -> int:
    """The sweep alone, merged into the results files (their head-to-head kept); printed only with --quick."""
    found = sweep(args.seed, args.quick)
    path = RESULTS / "drift.json"
    result = json.loads(path.read_text()) if path.is_file() and not args.quick else {}
    result["sweep"] = found
    text, page = json.dumps(result, indent=2) + "\n", markdown(result)
    if args.quick:
        print(text)
        print(page)
        return 0
    RESULTS.mkdir(exist_ok=True)
    path.write_text(text)
    (RESULTS / "drift.md").write_text(page)
    print("\n".join(sweep_markdown(found)))
    print(f"written to {path} and {RESULTS / 'drift.md'}")
    return 0


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    info = machine()
    rows = 5_000 if args.quick else args.rows
    scaling_rows = (2_000, 5_000) if args.quick else tuple(sorted({*SCALING_ROWS, rows}))
    airloop_repeats, peer_repeats = (3, 1) if args.quick else (7, 2)
    python = peer_python()
    sizes: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="airloop-bench-drift-") as tmp:
        for n in scaling_rows:
            folder = Path(tmp) / str(n)
            data = write_data(folder, n, args.seed)
            print(f"{n:,} rows: data written in {data['generate_and_write_s']} s", flush=True)
            size: dict[str, Any] = {"data": data}
            size["airloop"] = run_worker(Path(sys.executable), ["airloop", str(airloop_repeats)], folder, 600)
            print(f"  airloop compare median {size['airloop']['compare_median_s']} s", flush=True)
            if n <= max(EVIDENTLY_MAX_ROWS, rows):
                configs = ("default", "psi") if n == rows else ("default",)
                for config in configs:
                    repeats = peer_repeats if n == rows else 1
                    found = run_worker(python, ["evidently", config, str(repeats)], folder, 1800)
                    size[f"evidently_{config}"] = found
                    print(f"  evidently {config}: report {found['report_s']} s", flush=True)
            sizes[n] = size
    head = sizes[rows]
    a, e, p = head["airloop"], head["evidently_default"], head.get("evidently_psi")
    airloop_s = a["compare_median_s"]
    speedup = e["report_median_s"] / airloop_s
    memory_ratio = (
        (a["memory"]["peak_extra_mib"] or a["memory"]["ru_maxrss_extra_mib"]) * 1024**2 / a["current_frame_bytes"]
    )
    ratios = {
        "time_ratio_evidently_default_over_airloop (median timed calls)": round(speedup, 1),
        "time_ratio_evidently_default_over_airloop_first_call": round(e["report_s"][0] / a["compare_s"][0], 1),
        "time_ratio_including_import_and_read (process wall)": round(e["process_wall_s"] / a["process_wall_s"], 1),
        "airloop_load_profile_json_and_compare_median_s": a["load_profile_and_compare_median_s"],
        "airloop_peak_extra_over_current_frame": round(memory_ratio, 3),
        "airloop_ru_maxrss_extra_over_current_frame": round(
            a["memory"]["ru_maxrss_extra_mib"] * 1024**2 / a["current_frame_bytes"], 3
        ),
        "evidently_peak_extra_over_its_two_frames": round(
            (e["memory"]["peak_extra_mib"] or 0) * 1024**2 / sum(e["frame_bytes"].values()), 3
        ),
        "peak_extra_ratio_evidently_over_airloop": round(
            (e["memory"]["peak_extra_mib"] or 0) / max(a["memory"]["peak_extra_mib"] or 0, 0.1), 1
        ),
    }
    if p is not None:
        ratios["time_ratio_evidently_psi_over_airloop"] = round(p["report_median_s"] / airloop_s, 1)
    ratios["airloop_multivariate_step_median_s (on its own, not in the head-to-head)"] = a["multivariate_median_s"]
    ratios["time_ratio_evidently_default_over_airloop_with_multivariate"] = round(
        e["report_median_s"] / (airloop_s + a["multivariate_median_s"]), 1
    )
    scaling = []
    for n, size in sizes.items():
        scaling.append(
            {
                "rows": n,
                "airloop_compare_median_s": size["airloop"]["compare_median_s"],
                "airloop_compare_s": size["airloop"]["compare_s"],
                "airloop_peak_extra_mib": size["airloop"]["memory"]["peak_extra_mib"],
                "current_frame_mib": round(size["airloop"]["current_frame_bytes"] / 1024**2, 1),
                "evidently_default_s": size["evidently_default"]["report_median_s"]
                if "evidently_default" in size
                else None,
                "evidently_peak_extra_mib": size["evidently_default"]["memory"]["peak_extra_mib"]
                if "evidently_default" in size
                else None,
            }
        )
    result = {
        "benchmark": "drift report: airloop compare() against a stored profile vs Evidently DataDriftPreset",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "machine": info,
        "head_to_head": {
            "data": head["data"],
            "airloop": slim(a),
            "evidently_default": slim(e),
            **({"evidently_psi": slim(p)} if p else {}),
        },
        "ratios": ratios,
        "targets": {
            "speedup_vs_evidently_default": {
                "value": round(speedup, 1),
                "target": f">= {TARGET_SPEEDUP:g}x",
                "met": speedup >= TARGET_SPEEDUP,
            },
            "airloop_peak_memory_over_input_frame": {
                "value": round(memory_ratio, 3),
                "target": f"<= {TARGET_MEMORY_RATIO:g}x",
                "met": memory_ratio <= TARGET_MEMORY_RATIO,
            },
        },
        "agreement": compare_flags(a, e, p, head["data"]),
        "scaling": scaling,
        "notes": [
            "Steady columns: 26 numeric (normal, lognormal, uniform, exponential, integer ages 18-94, normal with 10% "
            "missing) and 11 categorical (2 to 40 levels with Zipf-like shares; one with a sparse 0.2% category, one "
            "with 8% missing); the shifted columns are listed above (a zero-inflated count among them).",
            "Timed calls exclude interpreter start, imports and reading Parquet (reported separately); airloop's "
            "median is over its runs in one process, Evidently's over its runs with a new Report and Datasets each.",
            "Peak extra memory: the kernel's resident high-water mark (reset through /proc/self/clear_refs after the "
            "frames were loaded) minus the RSS at that point; ru_maxrss deltas are in the JSON.",
            "The same Parquet files are read by pandas 3 (airloop; Arrow-backed strings) and pandas 2 (Evidently; "
            "object strings), so each side's in-memory frames differ in size; the memory target is airloop's peak "
            "extra memory over its current frame's memory_usage(deep=True).",
            f"Evidently was run up to {max(EVIDENTLY_MAX_ROWS, rows):,} rows only, to keep the run short: from its "
            "10k and 100k times, 1M rows would take minutes per configuration and several GiB (object strings).",
        ],
        "total_run_s": round(time.perf_counter() - started, 1),
    }
    result["sweep"] = sweep(args.seed, args.quick)
    result["sweep"]["command"] = "make bench-drift" + (" (--quick)" if args.quick else "")
    result["total_run_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2) + "\n"
    page = markdown(result)
    if args.quick:
        print(text)
        print(page)
        return 0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "drift.json").write_text(text)
    (RESULTS / "drift.md").write_text(page)
    print(page)
    print(f"written to {RESULTS / 'drift.json'} and {RESULTS / 'drift.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
