"""The data quality gate: validate a staged batch; a failing batch is quarantined and the task fails with evidence."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airloop.data.store import quarantine
from airloop.errors import QualityGateFailed
from airloop.quality import suites
from airloop.quality.validation import ValidationReport, Validator

if TYPE_CHECKING:
    import pandas as pd

    from airloop.settings import Settings
    from airloop.storage import Storage

log = logging.getLogger(__name__)


def validator(settings: Settings) -> Validator:
    """The Great Expectations project of these settings (this machine's copy), publishing Data Docs and keeping its
    validation results on the runtime storage."""
    layout = settings.layout
    return Validator(settings.gx_dir, docs=layout.data_docs(), results=layout.validation_results())


def data_docs_index(settings: Settings) -> str:
    """Where a person opens the Data Docs: the local site as built, or its copy on the runtime storage."""
    docs = settings.layout.data_docs()
    if docs.is_local:
        return str(settings.gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html")
    return docs.url("index.html")


def check(
    settings: Settings,
    staging: Storage,
    batch: str,
    stage: suites.Stage,
    run_id: str,
    frame: pd.DataFrame | None = None,
) -> ValidationReport:
    """Validate the staged Parquet file ``batch`` (or ``frame``, made from it) with the bound model's ``stage`` suite.

    Args:
        settings: quality bounds, the GE project folder and the runtime storage.
        staging: the run's staging storage that holds ``batch``.
        batch: file name of the batch in ``staging``; this is what gets quarantined.
        stage: ``raw`` or ``features``: which of the model's suites, and the quarantine folder's name.
        run_id: names the validation run in GE's results and Data Docs.
        frame: what to validate when it is not the batch itself (the features made from staged encounters).

    Returns:
        The passing report.

    Raises:
        QualityGateFailed: after moving the batch to quarantine; names every failed expectation, the quarantine URL
            and the Data Docs URL.
    """
    data = staging.read_parquet(batch) if frame is None else frame
    spec = settings.spec
    expectations = suites.expectations(spec, settings.quality, stage, list(data.columns))
    report = validator(settings).validate(data, suites.suite_name(spec, stage), expectations, run_id)
    if report.success:
        return report
    reason = "\n".join(str(f) for f in report.failures)
    target = settings.layout.quarantine(settings.data.dataset_name)
    record = quarantine(target, staging, batch, report.result, reason, stage)
    error = QualityGateFailed(report, quarantined_at=record.url)
    log.error("%s", error)
    raise error
