"""The drift job: what each task of ``<model>_drift`` does, as plain functions (load window → compare → report →
decide → alert / trigger).

A job looks at one model version (the ``champion``, or the alias named by ``variant``) over one window:

- **prediction log** (the default): rows that version scored in ``[start, end)``. ``end`` is the DAG run's
  ``run_after`` (or the ``window_end`` param), ``start`` the end of the last completed verdict on the same version
  (the watermark, from the ledger), else the version's registration time. A window with too few rows gets no verdict
  and does not move the watermark, so its rows are counted again with the next ones; a run that failed before its
  outcome was recorded does not move it either, so no row is skipped or counted twice.
- **a published dataset** (``dataset_version``, or the version in the Asset event that scheduled the run): data drift
  before any model serves it, the model's probabilities on it, and realised performance from its labels.

Tasks hand over through the run's staging folder on the runtime storage, so they may run on different machines. Each
step is idempotent under retries: the same window gives the same report id, the same ledger key and the same retrain
run id.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from airloop import predlog
from airloop.errors import FinalError
from airloop.ledger import Kind, Resolution, ledger, run_id_for
from airloop.monitoring import report as rep
from airloop.monitoring.baseline import load_profile
from airloop.monitoring.drift import DriftThresholds
from airloop.registry.contract import Alias
from airloop.settings import Settings
from airloop.times import parse_time

log = logging.getLogger(__name__)

PREDICTION_LOG = "prediction_log"
# A window part's summary in the run's staging folder (``profile_part``): counts, per-row values, sample.
PART_COUNTS = "drift_part-{}.json"
PART_ROWS = "drift_part-{}-rows.parquet"
PART_SAMPLE = "drift_part-{}-sample.parquet"
REPORT_FILE = "drift_report.json"
PROFILE_ARTIFACT = "baseline/baseline_stats.json"
THRESHOLD_KEYS = (
    "psi",
    "drifted_share",
    "prediction_psi",
    "min_rows",
    "alpha",
    "psi_overrides",
    "weights",
    "max_estimated_auc_drop",
    "importance_floor",
    "importance_drift",
    "max_missing_change",
    "max_unseen_share",
    "calibration_level",
    "min_calibration_gap",
    "auc_tolerance",
    "min_labelled_rows",
    "multivariate_auc",
)
RETRAIN_RUN_PREFIX = "retrain"


class NothingToMonitor(FinalError):
    """The run cannot compare anything: the window's bounds, the variant or the thresholds are wrong."""


class NoModelVersion(NothingToMonitor):
    """The alias to monitor points at no version yet: nothing serves, so there is nothing to compare."""


@dataclass(frozen=True)
class Window:
    """The rows one drift run looks at, staged for the next task."""

    model_name: str
    model_version: str
    variant: str
    source: str  # "prediction_log" or "dataset:<version>"
    start: str  # ISO, UTC
    end: str
    rows: int
    labelled_rows: int
    run_id: str  # MLflow run of the model version (where its profile is)
    parts: int = 1  # how many parts profile_part summarised (plan_window)

    @property
    def subject(self) -> str:
        """The ledger subject of this window's verdict: the model version it is about."""
        return f"{self.model_name}/v{self.model_version}"

    @property
    def key(self) -> str:
        """The ledger key of this window's verdict: one verdict per version, source and window end."""
        return f"drift:{self.subject}:{self.source}:{self.end}"


def _parse_time(value: Any, what: str) -> datetime:
    """``airloop.times.parse_time``; a time that cannot be read leaves nothing to monitor."""
    try:
        return parse_time(value, what)
    except ValueError as err:
        raise NothingToMonitor(str(err)) from err


def thresholds(settings: Settings, override: Mapping[str, Any] | None = None) -> DriftThresholds:
    """The verdict thresholds of the settings, with a run's ``thresholds`` param laid over them."""
    cfg = settings.monitoring
    values: dict[str, Any] = {k: getattr(cfg, k) for k in THRESHOLD_KEYS}
    unknown = sorted(set(override or {}) - set(THRESHOLD_KEYS))
    if unknown:
        raise NothingToMonitor(f"unknown thresholds {unknown}: use {list(THRESHOLD_KEYS)}")
    values.update({k: v for k, v in (override or {}).items() if v is not None})
    try:
        return DriftThresholds(**values)
    except (TypeError, ValueError) as err:
        raise NothingToMonitor(f"thresholds {dict(override or {})} are invalid: {err}") from err


def watermark(settings: Settings, subject: str, source: str, before: datetime | None = None) -> datetime | None:
    """The end of the last completed verdict on ``subject`` from ``source`` (ending before ``before``, when given):
    where the next window starts."""
    ends = [
        _parse_time(row.payload["window"]["end"], "window end")
        for row in ledger(settings).rows(kind=Kind.DRIFT_VERDICT, subject=subject)
        if row.outcome is not None
        and row.payload.get("source") == source
        and row.payload.get("verdict") in ("drift", "alert", "no_drift")
    ]
    ends = [e for e in ends if before is None or e < before]
    return max(ends) if ends else None


def _window_start(settings: Settings, subject: str, end: datetime, registered: datetime) -> datetime:
    """Where a prediction-log window ending at ``end`` starts: as recorded, if this window was judged before (a
    cleared or re-run drift run), else at the watermark, else at the version's registration."""
    recorded = ledger(settings).get(f"drift:{subject}:{PREDICTION_LOG}:{end.isoformat()}")
    if recorded is not None:
        return _parse_time(recorded.payload["window"]["start"], "recorded window start")
    return watermark(settings, subject, PREDICTION_LOG, before=end) or registered


def _model_version(settings: Settings, alias: str) -> Any:
    from airloop.registry import aliases
    from airloop.registry.client import connect

    client = connect(settings)
    name = settings.mlflow.model_name
    if alias not in {a.value for a in Alias}:
        raise NothingToMonitor(f"variant {alias!r} is not one of {[a.value for a in Alias]}")
    version = aliases.alias_version(client, name, alias)
    if version is None:
        raise NoModelVersion(f"model {name!r} has no {alias!r} version: train one before monitoring drift")
    return client.get_model_version(name, version)


def _profile(settings: Settings, run_id: str) -> dict[str, Any]:
    import mlflow.artifacts

    from airloop.registry.client import connect

    connect(settings)
    where = f"runs:/{run_id}/{PROFILE_ARTIFACT}"
    try:
        data = mlflow.artifacts.load_dict(where)
    except Exception as err:  # any failure to fetch means the same to the user: retrain to enable monitoring
        log.warning("reference profile %s not readable: %s", where, err)
        data = None
    return load_profile(data, where)


def _reference_sample(settings: Settings, run_id: str) -> pd.DataFrame | None:
    """The version's stored sample of training features for the multivariate check; None for a version without one
    (trained before it was stored: the check is skipped and the report says so)."""
    import mlflow.artifacts

    from airloop.monitoring.multivariate import SAMPLE_ARTIFACT
    from airloop.registry.client import connect

    connect(settings)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{SAMPLE_ARTIFACT}", dst_path=tmp)
            return pd.read_parquet(path)
    except Exception as err:  # absent or unreadable: the same to the user, no multivariate check
        log.info("no reference sample for run %s (%s): multivariate check skipped", run_id, type(err).__name__)
        return None


def _features(model: Any, raw: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The features the model's own feature step makes of the window's records (the records themselves for a model
    without one)."""
    from airloop.training.record_features import feature_step

    step = feature_step(model)
    for column in columns:
        if column not in raw.columns:
            raw[column] = None
    inputs = raw[columns]
    return step.transform(inputs) if step is not None else inputs.copy()


def plan_window(
    settings: Settings,
    run_after: datetime | str,
    params: Mapping[str, Any] | None = None,
    dataset_version: str | None = None,
) -> list[dict[str, Any]]:
    """Which rows the run looks at, in parts that separate tasks profile (``profile_part``): the window's bounds and
    its parts' ``[start, end)``, whole hours of log of at most ``monitoring.window_part_mb`` each (larger when that
    makes more than ``monitoring.max_window_parts``), from one listing of the log; a published dataset is one part.

    Args:
        settings: airloop settings.
        run_after: when the run was due: the window's end unless ``params["window_end"]`` says otherwise.
        params: ``variant`` (alias, default champion), ``window_start``, ``window_end``, ``dataset_version``.
        dataset_version: a published version to compare instead of the prediction log (the Asset event's).

    Returns:
        One dict per part: ``window`` (the ``Window``, its rows not counted yet), ``index``, ``start``, ``end``.
    """
    from airloop.data.store import dataset_store

    params = dict(params or {})
    alias = params.get("variant") or Alias.CHAMPION.value
    version = _model_version(settings, alias)
    name = settings.mlflow.model_name
    _profile(settings, version.run_id)  # fail now, before reading anything, if the version cannot be monitored
    dataset_version = params.get("dataset_version") or dataset_version
    end = _parse_time(params.get("window_end") or run_after, "window_end")
    if dataset_version:
        source = f"dataset:{dataset_version}"
        start = _parse_time(dataset_store(settings).metadata(dataset_version)["created_at"], "dataset created_at")
        start = min(start, end - timedelta(seconds=1))
        bounds = [(start, end)]
    else:
        source = PREDICTION_LOG
        subject = f"{name}/v{version.version}"
        registered = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
        start = _parse_time(params["window_start"], "window_start") if params.get("window_start") else None
        start = start or _window_start(settings, subject, end, registered)
        if start >= end:
            raise NothingToMonitor(f"the window must end after it starts: {start.isoformat()} .. {end.isoformat()}")
        sizes = predlog.hour_sizes(settings.layout.predictions(), start, end)
        part_bytes = int(settings.monitoring.window_part_mb * 2**20)
        bounds = window_parts(start, end, sizes, part_bytes, settings.monitoring.max_window_parts)
    window = Window(
        model_name=name,
        model_version=str(version.version),
        variant=alias,
        source=source,
        start=start.isoformat(),
        end=end.isoformat(),
        rows=0,
        labelled_rows=0,
        run_id=version.run_id,
        parts=len(bounds),
    )
    return [
        {"window": asdict(window), "index": i, "start": a.isoformat(), "end": b.isoformat()}
        for i, (a, b) in enumerate(bounds)
    ]


def window_parts(
    start: datetime, end: datetime, sizes: Mapping[datetime, int], part_bytes: int, most: int
) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at whole hours into parts of at most ``part_bytes`` of log each (``sizes``: the bytes of
    each hour, by its start), consecutive hours together: a sparse window is one part, a busy one many. At most
    ``most`` parts: beyond that, parts are larger. An hour larger than the budget is a part of its own."""
    hours = sorted((hour, size) for hour, size in sizes.items() if hour + timedelta(hours=1) > start and hour < end)
    budget = max(part_bytes, math.ceil(sum(size for _, size in hours) / most))
    while True:  # at most log2(total / budget) rounds: a budget of the whole window makes one part
        cuts, held = [], 0
        for hour, size in hours:
            if held and held + size > budget and start < hour < end:
                cuts.append(hour)
                held = 0
            held += size
        if len(cuts) < most:
            return list(pairwise([start, *cuts, end]))
        budget *= 2


def profile_part(settings: Settings, run_id: str, part: Mapping[str, Any]) -> dict[str, Any]:
    """Read one part of the window, make the model's features of it and store its ``WindowSummary`` (counts per
    feature, probabilities, outcomes, a bounded sample) in the run's staging folder: never the rows themselves.

    Returns:
        ``{"index", "rows", "labelled_rows"}`` of the part.
    """
    from airloop.data.store import dataset_store
    from airloop.monitoring.drift import summarize, summary_parts
    from airloop.training import model_io

    w = Window(**part["window"])
    spec = settings.spec
    input_columns, target = spec.data.input_columns, spec.data.target.name
    start, end = _parse_time(part["start"], "part start"), _parse_time(part["end"], "part end")
    profile = _profile(settings, w.run_id)
    model = model_io.load_sklearn_model(f"models:/{w.model_name}/{w.model_version}")
    if w.source != PREDICTION_LOG:
        frame = dataset_store(settings).load(w.source.removeprefix("dataset:"))
        raw = frame[[c for c in frame.columns if c in input_columns]].copy()
        outcomes = frame[target].to_numpy(dtype=float) if target in frame else None
        probabilities = None
    else:
        predictions = predlog.load_predictions(
            settings.layout.predictions(), start, end, columns=["request_id", "model_version", "probability", "record"]
        )
        predictions = predictions[predictions["model_version"] == w.model_version]
        if len(predictions):
            # Outcomes arrive late (the spec's target.delay_days): take every one received by now, not only in it.
            # Outcomes arrive after their predictions, in this part or any time after it (up to the window's end
            # or now, whichever is later, as for the whole window).
            until = max(_parse_time(w.end, "window end"), datetime.now(UTC))
            feedback = predlog.load_feedback(settings.layout.feedback(), start, until)
            predictions = predlog.join_outcomes(predictions, feedback)
        raw = predlog.raw_records(predictions).copy()
        probabilities = predictions["probability"].to_numpy(dtype=float)
        outcomes = predictions["outcome"].to_numpy(dtype=float, na_value=np.nan) if "outcome" in predictions else None
    staged = _features(model, raw, input_columns) if len(raw) else raw
    if probabilities is None:  # a dataset: score it with the model, as serving would
        probabilities = model.predict_proba(raw[input_columns])[:, 1] if len(raw) else np.empty(0)
    summary = summarize(profile, staged, probabilities, outcomes, settings.monitoring.segments)
    counts, per_row, sample = summary_parts(summary)
    staging = settings.layout.staging(run_id)
    index = int(part["index"])
    # The counts last: a part is profiled once its counts file is there (a retried task writes the same files).
    if summary.rows and len(per_row.columns):
        staging.write_parquet(per_row, PART_ROWS.format(index))
    if len(sample):
        staging.write_parquet(sample.reset_index(drop=True), PART_SAMPLE.format(index))
    staging.write_json(counts, PART_COUNTS.format(index))
    labelled = 0 if summary.outcomes is None else int(np.isfinite(summary.outcomes).sum())
    log.info("window %s part %d (%s .. %s): %d rows, %d labelled", w.key, index, start, end, summary.rows, labelled)
    return {"index": index, "rows": summary.rows, "labelled_rows": labelled}


def gather_window(parts: list[Mapping[str, Any]], profiled: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``Window`` of ``plan_window``'s parts with the rows ``profile_part`` counted in each."""
    window = dict(parts[0]["window"])
    done = {int(p["index"]) for p in profiled}
    if done != set(range(window["parts"])):
        raise NothingToMonitor(f"parts {sorted(set(range(window['parts'])) - done)} of the window were not profiled")
    window["rows"] = sum(int(p["rows"]) for p in profiled)
    window["labelled_rows"] = sum(int(p["labelled_rows"]) for p in profiled)
    w = Window(**window)
    if not w.rows:
        log.info("no rows scored by %s in %s .. %s (%s): nothing to compare", w.subject, w.start, w.end, w.source)
    return window


def load_window(
    settings: Settings,
    run_id: str,
    run_after: datetime | str,
    params: Mapping[str, Any] | None = None,
    dataset_version: str | None = None,
) -> dict[str, Any]:
    """``plan_window``, ``profile_part`` for each part and ``gather_window`` in one process: the window, its parts'
    summaries staged for ``compare_window``; ``rows`` is 0 when there is nothing to compare."""
    parts = plan_window(settings, run_after, params, dataset_version)
    return gather_window(parts, [profile_part(settings, run_id, part) for part in parts])


def compare_window(
    settings: Settings, run_id: str, window: Mapping[str, Any], override: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge the window's staged part summaries, compare them with the version's profile; stage the report JSON;
    return its summary."""
    from airloop.monitoring.drift import compare_summary, merge_summaries, summary_from_parts

    w = Window(**window)
    limits = thresholds(settings, override)
    profile = _profile(settings, w.run_id)
    staging = settings.layout.staging(run_id)

    def read(index: int):
        rows, sample = PART_ROWS.format(index), PART_SAMPLE.format(index)
        return summary_from_parts(
            staging.read_json(PART_COUNTS.format(index)),
            staging.read_parquet(rows) if staging.exists(rows) else pd.DataFrame(),
            staging.read_parquet(sample) if staging.exists(sample) else pd.DataFrame(),
        )

    merged = merge_summaries([read(i) for i in range(w.parts)])
    if merged.outcomes is not None and not np.isfinite(merged.outcomes).any():
        merged.outcomes = None  # no outcome has arrived: no realised performance
    result = compare_summary(
        profile, merged, limits, _reference_sample(settings, w.run_id), settings.monitoring.segments
    )
    end = _parse_time(w.end, "window end")
    context = rep.ReportContext(
        model_name=w.model_name,
        model_version=w.model_version,
        window_start=_parse_time(w.start, "window start"),
        window_end=end,
        source=w.source,
        variant=w.variant,
        created_at=end,  # the same window and rows give the same report (and id) when a task is retried
    )
    report = rep.render_json(result, context)
    staging.write_json(report, REPORT_FILE)
    log.info("%s: %s (%s)", w.key, result.verdict, result.reason)
    return summary(report)


def summary(report: Mapping[str, Any], report_url: str | None = None) -> dict[str, Any]:
    """The flat summary of a report that tasks pass on, the ledger keeps and alerts show."""
    prediction = report.get("prediction") or None
    return {
        "report_id": report["report_id"],
        "verdict": report["verdict"],
        "reason": report["reason"],
        "rows": report["rows"],
        "drifted_features": list(report.get("drifted_features") or []),
        "drifted_share": report.get("drifted_share"),
        "importance_weighted_share": report.get("importance_weighted_share"),
        "multivariate": _multivariate(report.get("multivariate")),
        "segments": _segments(report.get("segments")),
        "alert": report.get("alert"),
        "retrain": report.get("retrain"),
        "rules": [
            {k: r.get(k) for k in ("rule", "decision", "message", "value", "threshold")}
            for r in report.get("rules") or []
        ],
        "prediction": {"psi": prediction["psi"], "drifted": prediction["drifted"]} if prediction else None,
        "performance": report.get("performance"),
        "performance_estimate": report.get("performance_estimate"),
        "model_name": report["model"]["name"],
        "model_version": report["model"]["version"],
        "variant": report["model"].get("variant"),
        "source": report["source"],
        "window_start": report["window"]["start"],
        "window_end": report["window"]["end"],
        "report_url": report_url,
    }


def _segments(found: Mapping[str, Any] | None) -> dict[str, Any]:
    """Per segment, the figures a summary keeps: rows, share vs training, estimated and realised ROC AUC."""
    kept: dict[str, Any] = {}
    for name, per in (found or {}).items():
        kept[name] = {
            segment: {
                "rows": entry.get("rows"),
                "share": entry.get("share"),
                "training_share": entry.get("training_share"),
                "estimated_roc_auc": entry.get("estimated_roc_auc"),
                "realised_roc_auc": (entry.get("labelled") or {}).get("roc_auc"),
                "labelled_rows": (entry.get("labelled") or {}).get("rows"),
                "test_roc_auc": (entry.get("test") or {}).get("roc_auc"),
            }
            for segment, entry in per.items()
        }
    return kept


def _multivariate(found: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The domain classifier's figures a summary keeps (its AUC, interval, rows and the features it relies on)."""
    if not found:
        return None
    return {k: found.get(k) for k in ("roc_auc", "interval", "rows_window", "rows_reference", "features")}


def publish(settings: Settings, run_id: str) -> dict[str, Any]:
    """Publish the staged report (JSON + HTML) to the artifact store and log it to MLflow, once per report id."""
    report = settings.layout.staging(run_id).read_json(REPORT_FILE)
    storage = settings.layout.root
    reports = settings.layout.reports()
    parts = rep.report_parts(report)
    if reports.is_published(*parts):
        location = rep.ReportLocation(
            folder=reports.path(*parts),
            json_url=reports.url(*parts, rep.JSON_FILE),
            html_url=reports.url(*parts, rep.HTML_FILE),
        )
        log.info("report %s was published by an earlier try at %s", report["report_id"], location.html_url)
    else:
        location = rep.publish_report(storage, report, rep.render_html(report))
    mlflow_run = rep.find_logged(settings, report["report_id"]) or rep.log_to_mlflow(settings, report, location)
    log.info("drift report: %s (MLflow run %s)", location.html_url, mlflow_run)
    return {
        **summary(report, location.html_url),
        "report_json_url": location.json_url,
        "mlflow_run_id": mlflow_run,
    }


@dataclass(frozen=True)
class RetrainTarget:
    """The DAG a drift verdict starts, as the drift task saw it in Airflow; ``run_exists``: this verdict's own retrain
    run is already there (an earlier try triggered it, then failed before recording it)."""

    dag_id: str
    deployed: bool
    active_runs: int
    run_exists: bool = False


def retrain_run_id(window: Mapping[str, Any]) -> str:
    """The retrain run id a drift verdict on ``window`` starts: derived from its ledger key alone."""
    return run_id_for(Window(**window).key, RETRAIN_RUN_PREFIX)


def decide(
    settings: Settings, window: Mapping[str, Any], published: Mapping[str, Any], actor: str, target: RetrainTarget
) -> dict[str, Any]:
    """Record the verdict in the ledger and decide what it starts.

    Returns:
        ``{"key", "id", "verdict", "alert", "retrain_run_id", "retrain_conf", "outcome", "detail"}``;
        ``retrain_run_id`` is set when a retrain should be triggered (its outcome is then recorded by
        ``record_retrain`` after the trigger), otherwise the outcome is recorded here.
    """
    w = Window(**window)
    book = ledger(settings)
    verdict = published["verdict"]
    payload = {
        "source": w.source,
        "variant": w.variant,
        "window": {"start": w.start, "end": w.end},
        "verdict": verdict,
        "reason": published["reason"],
        "rows": published["rows"],
        "labelled_rows": w.labelled_rows,
        "drifted_features": published["drifted_features"],
        "drifted_share": published["drifted_share"],
        "importance_weighted_share": published.get("importance_weighted_share"),
        "multivariate": published.get("multivariate"),
        "segments": published.get("segments") or {},
        "alert": published.get("alert", verdict == "drift"),
        "retrain": published.get("retrain", verdict == "drift"),
        "rules": published.get("rules") or [],
        "prediction": published["prediction"],
        "performance": published["performance"],
        "performance_estimate": published.get("performance_estimate"),
        "report_id": published["report_id"],
        "report_url": published["report_url"],
        "mlflow_run_id": published["mlflow_run_id"],
    }
    row = book.record(Kind.DRIFT_VERDICT, w.key, w.subject, payload, actor)
    decision: dict[str, Any] = {
        "key": row.key,
        "id": row.id,
        "verdict": verdict,
        "alert": verdict in ("drift", "alert"),
        "retrain_run_id": None,
        "retrain_conf": None,
    }
    if row.outcome is not None:  # decided by an earlier try of this task: act on what it decided, nothing new
        retrain = row.outcome == Resolution.RETRAIN_STARTED
        return {
            **decision,
            "outcome": row.outcome,
            "detail": row.outcome_detail,
            "retrain_run_id": row.outcome_detail if retrain else None,
            "retrain_conf": _retrain_conf(row.key, row.id, w, published) if retrain else None,
        }
    outcome, detail = _resolution(settings, w, verdict, target)
    if outcome is None:
        run_id = run_id_for(row.key, RETRAIN_RUN_PREFIX)
        return {
            **decision,
            "outcome": Resolution.RETRAIN_STARTED.value,
            "detail": run_id,
            "retrain_run_id": run_id,
            "retrain_conf": _retrain_conf(row.key, row.id, w, published),
        }
    book.set_outcome(row.key, outcome, detail)
    log.info("%s: %s -> %s (%s)", row.key, verdict, outcome, detail)
    return {**decision, "outcome": outcome.value, "detail": detail}


def _resolution(
    settings: Settings, w: Window, verdict: str, target: RetrainTarget
) -> tuple[Resolution | None, str | None]:
    """What a verdict comes to; (None, None) means: trigger the retrain."""
    if verdict == "insufficient_data":
        return Resolution.NO_VERDICT, "too few rows for a verdict: the window stays open"
    if verdict == "no_drift":
        return Resolution.NO_ACTION, None
    if verdict == "alert":
        return Resolution.ALERTED, "alert rules only: a person should look; no retrain rule fired"
    if w.source != PREDICTION_LOG:
        return Resolution.ALERTED, "drift in a published dataset: the training hand-off trains on it"
    if target.run_exists:
        return None, None  # started by an earlier try: record it, trigger nothing new
    if not target.deployed:
        return Resolution.RETRAIN_SKIPPED, f"no retrain DAG deployed ({target.dag_id!r} is not in Airflow)"
    if target.active_runs:
        running = f"{target.active_runs} active run(s) of {target.dag_id}"
        return Resolution.RETRAIN_SKIPPED, f"a retrain is already running ({running})"
    cooldown = timedelta(hours=settings.monitoring.cooldown_hours)
    since = datetime.now(UTC) - cooldown
    recent = [
        r
        for r in ledger(settings).rows(kind=Kind.DRIFT_VERDICT, subject=None)
        if r.outcome == Resolution.RETRAIN_STARTED and r.outcome_at is not None and r.outcome_at >= since
    ]
    if recent and cooldown:
        last = max(recent, key=lambda r: r.outcome_at)
        return Resolution.RETRAIN_SKIPPED, (
            f"cool-down: retrain {last.outcome_detail} was started {last.outcome_at.isoformat()}, less than "
            f"{settings.monitoring.cooldown_hours} h ago"
        )
    return None, None


def _retrain_conf(key: str, row_id: int, w: Window, published: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "verdict_key": key,
        "verdict_id": row_id,
        "model_version": w.model_version,
        "window_start": w.start,
        "window_end": w.end,
        "report_url": published.get("report_url"),
    }


def record_retrain(settings: Settings, decision: Mapping[str, Any]) -> dict[str, Any]:
    """After the trigger: the verdict's outcome is the retrain run (a no-op when nothing was triggered)."""
    if not decision.get("retrain_run_id"):
        return dict(decision)
    row = ledger(settings).set_outcome(decision["key"], Resolution.RETRAIN_STARTED, decision["retrain_run_id"])
    log.info("%s: retrain run %s started", row.key, decision["retrain_run_id"])
    return {**decision, "outcome": row.outcome, "detail": row.outcome_detail}


def alert(
    settings: Settings, published: Mapping[str, Any], decision: Mapping[str, Any], context: Any = None
) -> list[str]:
    """Always a log line; on drift, the Airflow notifier sends the webhook and e-mail whose Connections exist.

    Returns:
        The channels the alert went to (``log``, ``webhook:<conn id>``, ``email:<conn id>``) on drift; empty
        otherwise (the log line above is all a verdict without drift gets).
    """
    from airloop.monitoring.alerts import alert_message

    message = alert_message(published)
    log.info("drift verdict %s: %s - %s (ledger %s)", decision["verdict"], message.title, message.text, decision["key"])
    if not decision.get("alert"):
        return []
    from airloop.monitoring.notifier import DriftAlertNotifier

    cfg = settings.monitoring
    notifier = DriftAlertNotifier(
        report=published,
        webhook_conn_id=cfg.webhook_conn_id,
        email_conn_id=cfg.email_conn_id,
        email_to=list(cfg.email_to),
    )
    notifier.notify(context or {})
    return list(notifier.sent)
