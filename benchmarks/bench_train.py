"""Readmission's training at a search budget against today's fixed trials, on the same rows and the same split.

Usage: python benchmarks/bench_train.py [--rows 100000] [--trials 16] [--minutes 5]  -> benchmarks/results/train.json

Two datasets: ``--rows`` synthetic rows of readmission's calibrated generator, and the early half of the published
``diabetic_data.csv`` (``../shared/data/diabetic_data_early.csv``; that part is skipped, saying why, when the file
is absent). Each is published, validated and split once; then ``pipeline.train`` (the train task's body: trials as
nested MLflow runs, the best refitted, test metrics, importance, the logged model) runs twice on that split:

- ``fixed``: readmission's spec as shipped (its five candidates, scored on the validation part);
- ``search``: the same spec with ``SEARCH`` below at ``--trials`` per kind and ``--minutes`` per kind (TPE, median
  pruning on 3 group folds of the training part, the best refitted and scored on the validation part).

Reported per dataset and mode: the train task's wall time, trials and pruned trials, the chosen kind and params, the
validation metric of the chosen model (the selection metric, on the same validation rows in both modes) and its test
metrics. The budget is worth it only where ``search`` has the better validation metric. Runs in a throwaway airloop
home with a local MLflow store; no Airflow scheduler is involved (the DAG only wires these calls).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
EARLY_HALF = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "diabetic_data_early.csv"

#: The search a readmission team would write into its spec's ``training.search`` (the budget comes from the CLI).
SEARCH: dict[str, Any] = {
    "space": {
        "hist_gradient_boosting": {
            "learning_rate": {"low": 0.02, "high": 0.3, "log": True},
            "max_leaf_nodes": {"low": 8, "high": 64, "integer": True, "log": True},
            "min_samples_leaf": {"low": 10, "high": 400, "integer": True, "log": True},
            "l2_regularization": {"low": 0.001, "high": 10.0, "log": True},
            "max_iter": {"choices": [200, 400]},
        },
        "logistic_regression": {"C": {"low": 0.001, "high": 10.0, "log": True}},
    },
    "folds": 3,
    "pruner": "median",
    "startup_trials": 5,
    "warm_start": False,  # no champion here anyway: both modes start from nothing
}


def _settings_with(settings: Any, **training: Any) -> Any:
    return settings.model_copy(update={"training": settings.training.model_copy(update=training)})


def _one_dataset(settings: Any, label: str, params: dict[str, Any], search: dict[str, Any]) -> dict[str, Any]:
    from airloop import etl
    from airloop.registry.client import connect
    from airloop.training import pipeline

    run_id = f"bench-{label}"
    started = time.perf_counter()
    raw = etl.extract(settings, run_id, params)
    encounters = etl.transform(settings, run_id)
    version = etl.publish(settings, raw["source"], [], run_id).version
    dataset = pipeline.load(settings, version)
    validation = pipeline.validate(settings, version, run_id)
    split_info = pipeline.split(settings, version, run_id)
    prepare_s = time.perf_counter() - started
    out: dict[str, Any] = {
        "source": raw["source"],
        "raw_rows": raw["rows"],
        "published_rows": encounters["rows"],
        "split": {k: split_info[k] for k in ("train", "validation", "test")},
        "prepare_s": round(prepare_s, 1),
    }
    metric = settings.training.metric
    for mode, mode_settings in (("fixed", settings), ("search", _settings_with(settings, search=search))):
        print(f"[{label}] training with the {mode} trials ...", flush=True)
        started = time.perf_counter()
        trained = pipeline.train(mode_settings, dataset, split_info, validation, run_id)
        train_s = time.perf_counter() - started
        run = connect(mode_settings).get_run(trained["run_id"])
        metrics, run_params = run.data.metrics, run.data.params
        kinds = [k for k in ("hist_gradient_boosting", "logistic_regression") if f"{k}_trials" in metrics]
        out[mode] = {
            "train_task_s": round(train_s, 1),
            "trials": {k: int(metrics[f"{k}_trials"]) for k in kinds},
            "pruned": {k: int(metrics[f"{k}_pruned"]) for k in kinds},
            "validation_by_kind": {k: round(metrics[f"{k}_validation_{metric}"], 4) for k in kinds},
            "chosen_kind": run_params.get("best_kind"),
            "chosen_params": {k[5:]: v for k, v in run_params.items() if k.startswith("best_") and k != "best_kind"},
            f"validation_{metric}": round(metrics[f"validation_{metric}"], 4),
            "test_metrics": {k: round(v, 4) for k, v in metrics.items() if k.startswith("test_")},
        }
        print(json.dumps(out[mode], indent=2), flush=True)
    gain = out["search"][f"validation_{metric}"] - out["fixed"][f"validation_{metric}"]
    out["search_minus_fixed"] = {
        f"validation_{metric}": round(gain, 4),
        f"test_{metric}": round(
            out["search"]["test_metrics"][f"test_{metric}"] - out["fixed"]["test_metrics"][f"test_{metric}"], 4
        ),
        "time_ratio": round(out["search"]["train_task_s"] / out["fixed"]["train_task_s"], 2),
    }
    out["budget_buys_better_validation"] = gain > 0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trials", type=int, default=16, help="search budget: trials per kind")
    parser.add_argument("--minutes", type=float, default=5.0, help="search budget: minutes per kind")
    parser.add_argument("--output", type=Path, default=RESULTS / "train.json")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="airloop-bench-train-"))
    os.environ["AIRLOOP_HOME"] = str(home / "airloop")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

    from airloop.settings import get_settings

    settings = get_settings("readmission")
    search = {**SEARCH, "budget": args.trials, "minutes": args.minutes}
    result: dict[str, Any] = {
        "benchmark": "readmission pipeline.train: a search at a budget vs today's fixed trials (same rows, same split)",
        "metric": settings.training.metric,
        "search": search,
        "fixed_candidates": settings.training.candidates,
        "datasets": {},
        "skipped": {},
    }
    synthetic_params = {"source": "synthetic", "rows": args.rows, "seed": args.seed}
    result["datasets"][f"synthetic_{args.rows}"] = _one_dataset(settings, "synthetic", synthetic_params, search)
    if EARLY_HALF.is_file():
        file_settings = settings.model_copy(
            update={"data": settings.data.model_copy(update={"source": "file", "path": EARLY_HALF})}
        )
        result["datasets"]["published_early_half"] = _one_dataset(file_settings, "published", {}, search)
    else:
        result["skipped"]["published_early_half"] = f"{EARLY_HALF} not found (it lives beside the repo, never in it)"
    load = os.getloadavg()
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_end": [round(x, 2) for x in load],
        "note": "a shared 2-core host; other jobs ran meanwhile, so times are upper bounds",
    }
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
