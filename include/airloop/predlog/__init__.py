"""The prediction, feedback and scoring-error logs: one typed row schema each (``schema``), a buffered writer
(``writer``), time-window readers and the outcome join (``reader``), and the request ids that tie an outcome to its
prediction (``request_ids``).

Serving appends a ``PredictionRow`` per scored record (with the variant's scoring latency), a ``FeedbackRow`` per
posted outcome and an ``ErrorRow`` per failed model call to a ``LogWriter``; the drift and A/B evaluation DAGs read a
window back with ``read_predictions`` / ``read_feedback`` / ``read_errors`` and join outcomes with ``join_outcomes``.
Nothing outside this package builds a row, a path or a schema of these logs.

Layout below a log's root (one ``Storage`` per log)::

    date=YYYY-MM-DD/hour=HH/part-<writer id>-<uuid>.parquet

partitioned by when the prediction was made (feedback: received), not when it was flushed. A part is complete or
absent: written to a temporary name and renamed on a local disk; on S3 an object is visible only once its upload
completes. Readers take only ``part-*.parquet`` names, so a replica killed mid-write leaves at most a ``.part-*.tmp``
file that nobody reads, and the writer id plus a UUID in every name keep replicas sharing a root from ever overwriting
each other. Every part carries ``SCHEMA_VERSION`` and the log's name in its Parquet key-value metadata.

What the model saw: ``record`` keeps the raw record exactly as the client sent it, and the registered model version
carries its own feature transform, so ``record`` + ``model_version`` rebuild the model's input. Drift can therefore be
computed on the raw records (``raw_records``) or on the transformed features.
"""

from airloop.predlog.reader import (
    DEFAULT_BATCH_ROWS,
    hour_sizes,
    is_correction,
    join_outcomes,
    load_errors,
    load_feedback,
    load_predictions,
    raw_records,
    read_errors,
    read_feedback,
    read_predictions,
    standing_outcomes,
)
from airloop.predlog.request_ids import is_issued, new_request_id, new_request_ids
from airloop.predlog.schema import (
    CORRECTION,
    ERROR_SCHEMA,
    ERRORS,
    FEEDBACK,
    FEEDBACK_SCHEMA,
    LOG_KEY,
    PREDICTION_SCHEMA,
    PREDICTIONS,
    RECORD,
    RECORD_PREFIX,
    SCHEMA_VERSION,
    VERSION_KEY,
    WRITER_KEY,
    ErrorRow,
    FeedbackRow,
    LogFormat,
    LogSchemaError,
    PredictionRow,
    partition_of,
)
from airloop.predlog.writer import LogWriteError, LogWriter, error_log, feedback_log, prediction_log

__all__ = [
    "CORRECTION",
    "DEFAULT_BATCH_ROWS",
    "ERRORS",
    "ERROR_SCHEMA",
    "FEEDBACK",
    "FEEDBACK_SCHEMA",
    "LOG_KEY",
    "PREDICTIONS",
    "PREDICTION_SCHEMA",
    "RECORD",
    "RECORD_PREFIX",
    "SCHEMA_VERSION",
    "VERSION_KEY",
    "WRITER_KEY",
    "ErrorRow",
    "FeedbackRow",
    "LogFormat",
    "LogSchemaError",
    "LogWriteError",
    "LogWriter",
    "PredictionRow",
    "error_log",
    "feedback_log",
    "hour_sizes",
    "is_correction",
    "is_issued",
    "join_outcomes",
    "load_errors",
    "load_feedback",
    "load_predictions",
    "new_request_id",
    "new_request_ids",
    "partition_of",
    "prediction_log",
    "raw_records",
    "read_errors",
    "read_feedback",
    "read_predictions",
    "standing_outcomes",
]
