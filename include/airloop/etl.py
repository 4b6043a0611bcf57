"""The ETL stages that the ``readmission_etl`` DAG wires: extract, validate raw, transform, validate features, publish.

Each stage reads and writes Parquet files in a per-run staging folder and returns small JSON-able values, so the
DAG passes paths through XCom, never frames. Every function runs without a scheduler.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from airloop.data import sources
from airloop.data.store import DatasetStore, PublishResult, quarantine
from airloop.data.transform import transform as to_features
from airloop.quality import suites
from airloop.quality.gate import QualityGateFailed, ValidationReport, Validator
from airloop.settings import DataSettings, Settings

log = logging.getLogger(__name__)

RAW_FILE = "raw.parquet"
FEATURES_FILE = "features.parquet"

# DAG params (all optional) and the DataSettings fields they override.
PARAM_FIELDS = {
    "source": "source",
    "path": "path",
    "s3_uri": "s3_uri",
    "postgres_table": "postgres_table",
    "rows": "synthetic_rows",
    "seed": "synthetic_seed",
}


def data_settings(settings: Settings, params: dict[str, Any] | None = None) -> DataSettings:
    """The data settings for one run: config defaults overridden by the run's non-empty params."""
    params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    update = {field: params[name] for name, field in PARAM_FIELDS.items() if name in params}
    drift = settings.data.drift.model_copy(
        update={k: float(params[f"{k}_drift"]) for k in ("covariate", "concept") if f"{k}_drift" in params}
    )
    merged = settings.data.model_dump() | update | {"drift": drift.model_dump()}
    return DataSettings.model_validate(merged)


def run_dir(settings: Settings, run_id: str) -> Path:
    """The staging folder of one run (run ids contain ':' and '+', which are kept out of paths)."""
    path = settings.staging_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def extract(settings: Settings, run_id: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load raw encounters from the configured source into the run's staging folder."""
    data = data_settings(settings, params)
    frame = sources.load_raw(data)
    path = run_dir(settings, run_id) / RAW_FILE
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    source = sources.describe_source(data)
    log.info("extracted %d rows x %d columns from %s into %s", len(frame), frame.shape[1], source, path)
    return {"path": str(path), "rows": len(frame), "source": source}


def _gate(settings: Settings, batch: Path, suite: str, run_id: str, stage: str) -> ValidationReport:
    frame = pd.read_parquet(batch)
    report = Validator(settings.gx_dir).validate(frame, suite, suites.SUITES[suite](settings.quality), run_id)
    if not report.success:
        reason = "\n".join(str(f) for f in report.failures)
        record = quarantine(settings.quarantine_dir / settings.data.dataset_name, batch, report.result, reason, stage)
        error = QualityGateFailed(report, quarantined_at=record.path)
        log.error("%s", error)
        raise error
    return report


def validate_raw(settings: Settings, raw_path: str, run_id: str) -> dict[str, Any]:
    """Gate the raw batch with the raw suite; a failing batch is quarantined and the task fails."""
    return _gate(settings, Path(raw_path), suites.RAW_SUITE, run_id, "raw").summary()


def transform(settings: Settings, raw_path: str, run_id: str) -> dict[str, Any]:
    """Turn the validated raw batch into the feature frame."""
    raw = pd.read_parquet(raw_path)
    features = to_features(raw)
    path = run_dir(settings, run_id) / FEATURES_FILE
    tmp = path.with_suffix(".tmp")
    features.to_parquet(tmp, index=False)
    tmp.replace(path)
    log.info(
        "transformed %d raw rows into %d feature rows (%d dropped: expired/hospice)",
        len(raw),
        len(features),
        len(raw) - len(features),
    )
    return {"path": str(path), "rows": len(features)}


def validate_features(settings: Settings, features_path: str, run_id: str) -> dict[str, Any]:
    """Gate the feature frame with the features suite; a failing batch is quarantined and the task fails."""
    return _gate(settings, Path(features_path), suites.FEATURES_SUITE, run_id, "features").summary()


def dataset_store(settings: Settings) -> DatasetStore:
    """The store of the configured dataset."""
    return DatasetStore(settings.datasets_dir / settings.data.dataset_name)


def publish(
    settings: Settings, features_path: str, source: str, validations: list[dict[str, Any]], run_id: str
) -> PublishResult:
    """Publish the validated features as a content-hashed version (no-op when that content is already published)."""
    frame = pd.read_parquet(features_path)
    metadata = {
        "dataset": settings.data.dataset_name,
        "source": source,
        "airflow_run_id": run_id,
        "validation": [{k: v[k] for k in ("suite", "result_id", "success")} for v in validations],
    }
    return dataset_store(settings).publish(frame, metadata)
