"""airloop's exceptions, importable at DAG-parse time (no heavy imports) so retry policies can name them."""

from __future__ import annotations


class AirloopError(Exception):
    """Base of airloop's errors."""


class FinalError(AirloopError):
    """Retrying cannot help (bad data, an impossible registry action): the task fails at once."""


class SourceError(AirloopError):
    """A raw source could not be read; says which source, where, and what went wrong."""

    def __init__(self, source: str, location: str, problem: str) -> None:
        super().__init__(f"{source} source {location}: {problem}")
        self.source = source
        self.location = location
        self.problem = problem


class SourceNotFound(SourceError, FinalError):
    """The source's file, S3 bucket or object, PostgreSQL table or Airflow connection does not exist."""


class SourceMisconfigured(SourceError, FinalError):
    """The data settings cannot name a source (unknown kind, unset field, malformed URI or table name)."""


class QualityGateFailed(FinalError):
    """A batch failed its expectation suite; the message names every failed expectation and the evidence."""

    def __init__(self, report, quarantined_at: str | None = None) -> None:
        self.report = report
        self.quarantined_at = quarantined_at
        lines = [f"{len(report.failures)} expectations failed in suite {report.suite}:"]
        lines += [f"  - {failure}" for failure in report.failures]
        if quarantined_at:
            lines.append(f"batch quarantined at {quarantined_at} (validation_result.json beside it)")
        if report.docs_url:
            lines.append(f"Data Docs: {report.docs_url}")
        super().__init__("\n".join(lines))


class RegistryActionError(FinalError):
    """A promotion or rollback cannot be done in the registry's current state; the message says why."""
