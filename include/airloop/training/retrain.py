"""Retraining on drift: the training set by a policy, then the training stages of ``<model>_train`` (no copy),
then an experiment for the new challenger.

Policies (``loop.retrain_policy``, or the run's ``policy`` param):

- ``latest_plus_window`` (default): the latest dataset published by ``<model>_etl`` plus the labelled prediction
  log rows of the drifted window of the verdict that asked for the retrain (else of the last ``loop.window_days``):
  the records as served, with the outcomes fed back;
- ``sliding_window``: only those labelled rows;
- ``latest``: the latest published dataset as it is;
- ``all_history``: every version ``<model>_etl`` published plus every labelled logged row.

The set is published as a dataset version of its own (content-hashed, so a re-run publishes nothing new) whose
metadata names the policy, its parts and the verdict that asked for it; the training stages then treat it like any
published version: validation, split by patient, candidates, registration, gate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from airloop.data.records import missing_value, outcome_value
from airloop.data.store import dataset_store
from airloop.errors import FinalError
from airloop.ledger import Kind, ledger
from airloop.settings import Settings

log = logging.getLogger(__name__)

POLICIES = ("latest_plus_window", "sliding_window", "latest", "all_history")
RETRAIN_SOURCE = "retrain:"


class NotEnoughData(FinalError):
    """The policy's training set is empty or too small to train on."""


def _etl_versions(settings: Settings) -> list[str]:
    """Versions published by the model's ETL (not retrain sets), oldest first."""
    store = dataset_store(settings)
    return [v for v in store.versions() if not str(store.metadata(v).get("source", "")).startswith(RETRAIN_SOURCE)]


def labelled_log_rows(settings: Settings, start: datetime, end: datetime) -> pd.DataFrame:
    """Records the service scored in ``[start, end)`` whose outcome has been fed back, as published rows."""
    from airloop import predlog

    predictions = predlog.load_predictions(
        settings.layout.predictions(), start, end, columns=["request_id", "shadow", "record"]
    )
    spec = settings.spec
    columns, target = spec.data.raw_columns, spec.data.target
    if not len(predictions):
        return pd.DataFrame(columns=[*columns, target.name])
    predictions = predictions[~predictions["shadow"].astype(bool)]  # a shadow row repeats a served request
    feedback = predlog.load_feedback(settings.layout.feedback(), start, datetime.now(UTC))
    joined = predlog.join_outcomes(predictions, feedback, labelled_only=True)
    rows = predlog.raw_records(joined).reset_index(drop=True)
    for column in columns:
        if column not in rows.columns:
            rows[column] = missing_value(spec, column)
    outcome = joined["outcome"].astype("int64").to_numpy()
    rows[target.column] = [outcome_value(spec, o) for o in outcome]
    rows[target.name] = outcome
    return rows[[*columns, target.name]]


def _conform(rows: pd.DataFrame, like: pd.DataFrame | None) -> pd.DataFrame:
    """``rows`` with the published frame's dtypes, so the two concatenate into one typed frame."""
    if like is None:
        return rows
    out = rows.copy()
    for column, dtype in like.dtypes.items():
        if column in out.columns:
            try:
                out[column] = out[column].astype(dtype)
            except (TypeError, ValueError):
                out[column] = out[column].astype(str)
    return out


def _window(policy: str, conf: Mapping[str, Any], now: datetime, days: float) -> tuple[datetime, datetime]:
    """The logged rows a policy adds: all of them (all_history); the drifted window of the verdict that asked for
    the retrain (its conf), so the new model learns what changed; else the last ``days``."""
    if policy == "all_history":
        return datetime(1970, 1, 1, tzinfo=UTC), now
    if conf.get("window_start") and conf.get("window_end"):
        start = datetime.fromisoformat(str(conf["window_start"]))
        end = datetime.fromisoformat(str(conf["window_end"]))
        if start.tzinfo is None or end.tzinfo is None or start >= end:
            raise NotEnoughData(f"the verdict's window {conf['window_start']} .. {conf['window_end']} is not valid")
        return start, end
    return now - timedelta(days=days), now


def build(
    settings: Settings,
    run_id: str,
    policy: str | None = None,
    conf: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Assemble the training set by ``policy``, publish it as a dataset version; returns ``pipeline.load``'s dict
    plus the policy and its parts."""
    cfg = settings.loop
    policy = policy or cfg.retrain_policy
    if policy not in POLICIES:
        raise NotEnoughData(f"unknown retrain policy {policy!r}; choose one of {POLICIES}")
    conf = dict(conf or {})
    end = now or datetime.now(UTC)
    store = dataset_store(settings)
    published = _etl_versions(settings)
    parts: dict[str, Any] = {}
    frames = []
    if policy in ("latest_plus_window", "latest") and published:
        frames.append(store.load(published[-1]))
        parts["dataset_versions"] = [published[-1]]
    elif policy == "all_history" and published:
        frames.extend(store.load(v) for v in published)
        parts["dataset_versions"] = list(published)
    if policy in ("latest_plus_window", "sliding_window", "all_history"):
        start, end = _window(policy, conf, end, cfg.window_days)
        recent = _conform(labelled_log_rows(settings, start, end), frames[0] if frames else None)
        frames.append(recent)
        parts["labelled_log_rows"] = len(recent)
        parts["window"] = {"start": start.isoformat(), "end": end.isoformat()}
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(frame):
        # A record both published and served counts once: the served one, with its fed-back outcome.
        key = settings.spec.data.key
        frame = frame.drop_duplicates(subset=[key], keep="last")
        # One order whatever order the log's parts were read in: the same rows give the same version and split.
        frame = frame.sort_values(key, kind="stable").reset_index(drop=True)
    if len(frame) < settings.quality.min_rows:
        raise NotEnoughData(
            f"retrain policy {policy!r} gives {len(frame)} rows (parts {parts}), fewer than quality.min_rows"
            f" {settings.quality.min_rows}: publish data with {settings.spec.dag_id('etl')} or wait for more labelled"
            " predictions"
        )
    metadata = {
        "dataset": settings.data.dataset_name,
        "source": f"{RETRAIN_SOURCE}{policy}",
        "airflow_run_id": run_id,
        "retrain": {"policy": policy, "parts": parts, "verdict_key": conf.get("verdict_key")},
        "validation": [],
    }
    result = store.publish(frame, metadata)
    log.info("retrain set %s: %d rows by %s (%s)", result.version, result.rows, policy, parts)
    return {
        "version": result.version,
        "rows": result.rows,
        "source": metadata["source"],
        "url": result.url,
        "policy": policy,
        "parts": parts,
    }


def start_experiment(
    settings: Settings, registered: Mapping[str, Any], dataset: Mapping[str, Any], conf: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """After registration: a challenger starts an experiment (the configured split or shadow, a new experiment id);
    the retrain's own ledger row says what came of it, linked to the verdict that asked for it."""
    from airloop.experiments import lifecycle
    from airloop.registry.contract import Outcome

    cfg = settings.loop
    conf = dict(conf or {})
    cause = conf.get("verdict_key") or f"run:{actor}"
    key = f"retrain:{cause}"
    version, decision = str(registered["version"]), str(registered["decision"])
    details = {
        "verdict_key": conf.get("verdict_key"),
        "verdict_id": conf.get("verdict_id"),
        "dataset_version": dataset["version"],
        "policy": dataset.get("policy"),
        "parts": dataset.get("parts"),
        "version": version,
        "decision": decision,
        "reason": registered.get("reason"),
    }
    book = ledger(settings)
    row = book.record(Kind.RETRAIN, key, settings.mlflow.model_name, details, actor)
    experiment = None
    if decision == Outcome.CHALLENGER:
        experiment_key = f"experiment:{cause}:v{version}"
        started = book.get(experiment_key)
        if started is None:  # not on a re-run: the experiment may have ended since, and must not start again
            split = dict(cfg.split)
            experiment = lifecycle.start(settings, version, actor, split, cfg.mode, details, key=experiment_key)
            name = experiment["experiment"]["experiment"]
        else:
            name = started.payload.get("experiment")
        outcome, detail = "experiment_started", f"v{version} against the champion: {name}"
    elif decision == Outcome.CHAMPION:
        outcome, detail = "first_champion", f"v{version} became champion (there was none)"
    elif decision == Outcome.HELD:
        outcome, detail = "held_for_running_experiment", f"v{version}: {registered.get('reason')}"
    else:
        outcome, detail = "gate_rejected", f"v{version}: {registered.get('reason')}"
    if row.outcome is None:
        book.set_outcome(key, outcome, detail)
    log.info("retrain %s: %s (%s)", key, outcome, detail)
    return {"key": key, "outcome": outcome, "detail": detail, "experiment": experiment}
