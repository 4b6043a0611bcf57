"""Time the readmission_train DAG (dag.test()) on N synthetic rows and record the champion's test ROC AUC.

Usage: python benchmarks/bench_train.py [--rows 100000]  -> benchmarks/results/train.json
Runs against a throwaway AIRFLOW_HOME and airloop home; the shipped config's candidate search is used unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from throwaway import homes

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    homes("airloop-bench-train-")

    from airflow.dag_processing.dagbag import DagBag

    from airloop import etl
    from airloop.registry.aliases import version_record
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias
    from airloop.settings import get_settings

    settings = get_settings()
    started = time.perf_counter()
    params = {"rows": args.rows, "seed": args.seed}
    raw = etl.extract(settings, "bench", params)
    encounters = etl.transform(settings, "bench")
    version = etl.publish(settings, raw["source"], [], "bench").version
    prepare_s = time.perf_counter() - started

    dag = DagBag(dag_folder=str(Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "readmission_train.py")).dags[
        "readmission_train"
    ]
    started = time.perf_counter()
    run = dag.test(run_conf={"dataset_version": version})
    train_dag_s = time.perf_counter() - started
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}

    client = connect(settings)
    champion = client.get_model_version_by_alias(settings.mlflow.model_name, Alias.CHAMPION)
    training_run = client.get_run(version_record(client, settings.mlflow.model_name, champion.version).training_run_id)
    metrics = training_run.data.metrics
    result = {
        "benchmark": "readmission_train dag.test() wall time",
        "rows": args.rows,
        "feature_rows": encounters["rows"],
        "prepare_dataset_s": round(prepare_s, 1),
        "train_dag_s": round(train_dag_s, 1),
        "target_s": 300,
        "meets_target": train_dag_s < 300,
        "task_states": states,
        "champion_version": str(champion.version),
        "champion_kind": training_run.data.params.get("best_kind"),
        "test_metrics": {k: round(v, 4) for k, v in metrics.items() if k.startswith("test_")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "train.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0 if set(states.values()) == {"success"} else 1


if __name__ == "__main__":
    sys.exit(main())
