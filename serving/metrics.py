"""Prometheus metrics of one app instance (its own registry, so tests and apps never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """Requests, latency, predictions by variant and version, errors by kind."""

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
            "airloop_predictions_total", "Scored records", ["variant", "version", "served"], registry=self.registry
        )
        self.errors = Counter("airloop_errors_total", "Errors by kind", ["kind"], registry=self.registry)
        self.batch_size = Histogram(
            "airloop_model_batch_records",
            "Records per model call",
            ["variant"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
