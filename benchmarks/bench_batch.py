"""Batch scoring of 1,000,000 encounters: airloop's readmission_batch_score job vs MLflow's own pyfunc ``predict``.

Usage: python benchmarks/bench_batch.py [--rows 1000000] [--chunk-rows 50000] [--quick]
       -> benchmarks/results/batch.{json,md}

Setup (not timed): a throwaway airloop home; a champion trained by airloop's own pipeline stages (ETL extract,
transform, publish, then validate, split, train, register: the shipped candidate search) on 20,000 synthetic rows;
then --rows synthetic encounters published as a dataset version (Parquet, row groups of 65,536 rows).

Timed, each side in its own subprocess, on the same dataset version, the same chunks and the same registered model:
- airloop: ``airloop.scoring.batch.score`` (what the DAG's score task runs): read the version's Parquet a chunk at a
  time, check every record, score with the compiled fast path, write each chunk's predictions (ids, probability,
  class, model version) as a Parquet part, publish the folder with its metadata.
- MLflow pyfunc: ``mlflow.pyfunc.load_model("models:/readmission/<v>")`` (the model logged with
  ``pyfunc_predict_fn="predict_proba"``) and, for the same chunks read the same way, ``model.predict(chunk)`` (MLflow's
  schema enforcement, then the Pipeline), then the same output columns written as a Parquet part per chunk.
airloop's timed call includes loading the model again (the job loads its own); pyfunc's load is outside its timing.
"Scoring only" compares like with like: airloop's record checks + compiled scoring against pyfunc's ``predict``
(MLflow's schema enforcement + the Pipeline). Each side's peak memory is its resident high-water mark
during the timed part minus its resident memory before it (Linux VmHWM reset). The two outputs are compared row by
row: same ids in the same order, probabilities equal within 1e-9, same classes.
airloop alone is also run at a tenth of --rows, to show its peak memory does not grow with the input.
The --quick mode is a small smoke run (50,000 rows): it prints its results and writes no files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_drift import PeakMemory

RESULTS = Path(__file__).resolve().parent / "results"
TRAIN_ROWS = 20_000


# ------------------------------------------------------------------------------------------------------- setup


def setup(home: Path, rows: int, seed: int) -> dict[str, Any]:
    """Train and register a champion, publish ``rows`` encounters; what the workers need."""
    os.environ["AIRLOOP_HOME"] = str(home)
    from airloop import etl
    from airloop.data.store import dataset_store
    from airloop.settings import get_settings
    from airloop.training import pipeline
    from airloop.usecases.readmission.synthetic import generate
    from airloop.usecases.readmission.transform import prepare

    settings = get_settings()
    started = time.perf_counter()
    raw = etl.extract(settings, "bench", {"rows": TRAIN_ROWS, "seed": seed})
    etl.transform(settings, "bench")
    published = etl.publish(settings, raw["source"], [], "bench")
    dataset = pipeline.load(settings, published.version)
    validation = pipeline.validate(settings, published.version, "bench")
    split = pipeline.split(settings, published.version, "bench")
    trained = pipeline.train(settings, dataset, split, validation, "bench")
    registered = pipeline.register(settings, dataset, split, trained, "bench")
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    frame = prepare(generate(rows, seed + 1))
    version = dataset_store(settings).publish(frame, {"source": "bench"}).version
    return {
        "model_version": str(registered["version"]),
        "model_kind": trained["kind"],
        "dataset_version": version,
        "rows": len(frame),
        "frame_bytes": int(frame.memory_usage(deep=True).sum()),
        "train_s": round(train_s, 1),
        "publish_s": round(time.perf_counter() - started, 1),
    }


# ------------------------------------------------------------------------------------------------------- workers


def worker_airloop(job: dict[str, Any]) -> dict[str, Any]:
    """``batch.score`` on the job, timed; the scorer is loaded first (outside the timing) to warm MLflow's caches."""
    from airloop.scoring import batch
    from airloop.settings import get_settings

    settings = get_settings()
    batch.load_scorer(settings, job["model_name"], job["model_version"])  # imports, registry and artifact caches
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = batch.score(settings, job)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "result": result, "memory": memory.report()}


def worker_pyfunc(job: dict[str, Any], out: Path) -> dict[str, Any]:
    """MLflow's pyfunc ``predict`` on the same chunks, the same output written per chunk."""
    import mlflow.pyfunc
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airloop.data.store import DATA_FILE, dataset_store
    from airloop.registry.aliases import version_record
    from airloop.registry.client import connect, model_uri
    from airloop.settings import get_settings
    from airloop.usecases.readmission import schema

    settings = get_settings()
    client = connect(settings)
    name, version = job["model_name"], job["model_version"]
    model = mlflow.pyfunc.load_model(model_uri(name, version))
    threshold = version_record(client, name, version).threshold
    storage = dataset_store(settings).storage
    path = storage.local_path(job["input_version"], DATA_FILE)
    out.mkdir(parents=True, exist_ok=True)
    predict_s = 0.0
    with PeakMemory() as memory:
        started = time.perf_counter()
        parquet = pq.ParquetFile(path)
        for index, chunk in enumerate(
            parquet.iter_batches(batch_size=job["chunk_rows"], columns=settings.spec.data.input_columns)
        ):
            frame = chunk.to_pandas()
            began = time.perf_counter()
            predicted = np.asarray(model.predict(frame))
            predict_s += time.perf_counter() - began
            probability = predicted[:, 1] if predicted.ndim == 2 else predicted
            table = pa.table(
                {
                    **{c: pa.array(frame[c].to_numpy(dtype="int64")) for c in schema.ID_COLUMNS},
                    "probability": pa.array(probability, type=pa.float64()),
                    "predicted_class": pa.array((probability >= threshold).astype("int8")),
                    "model_version": pa.array([version] * len(frame)).dictionary_encode(),
                }
            )
            pq.write_table(table, out / f"part-{index:05d}.parquet", compression="zstd")
        seconds = time.perf_counter() - started
    report = {"seconds": seconds, "predict_seconds": predict_s, "chunks": index + 1, "memory": memory.report()}
    return {**report, "rows": parquet.metadata.num_rows}


def run_worker(kind: str, job: dict[str, Any], out: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", kind, "--job", json.dumps(job)]
    if out is not None:
        command += ["--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ.copy())
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["process_wall_s"] = round(time.perf_counter() - started, 2)
    return report


# ------------------------------------------------------------------------------------------------------- compare


def compare_outputs(airloop_folder: Path, pyfunc_folder: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    def read(folder: Path) -> pd.DataFrame:
        parts = sorted(folder.glob("part-*.parquet"))
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)

    ours, theirs = read(airloop_folder), read(pyfunc_folder)
    found = {"rows_airloop": len(ours), "rows_pyfunc": len(theirs)}
    if len(ours) != len(theirs):
        return {**found, "match": False}
    same_ids = ours["encounter_id"].equals(theirs["encounter_id"]) and ours["patient_nbr"].equals(theirs["patient_nbr"])
    difference = np.abs(ours["probability"].to_numpy() - theirs["probability"].to_numpy())
    classes = int((ours["predicted_class"].to_numpy() != theirs["predicted_class"].to_numpy()).sum())
    return {
        **found,
        "same_ids_in_order": bool(same_ids),
        "max_abs_probability_difference": float(difference.max()) if len(difference) else 0.0,
        "classes_differ": classes,
        "match": bool(same_ids and (difference <= 1e-9).all() and classes == 0),
    }


# ------------------------------------------------------------------------------------------------------- report


def markdown(results: dict[str, Any]) -> str:
    a, p, r = results["airloop"], results["pyfunc"], results["ratios"]
    s, m = results["setup"], results["match"]
    lines = [
        "# Batch scoring benchmark: `readmission_batch_score` vs MLflow pyfunc `predict`",
        "",
        f"{results['started']}, {results['machine']}. Total run {results['total_s']} s.",
        "",
        f"Data: {s['rows']:,} synthetic encounters (one published dataset version, {s['frame_bytes'] / 2**20:.0f} MiB "
        f"as one frame), chunks of {results['chunk_rows']:,} rows. Model: the champion v{s['model_version']} "
        f"({s['model_kind']}) trained by airloop's pipeline on {TRAIN_ROWS:,} rows in {s['train_s']} s.",
        "",
        "| side | what is timed | seconds | rows/s | checks + predict s | peak extra MiB | process wall s |",
        "|---|---|---:|---:|---:|---:|---:|",
        f"| airloop | `batch.score`: read, check, compiled fast path, write parts, publish | {a['seconds']:.2f} | "
        f"{a['rows_per_second']:,.0f} | {a['result']['scoring_seconds'] + a['result']['checking_seconds']:.2f} | "
        f"{a['memory']['peak_extra_mib']} | "
        f"{a['process_wall_s']} |",
        f"| MLflow pyfunc | read, `model.predict(chunk)`, write parts | {p['seconds']:.2f} | "
        f"{p['rows_per_second']:,.0f} | {p['predict_seconds']:.2f} | {p['memory']['peak_extra_mib']} | "
        f"{p['process_wall_s']} |",
        f"| airloop at {results['small']['rows']:,} rows | the same | {results['small']['seconds']:.2f} | "
        f"{results['small']['rows_per_second']:,.0f} | "
        f"{results['small']['result']['scoring_seconds'] + results['small']['result']['checking_seconds']:.2f} | "
        f"{results['small']['memory']['peak_extra_mib']} | {results['small']['process_wall_s']} |",
        "",
        "## Ratios",
        "",
        *[f"- {k}: {v}" for k, v in r.items()],
        "",
        "## Same predictions",
        "",
        *[f"- {k}: {v}" for k, v in m.items()],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", choices=["airloop", "pyfunc"])
    parser.add_argument("--job")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.job)
        report = worker_airloop(job) if args.worker == "airloop" else worker_pyfunc(job, Path(args.out))
        print(json.dumps(report, default=str))
        return 0
    rows = 50_000 if args.quick else args.rows
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="airloop-bench-batch-"))
    os.environ.update({"AIRLOOP_HOME": str(home / "airloop"), "GX_ANALYTICS_ENABLED": "False"})
    prepared = setup(home / "airloop", rows, args.seed)
    print(f"setup: {prepared}", flush=True)

    from airloop.scoring import batch
    from airloop.settings import get_settings

    settings = get_settings()
    job = batch.resolve(settings, {"chunk_rows": args.chunk_rows}, "bench")
    ours = run_worker("airloop", job)
    ours["rows_per_second"] = ours["result"]["rows"] / ours["seconds"]
    print(f"airloop: {ours['seconds']:.2f} s", flush=True)
    theirs = run_worker("pyfunc", job, home / "pyfunc-out")
    theirs["rows_per_second"] = theirs["rows"] / theirs["seconds"]
    print(f"pyfunc: {theirs['seconds']:.2f} s", flush=True)
    match = compare_outputs(batch.output_storage(settings).local_path(job["output"]), home / "pyfunc-out")

    # airloop on a tenth of the input (another dataset version): peak memory should not follow the input's size.
    from airloop.data.store import dataset_store
    from airloop.usecases.readmission.synthetic import generate
    from airloop.usecases.readmission.transform import prepare

    small_frame = prepare(generate(max(rows // 10, 1000), args.seed + 2))
    small_version = dataset_store(settings).publish(small_frame, {"source": "bench"}).version
    small_job = batch.resolve(settings, {"chunk_rows": args.chunk_rows, "dataset_version": small_version}, "bench")
    small = run_worker("airloop", small_job)
    small["rows"] = small["result"]["rows"]
    small["rows_per_second"] = small["rows"] / small["seconds"]

    ratios = {
        "rows_per_second_airloop_over_pyfunc": round(ours["rows_per_second"] / theirs["rows_per_second"], 2),
        "scoring_only_pyfunc_over_airloop": round(
            theirs["predict_seconds"] / (ours["result"]["scoring_seconds"] + ours["result"]["checking_seconds"]), 2
        ),
        "airloop_peak_extra_over_input_frame": round(
            ours["memory"]["peak_extra_mib"] * 2**20 / prepared["frame_bytes"], 3
        ),
        "airloop_peak_extra_full_over_tenth": round(
            ours["memory"]["peak_extra_mib"] / max(small["memory"]["peak_extra_mib"], 0.1), 2
        ),
        "pyfunc_peak_extra_over_airloop": round(
            theirs["memory"]["peak_extra_mib"] / max(ours["memory"]["peak_extra_mib"], 0.1), 2
        ),
    }
    import numpy
    import pandas
    import sklearn

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    results = {
        "started": started_at,
        "machine": f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"load average at start {[round(x, 1) for x in os.getloadavg()]}",
        "versions": {"pandas": pandas.__version__, "numpy": numpy.__version__, "scikit-learn": sklearn.__version__},
        "chunk_rows": args.chunk_rows,
        "setup": prepared,
        "airloop": ours,
        "pyfunc": theirs,
        "small": small,
        "match": match,
        "ratios": ratios,
        "total_s": round(time.perf_counter() - started, 1),
    }
    text = markdown(results)
    print(text)
    if not match["match"]:
        print("the two outputs differ", file=sys.stderr)
        return 1
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "batch.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (RESULTS / "batch.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
