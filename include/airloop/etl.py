"""The ETL stages that the ``readmission_etl`` DAG wires: extract, validate raw, transform, validate features, publish.

Each stage reads and writes Parquet files in the run's staging folder on the runtime storage (local or ``s3://``, so
tasks on other machines see them) and returns small JSON-able values; stages find their inputs by run id, so the DAG
passes no paths and no frames. The published dataset is the encounters as the hospital records them plus the target;
the feature frame is only made to be validated. Every function runs without a scheduler.
"""

from __future__ import annotations

import logging
from typing import Any

from airloop.data import sources
from airloop.data.store import PublishResult, dataset_store
from airloop.data.transform import prepare
from airloop.data.transform import transform as to_features
from airloop.quality import data_gate, suites
from airloop.settings import DataSettings, Settings
from airloop.storage import Storage

log = logging.getLogger(__name__)

RAW_FILE = "raw.parquet"
ENCOUNTERS_FILE = "encounters.parquet"

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


def staging(settings: Settings, run_id: str) -> Storage:
    """The staging folder of one ETL run on the runtime storage."""
    return settings.layout.staging(run_id)


def extract(settings: Settings, run_id: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load raw encounters from the configured source into the run's staging folder."""
    data = data_settings(settings, params)
    frame = sources.load_raw(data)
    url = staging(settings, run_id).write_parquet(frame, RAW_FILE)
    source = sources.describe_source(data)
    log.info("extracted %d rows x %d columns from %s into %s", len(frame), frame.shape[1], source, url)
    return {"url": url, "rows": len(frame), "source": source}


def validate_raw(settings: Settings, run_id: str) -> dict[str, Any]:
    """Gate the staged raw batch with the raw suite; a failing batch is quarantined and the task fails."""
    report = data_gate.check(settings, staging(settings, run_id), RAW_FILE, suites.RAW_SUITE, run_id, "raw")
    return report.summary()


def transform(settings: Settings, run_id: str) -> dict[str, Any]:
    """Turn the validated raw batch into the encounters to publish (readmittable ones, as recorded, plus the target)."""
    folder = staging(settings, run_id)
    raw = folder.read_parquet(RAW_FILE)
    encounters = prepare(raw)
    url = folder.write_parquet(encounters, ENCOUNTERS_FILE)
    log.info(
        "prepared %d encounters from %d raw rows (%d dropped: expired/hospice) into %s",
        len(encounters),
        len(raw),
        len(raw) - len(encounters),
        url,
    )
    return {"url": url, "rows": len(encounters)}


def validate_features(settings: Settings, run_id: str) -> dict[str, Any]:
    """Gate the features made from the staged encounters; failing encounters are quarantined and the task fails."""
    folder = staging(settings, run_id)
    features = to_features(folder.read_parquet(ENCOUNTERS_FILE))
    report = data_gate.check(
        settings, folder, ENCOUNTERS_FILE, suites.FEATURES_SUITE, run_id, "features", frame=features
    )
    return report.summary()


def publish(settings: Settings, source: str, validations: list[dict[str, Any]], run_id: str) -> PublishResult:
    """Publish the validated encounters as a content-hashed version (no-op when that content is already published)."""
    frame = staging(settings, run_id).read_parquet(ENCOUNTERS_FILE)
    metadata = {
        "dataset": settings.data.dataset_name,
        "source": source,
        "airflow_run_id": run_id,
        "validation": [{k: v[k] for k in ("suite", "result_id", "success")} for v in validations],
    }
    return dataset_store(settings).publish(frame, metadata)
