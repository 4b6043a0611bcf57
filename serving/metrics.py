"""Prometheus metrics of one app instance (its own registry, so tests and apps never share counters).

Label values stay bounded: ``model`` is a hosted model's name (or "" when a request addressed none), ``endpoint`` a
path of a route of a hosted model (anything else is ``<unmatched>``, see ``serving.main``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Requests, latency, predictions by model, variant and version, errors by kind and model."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "airloop_requests_total", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "airloop_request_latency_seconds",
            "Request latency",
            ["endpoint"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.predictions = Counter(
            "airloop_predictions_total",
            "Scored records",
            ["model", "variant", "version", "served"],
            registry=self.registry,
        )
        self.errors = Counter("airloop_errors_total", "Errors by kind", ["kind", "model"], registry=self.registry)
        # Each log's writer, read at every scrape: what waits in memory, what waits on local disk (storage refused
        # it), what was given up, and whether the last write to storage failed.
        self.log_rows = Gauge(
            "airloop_log_rows",
            "Rows of a log by state: pending (memory), spilled (local disk), dropped and refused (so far)",
            ["model", "log", "state"],
            registry=self.registry,
        )
        self.log_failing = Gauge(
            "airloop_log_failing",
            "1 while the log cannot be written to storage",
            ["model", "log"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "airloop_model_batch_records",
            "Records per model call",
            ["model", "variant"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
