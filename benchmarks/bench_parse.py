"""DagBag parse time of the DAG factory with 1, 10 and 50 model specs, against the same DAGs written as plain TaskFlow.

Usage: python benchmarks/bench_parse.py [--sizes 1 10 50] [--repeats 5]  -> benchmarks/results/parse.{json,md}

For each size N, a temporary folder gets N copies of ``models/churn.yaml`` (renamed ``m000`` ...) and a DAGs folder
with this repository's factory file (``dags/airloop_models.py``): 7·N DAGs. The peer is a DAGs folder with one file
that defines the same number of DAGs, each with the same number of tasks as the factory's DAG of that stage, written
as trivial TaskFlow (``@dag`` + ``@task`` functions that return None, chained in a line), with nothing read from disk.
Each side parses in a fresh interpreter (``DagBag(dag_folder=...)``) set up as Airflow's DAG processor sets up the
process that parses a file: Airflow imported, ``gc.freeze()``, then the Airflow modules that the file imports. The
peer's file names the TaskFlow decorator's module as the factory's file does, so neither pays it at parse. Only the
DagBag construction is timed (not interpreter start or importing Airflow); the median of ``--repeats`` runs is
reported with the ratio factory / peer (the two sides' runs alternate, so a drift in the machine's speed
reaches both). The airloop package is a compiled copy, as an installed wheel is (pip writes
the bytecode at install; the DAG files themselves are compiled at each parse on both sides). Target: at most 2x at
every size.

Both sides run with the Airflow home airloop's deployments give Airflow: its ``config/airflow_local_settings.py``
(``airloop.airflow_preload``) imports airloop's settings and spec classes once as each Airflow process starts, as
the DAG processor does before it forks a parse, and parses the defaults and spec files once into caches keyed by
each file's version. That happens before the timed part; the factory's parse still reads its spec files, checks
them against those caches, builds its settings and builds every DAG. The same parses without
that file ("cold": every parse defines airloop's classes again) are reported beside them.

A second peer, at one model: the seven hand-written readmission DAG files of the last release before the factory
(``--handwritten-ref``, read from git history with that release's airloop package on the path), against the factory
with the readmission spec alone: what the factory costs over writing the same DAGs by hand.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hostinfo import machine

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 2.0

# As Airflow's DAG processor: its manager imports Airflow and calls gc.freeze() (DagFileProcessorManager.before_run),
# so a parse never pays a full collection of Airflow's own objects, and before it forks the process that parses a
# file it imports the Airflow modules that file imports ([dag_processor] parsing_pre_import_modules, on by default).
PROBE = """
import gc, importlib, json, pathlib, sys, time
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.file import iter_airflow_imports
gc.freeze()
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.py")):
    for module in iter_airflow_imports(str(path)):
        importlib.import_module(module)
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - started
assert not bag.import_errors, bag.import_errors
print(json.dumps({"seconds": elapsed, "dags": len(bag.dags), "tasks": sum(len(d.tasks) for d in bag.dags.values())}))
"""

PEER_HEADER = '''"""Trivial TaskFlow DAGs (airflow dag peer of the factory benchmark)."""
import pendulum
import airflow.providers.standard.decorators.python
from airflow.sdk import dag, task

'''

PEER_DAG = """
@dag(dag_id="{dag_id}", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), schedule=None, catchup=False)
def {function}():
    previous = None
    for i in range({tasks}):
        @task(task_id=f"t{{i}}")
        def step():
            return None

        current = step()
        if previous is not None:
            previous >> current
        previous = current


{function}()
"""


def _parse(folder: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"parsing {folder} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _factory(root: Path, size: int) -> tuple[Path, Path]:
    models, dags = root / "models", root / "dags"
    models.mkdir(parents=True)
    dags.mkdir()
    text = (PROJECT_ROOT / "models" / "churn.yaml").read_text()
    for i in range(size):
        (models / f"m{i:03d}.yaml").write_text(text.replace("name: churn", f"name: m{i:03d}", 1))
    shutil.copy(PROJECT_ROOT / "dags" / "airloop_models.py", dags / "airloop_models.py")
    return models, dags


def _peer(root: Path, task_counts: list[int], size: int) -> Path:
    dags = root / "peer"
    dags.mkdir()
    body = [PEER_HEADER]
    for i in range(size):
        for stage, tasks in enumerate(task_counts):
            name = f"peer_{i:03d}_{stage}"
            body.append(PEER_DAG.format(dag_id=name, function=name, tasks=tasks))
    (dags / "peer_dags.py").write_text("".join(body))
    return dags


HANDWRITTEN_STAGES = ("etl", "train", "drift", "retrain", "ab_evaluate", "registry", "batch_score")


def _handwritten(root: Path, ref: str, env: dict[str, str], repeats: int) -> dict | None:
    """The last hand-written release's seven readmission DAG files vs the factory with readmission's spec alone."""
    old = root / "handwritten"
    try:
        (old / "dags").mkdir(parents=True)
        for stage in HANDWRITTEN_STAGES:
            text = subprocess.run(
                ["git", "show", f"{ref}:dags/readmission_{stage}.py"], cwd=PROJECT_ROOT, capture_output=True,
                text=True, check=True,
            ).stdout  # fmt: skip
            (old / "dags" / f"readmission_{stage}.py").write_text(text)
        archive = subprocess.run(["git", "archive", ref, "include", "config"], cwd=PROJECT_ROOT, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        compileall.compile_dir(old / "include", quiet=1)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"hand-written peer skipped: {error}")
        return None
    old_env = env | {"PYTHONPATH": str(old / "include"), "AIRLOOP_CONFIG": str(old / "config" / "airloop.yaml")}
    models, dags = root / "readmission-only" / "models", root / "readmission-only" / "dags"
    models.mkdir(parents=True)
    dags.mkdir()
    shutil.copy(PROJECT_ROOT / "models" / "readmission.yaml", models / "readmission.yaml")
    shutil.copy(PROJECT_ROOT / "dags" / "airloop_models.py", dags / "airloop_models.py")
    new_env = env | {"AIRLOOP_MODELS__FOLDER": str(models), "AIRLOOP_MODELS__DEFAULT": "readmission"}
    old_s = statistics.median(_parse(old / "dags", old_env)["seconds"] for _ in range(repeats))
    new_s = statistics.median(_parse(dags, new_env)["seconds"] for _ in range(repeats))
    return {"ref": ref, "handwritten_s": old_s, "factory_s": new_s, "ratio": new_s / old_s}


def run(sizes: list[int], repeats: int, ref: str | None = None) -> dict:
    host = machine()
    env = os.environ | {"AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(PROJECT_ROOT / "include")}
    out = []
    with tempfile.TemporaryDirectory(prefix="airloop-bench-parse-") as tmp:
        root = Path(tmp)
        package = root / "site"
        shutil.copytree(PROJECT_ROOT / "include", package, symlinks=False)  # airloop/config is a symlink: a real copy
        compileall.compile_dir(package, quiet=1)
        env["PYTHONPATH"] = str(package)
        env["AIRFLOW_HOME"] = str(root / "airflow")
        env["AIRLOOP_HOME"] = str(root / "airloop")
        # The deployed Airflow home (with airloop's airflow_local_settings.py), and one without it.
        subprocess.run(
            [sys.executable, "-c", "import pathlib, sys; from airloop.airflow_preload import write_local_settings;"
             " write_local_settings(pathlib.Path(sys.argv[1]))", env["AIRFLOW_HOME"]],
            env=env, check=True,
        )  # fmt: skip
        cold = env | {"AIRFLOW_HOME": str(root / "airflow-cold")}
        for size in sizes:
            case = root / f"n{size}"
            models, dags = _factory(case, size)
            factory_env = env | {"AIRLOOP_MODELS__FOLDER": str(models), "AIRLOOP_MODELS__DEFAULT": "m000"}
            first = _parse(dags, factory_env)
            tasks_per_dag = first["tasks"] // first["dags"]
            counts = _stage_task_counts(dags, factory_env)  # the task counts of one model's seven DAGs
            peer = _peer(case, counts, size)
            # Interleaved, factory then peer, so that a machine whose speed drifts affects both sides alike.
            factory_s, peer_runs, cold_factory_s, cold_peer_s = [], [], [], []
            for _ in range(repeats):
                factory_s.append(_parse(dags, factory_env)["seconds"])
                peer_runs.append(_parse(peer, env))
                cold_factory_s.append(_parse(dags, factory_env | {"AIRFLOW_HOME": cold["AIRFLOW_HOME"]})["seconds"])
                cold_peer_s.append(_parse(peer, cold)["seconds"])
            peer_s = [r["seconds"] for r in peer_runs]
            row = {
                "specs": size,
                "dags": first["dags"],
                "tasks": first["tasks"],
                "peer_dags": peer_runs[0]["dags"],
                "peer_tasks": peer_runs[0]["tasks"],
                "factory_s": statistics.median(factory_s),
                "peer_s": statistics.median(peer_s),
                "tasks_per_dag": tasks_per_dag,
                "cold_factory_s": statistics.median(cold_factory_s),
                "cold_peer_s": statistics.median(cold_peer_s),
            }
            row["ratio"] = row["factory_s"] / row["peer_s"]
            row["cold_ratio"] = row["cold_factory_s"] / row["cold_peer_s"]
            out.append(row)
            print(json.dumps(row))
        handwritten = _handwritten(root, ref, cold, repeats) if ref else None
    return {
        "benchmark": "DagBag parse: the DAG factory with N specs vs the same DAGs as trivial TaskFlow",
        "handwritten": handwritten,
        "target": f"factory / peer <= {TARGET_RATIO} at every size",
        "met": all(r["ratio"] <= TARGET_RATIO for r in out),
        "repeats": repeats,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "host": host,
        "results": out,
    }


def _stage_task_counts(dags: Path, env: dict[str, str]) -> list[int]:
    probe = (
        "import json, sys\nfrom airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "print(json.dumps([len(d.tasks) for i, d in sorted(bag.dags.items()) if i.startswith('m000_')]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(dags)], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--handwritten-ref", default="a0c2030", help="the last release with hand-written DAG files")
    args = parser.parse_args()
    result = run(args.sizes, args.repeats, args.handwritten_ref)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parse.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# DagBag parse time: the DAG factory vs the same DAGs as trivial TaskFlow",
        "",
        f"Target: {result['target']} — {'met' if result['met'] else 'NOT met'} ({result['machine']}, median of"
        f" {result['repeats']} fresh-interpreter parses)",
        "",
        f"Host: {result['host']['cpu']}, load average at start {result['host']['load_average_at_start']}.",
        "",
        "Airflow home as airloop deploys it (`airflow_local_settings.py` imports airloop's classes once per process):",
        "",
        "| specs | DAGs | tasks | factory (s) | trivial TaskFlow (s) | ratio |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['specs']} | {r['dags']} | {r['tasks']} | {r['factory_s']:.3f} | {r['peer_s']:.3f} | {r['ratio']:.2f} |"
        for r in result["results"]
    ]
    lines += [
        "",
        "Cold (no `airflow_local_settings.py`: each parse defines airloop's settings and spec classes again):",
        "",
        "| specs | factory (s) | trivial TaskFlow (s) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['specs']} | {r['cold_factory_s']:.3f} | {r['cold_peer_s']:.3f} | {r['cold_ratio']:.2f} |"
        for r in result["results"]
    ]
    if result["handwritten"]:
        h = result["handwritten"]
        lines += [
            "",
            f"Readmission's seven DAGs written by hand (release {h['ref']}): {h['handwritten_s']:.3f} s;"
            f" the factory with its spec alone: {h['factory_s']:.3f} s; ratio {h['ratio']:.2f} (both cold).",
        ]
    (RESULTS / "parse.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
