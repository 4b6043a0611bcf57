"""The ETL stages each model's ``<model>_etl`` DAG wires: extract, validate raw, transform, validate features, publish.

Each stage reads and writes Parquet files in the run's staging folder on the runtime storage (local or ``s3://``, so
tasks on other machines see them) and returns small JSON-able values; stages find their inputs by run id, so the DAG
passes no paths and no frames. The published dataset is the records as the source has them plus the target; the
feature frame is only made to be validated. What the rows look like comes from the bound model's spec. Every function
runs without a scheduler.
"""

from __future__ import annotations

import logging
from typing import Any

from airloop.data import access, sources
from airloop.data.records import prepare
from airloop.data.store import PublishResult, dataset_store
from airloop.quality import data_gate, suites
from airloop.settings import DataSettings, Settings
from airloop.storage import Storage

log = logging.getLogger(__name__)

RAW_FILE = "raw.parquet"
PREPARED_FILE = "prepared.parquet"

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
    merged["postgres_table"] = merged.get("postgres_table") or settings.model  # by default the model's own table
    return DataSettings.model_validate(merged)


def staging(settings: Settings, run_id: str) -> Storage:
    """The staging folder of one ETL run on the runtime storage."""
    return settings.layout.staging(run_id)


def extract(settings: Settings, run_id: str, params: dict[str, Any] | None = None, user: str | None = None) -> dict:
    """Load raw records from the configured source, or the one the run's params name (within ``data.access``, for a
    run ``user`` triggered), into the run's staging folder.

    Raises:
        SourceRefused: the params point the source outside ``data.access``; nothing is read.
    """
    params = {**(params or {}), **access.check(settings, params, user)}  # read exactly what was checked
    data = data_settings(settings, params)
    frame = sources.load_raw(data, settings.spec)
    url = staging(settings, run_id).write_parquet(frame, RAW_FILE)
    source = sources.describe_source(data)
    log.info("extracted %d rows x %d columns from %s into %s", len(frame), frame.shape[1], source, url)
    return {"url": url, "rows": len(frame), "source": source}


def validate_raw(settings: Settings, run_id: str) -> dict[str, Any]:
    """Gate the staged raw batch with the raw suite; a failing batch is quarantined and the task fails."""
    report = data_gate.check(settings, staging(settings, run_id), RAW_FILE, "raw", run_id)
    return report.summary()


def transform(settings: Settings, run_id: str) -> dict[str, Any]:
    """Turn the validated raw batch into the rows to publish (those the spec's filters keep, as recorded, plus the
    target)."""
    folder = staging(settings, run_id)
    raw = folder.read_parquet(RAW_FILE)
    prepared = prepare(settings.spec, raw)
    url = folder.write_parquet(prepared, PREPARED_FILE)
    reasons = "; ".join(f.reason or f.column for f in settings.spec.data.filters) or "no filters"
    log.info(
        "prepared %d rows from %d raw rows (%d dropped: %s) into %s", len(prepared), len(raw), len(raw) - len(prepared),
        reasons, url,
    )  # fmt: skip
    return {"url": url, "rows": len(prepared)}


def validate_features(settings: Settings, run_id: str) -> dict[str, Any]:
    """Gate the features made from the staged rows; failing rows are quarantined and the task fails."""
    folder = staging(settings, run_id)
    features = suites.features_frame(settings.spec, folder.read_parquet(PREPARED_FILE))
    report = data_gate.check(settings, folder, PREPARED_FILE, "features", run_id, frame=features)
    return report.summary()


def publish(settings: Settings, source: str, validations: list[dict[str, Any]], run_id: str) -> PublishResult:
    """Publish the validated rows as a content-hashed version (no-op when that content is already published)."""
    frame = staging(settings, run_id).read_parquet(PREPARED_FILE)
    metadata = {
        "dataset": settings.data.dataset_name,
        "source": source,
        "airflow_run_id": run_id,
        "validation": [{k: v[k] for k in ("suite", "result_id", "success")} for v in validations],
    }
    return dataset_store(settings).publish(frame, metadata)
