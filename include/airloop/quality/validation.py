"""Run a suite on a frame with Great Expectations, build Data Docs, and turn failures into readable evidence.

The GE project (suites, results, the Data Docs site) is a local folder because GE's file context needs one. When the
runtime storage is not local, that folder is only this machine's working copy of what every machine (each Celery
worker has its own) keeps there: before a validation the results and site pages other machines published are fetched,
so the index GE builds lists theirs too; after it, this machine's result and site are published without removing
anything the others published. Reports carry the site's URL on the storage.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import great_expectations as gx
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.exceptions import DataContextError
from great_expectations.expectations import Expectation

from airloop.errors import QualityGateFailed
from airloop.quality import quiet_great_expectations
from airloop.storage import Storage

log = logging.getLogger(__name__)

__all__ = ["Failure", "QualityGateFailed", "ValidationReport", "Validator"]

_MAX_SHOWN = 3
_MAX_CHARS = 32
DATASOURCE = "airloop"
BATCH_DEFINITION = "whole_frame"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
DOCS_ACTION = "update_data_docs"
SITE = "local_site"  # the Data Docs site of a new file project
FINGERPRINT = "airloop_fingerprint"  # suite meta: what the stored suite, definition and checkpoint were written from


def _fingerprint(expectations: list[Expectation]) -> str:
    """A digest of the expectations and of how the checkpoint runs them: equal digests, equal stored project."""
    found = [e.configuration.to_json_dict() for e in expectations]
    for config in found:
        config.pop("id", None)  # GE gives a stored expectation an id; the same expectation is the same without it
    settings = {"batch_definition": BATCH_DEFINITION, "result_format": RESULT_FORMAT, "actions": [DOCS_ACTION]}
    return hashlib.sha256(json.dumps([found, settings], sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Failure:
    """One failed expectation: its type, its column (if any) and what was seen."""

    expectation: str
    column: str | None
    evidence: str

    def __str__(self) -> str:
        target = f"({self.column})" if self.column else ""
        return f"{self.expectation}{target} saw {self.evidence}"


@dataclass
class ValidationReport:
    """The outcome of one validation run."""

    suite: str
    success: bool
    result_id: str
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    docs_url: str | None = None
    result: dict[str, Any] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        """Small JSON-able summary for logs, XCom and dataset metadata."""
        return {
            "suite": self.suite,
            "success": self.success,
            "result_id": self.result_id,
            "evaluated_expectations": self.evaluated,
            "failed_expectations": [str(f) for f in self.failures],
            "data_docs": self.docs_url,
        }


def _short(value: Any) -> str:
    """One value as evidence: at most _MAX_CHARS characters of it, escaped (ASCII, no control characters)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    text = str(value)
    return ascii(text[:_MAX_CHARS] + ("..." if len(text) > _MAX_CHARS else ""))


def _sample(values: Any) -> str:
    """A short, escaped sample of ``values`` (distinct, at most _MAX_SHOWN, each cut to _MAX_CHARS) and how many more
    there are: evidence in a task log and an XCom that every viewer reads, never the content itself."""
    seen: list[Any] = []
    for value in values or []:
        if value not in seen:
            seen.append(value)
    more = len(seen) - _MAX_SHOWN
    shown = "[" + ", ".join(_short(v) for v in seen[:_MAX_SHOWN]) + "]"
    return shown + (f" and {more} more" if more > 0 else "")


def _evidence(
    kind: str,
    column: str | None,
    kwargs: dict[str, Any],
    result: dict[str, Any],
    exception: dict[str, Any],
    frame: pd.DataFrame,
) -> str:
    if exception.get("raised_exception"):
        if column is not None and column not in frame.columns:
            return f"no column {_short(column)}"
        message = (exception.get("exception_message") or "").splitlines()
        return f"an error: {_short(message[0]) if message else 'unknown'}"
    if kind == "expect_table_columns_to_match_ordered_list":
        observed = list(result.get("observed_value") or [])
        expected = list(kwargs.get("column_list") or [])
        missing = [c for c in expected if c not in observed]
        extra = [c for c in observed if c not in expected]
        if missing or extra:
            return f"missing columns {_sample(missing)}, {len(extra)} unexpected columns {_sample(extra)}"
        return "the columns in another order"
    if kind == "expect_column_values_to_be_of_type" and column in frame.columns:
        values = frame[column]
        bad = values[pd.to_numeric(values, errors="coerce").isna()].astype(str).unique().tolist()
        observed, expected = result.get("observed_value"), kwargs.get("type_")
        return f"dtype {_short(observed)} (expected {expected}); non-integer values {_sample(bad)}"
    if "unexpected_count" in result and result.get("unexpected_count") is not None:
        return f"{result['unexpected_count']} unexpected values, e.g. {_sample(result.get('partial_unexpected_list'))}"
    return _short(result.get("observed_value"))


class Validator:
    """A file-backed Great Expectations project under ``root``; the Data Docs site is also copied to ``docs``.

    ``docs`` is where the site is published when it is not a local folder (an ``s3://`` runtime root); reports then
    link there instead of to the local file. ``results`` is where every machine keeps its validation results beside
    such a site (the site is built from them); unused when ``docs`` is local.
    """

    def __init__(self, root: Path, docs: Storage | None = None, results: Storage | None = None) -> None:
        quiet_great_expectations()
        root.mkdir(parents=True, exist_ok=True)
        self.docs = docs
        self.results = results if docs is not None and not docs.is_local else None
        self.context = gx.get_context(mode="file", project_root_dir=str(root))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.context.variables.save()
        try:  # kept as it is: the stored checkpoints name its assets
            self._datasource = self.context.data_sources.get(DATASOURCE)
        except KeyError:  # a new project
            self._datasource = self.context.data_sources.add_or_update_pandas(DATASOURCE)  # another may race us

    def validate(
        self, frame: pd.DataFrame, suite_name: str, expectations: list[Expectation], run_name: str
    ) -> ValidationReport:
        """Validate ``frame`` against the suite, store the result, rebuild Data Docs and report what failed."""
        checkpoint = self._checkpoint(suite_name, expectations)
        self._fetch_shared()
        outcome = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=run_name))
        ((key, result),) = outcome.run_results.items()
        if self.results is not None:  # before the site: a page on the storage always has its result there
            self.results.sync_dir(self._local_results, prune=False)
        failures = [_evidence_failure(r.to_json_dict(), frame) for r in result.results if not r.success]
        docs = self.context.get_docs_sites_urls(resource_identifier=key)
        report = ValidationReport(
            suite=suite_name,
            success=bool(result.success),
            result_id=str(key).split("::", 1)[-1],
            evaluated=len(result.results),
            failures=failures,
            docs_url=self._publish_docs(docs[0]["site_url"] if docs else None),
            result=result.to_json_dict(),
        )
        log.info(
            "%s: %s (%d expectations); result %s",
            suite_name,
            "passed" if report.success else "FAILED",
            report.evaluated,
            report.result_id,
        )
        log.info("Data Docs for this validation: %s", report.docs_url)
        return report

    def _checkpoint(self, suite_name: str, expectations: list[Expectation]) -> gx.Checkpoint:
        """The stored checkpoint of the suite, written again only when the suite or the checkpoint's settings changed.

        GE's ``add_or_update`` compares the stored suite with the new one expectation by expectation, quadratically
        (each comparison converts both to dicts): about 70% of a validation's time on the 115 raw expectations. The
        suite's fingerprint, kept in its ``meta``, says the stored project is current without that comparison.
        """
        fingerprint = _fingerprint(expectations)
        try:
            stored = self.context.checkpoints.get(suite_name)
        except DataContextError:  # a new project, or one this suite never ran in
            stored = None
        if stored and all(d.suite.meta.get(FINGERPRINT) == fingerprint for d in stored.validation_definitions):
            return stored
        asset = (
            self._datasource.add_dataframe_asset(name=suite_name)
            if suite_name not in {a.name for a in self._datasource.assets}
            else self._datasource.get_asset(suite_name)
        )
        batch_definition = next(
            (b for b in asset.batch_definitions if b.name == BATCH_DEFINITION), None
        ) or asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
        suite = gx.ExpectationSuite(name=suite_name, expectations=expectations, meta={FINGERPRINT: fingerprint})
        suite = self.context.suites.add_or_update(suite)
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite)
        )
        return self.context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name=DOCS_ACTION)],
                result_format=RESULT_FORMAT,
            )
        )

    @property
    def _local_results(self) -> Path:
        """The folder of this project's validation results store."""
        return Path(self.context.validation_results_store.store_backend.full_base_directory)

    @property
    def _local_site(self) -> Path:
        """The folder of this project's Data Docs site (also before its first build)."""
        backend = self.context.variables.data_docs_sites[SITE]["store_backend"]
        return Path(self.context.root_directory) / backend["base_directory"]

    def _fetch_shared(self) -> None:
        """Copy the results and site pages other machines published into this project: GE's index lists a validation
        only when both its result and its page are in the project (and removes a page whose result is missing)."""
        if self.results is None or self.docs is None:
            return
        self.results.fetch_dir(self._local_results)
        self.docs.fetch_dir(self._local_site)

    def _publish_docs(self, page_url: str | None) -> str | None:
        """Copy the built site to ``docs`` unless that is local; returns the URL of this validation's page.

        Nothing is pruned: pages this machine never built are other machines' validations, not stale files."""
        if page_url is None or self.docs is None or self.docs.is_local:
            return page_url
        site = Path(url2pathname(urlparse(self.context.get_docs_sites_urls()[0]["site_url"]).path)).parent
        page = Path(url2pathname(urlparse(page_url).path))
        self.docs.sync_dir(site, prune=False)
        return self.docs.url(*page.relative_to(site).parts)


def _evidence_failure(result: dict[str, Any], frame: pd.DataFrame) -> Failure:
    config = result.get("expectation_config") or {}
    kind = config.get("type", "unknown_expectation")
    kwargs = config.get("kwargs") or {}
    column = kwargs.get("column")
    evidence = _evidence(kind, column, kwargs, result.get("result") or {}, result.get("exception_info") or {}, frame)
    return Failure(kind, column, evidence)
