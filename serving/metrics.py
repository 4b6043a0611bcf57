"""Prometheus metrics of one app instance (its own registry, so tests and apps never share counters).

Label values stay bounded: ``model`` is a hosted model's name (or "" when a request addressed none), ``endpoint`` a
path of a route of a hosted model (anything else is ``<unmatched>``, see ``serving.main``), ``variant`` a served alias
(``airloop.registry.contract.SERVED_ALIASES``), ``verdict`` and ``action`` one of the fixed values of
``serving.state.LedgerFigures``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    """Requests, latency, predictions by model, variant and version, errors by kind and model, the logs' backlog, the
    micro-batches, and each model's newest drift verdict and A/B evaluation from its decision ledger."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "airloop_requests_total", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "airloop_request_latency_seconds",
            "Request latency",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
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
        # Read at every scrape (``set_function`` on each variant's batcher, ``serving.main``): records waiting for the
        # model; requests that would take it past ``serving.max_queued_records`` are refused (errors kind "overloaded").
        self.batch_queued = Gauge(
            "airloop_batch_queued_records",
            "Records waiting in a variant's micro-batch queue for the model",
            ["model", "variant"],
            registry=self.registry,
        )
        # Observed once per request and variant that got scores: the model call that scored its records (a batch's
        # call is counted once for each request it answered); time waiting in the queue is not in it.
        self.model_latency = Histogram(
            "airloop_model_latency_seconds",
            "Model call time per request and variant (the micro-batch's call that scored the request's records)",
            ["model", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # The newest drift verdict and A/B evaluation of each model, from its decision ledger: set by
        # ``serving.state.LedgerFigures`` (read in the background, at most once a minute, when a scrape finds them
        # older); a ledger that cannot be read leaves them as they were (errors kind "ledger_unreadable").
        self.drift_share = Gauge(
            "airloop_drift_drifted_share",
            "Share of the features the newest drift verdict found drifted (NaN: the verdict has none)",
            ["model"],
            registry=self.registry,
        )
        self.drift_rows = Gauge(
            "airloop_drift_rows", "Rows in the window of the newest drift verdict", ["model"], registry=self.registry
        )
        self.drift_verdict = Gauge(
            "airloop_drift_verdict",
            "1 for the newest drift verdict (no_drift, alert, drift, insufficient_data), 0 for the others",
            ["model", "verdict"],
            registry=self.registry,
        )
        self.drift_time = Gauge(
            "airloop_drift_verdict_timestamp_seconds",
            "When the newest drift verdict was decided (Unix time)",
            ["model"],
            registry=self.registry,
        )
        self.evaluation_action = Gauge(
            "airloop_evaluation_action",
            "1 for the newest A/B evaluation's action (continue, promote, reject, halt), 0 for the others",
            ["model", "action"],
            registry=self.registry,
        )
        self.evaluation_labelled = Gauge(
            "airloop_evaluation_labelled",
            "Labelled rows of each arm in the newest A/B evaluation",
            ["model", "variant"],
            registry=self.registry,
        )
        self.evaluation_time = Gauge(
            "airloop_evaluation_timestamp_seconds",
            "When the newest A/B evaluation was decided (Unix time)",
            ["model"],
            registry=self.registry,
        )
