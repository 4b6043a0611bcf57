"""What the model monitor page shows, gathered from the owners of each contract and computed by none of this module.

``models_overview`` lists the models (every valid spec of ``settings.catalog`` with its champion, and every broken
spec file with its error); ``monitor_state`` is one model's view, read through settings bound to that model
(``get_settings(name)``), so each part below is that model's alone: its registered model, its ledger rows, its reports.

- the aliases and the live experiment: ``airloop.experiments.live.current`` (one registry call);
- each aliased version: its ``VersionRecord`` (dataset, gate decision, test score), its training run's ``test_*``
  metrics and MLflow UI link (``airloop.registry.client.ui_link``), and its last history row (``Tag.HISTORY_ID``);
- the A/B evaluation so far: the newest ``evaluation`` row of the ledger, as ``airloop.experiments.evaluation`` wrote
  it;
- drift: the newest ``drift_verdict`` rows, as ``airloop.monitoring.job`` wrote them (with the label-free estimate of
  the ROC AUC beside the realised one once outcomes arrive), and where the newest one's HTML report is below the
  runtime root's reports (``RuntimeLayout.reports``), which the monitor serves to the browser (``report_path``,
  ``report_page``: a ``file://`` or ``s3://`` URL is no link a browser opens from an http page);
- the decision history: ``airloop.history.rows`` with ``history.summary``.

Reports are addressed below the runtime root's reports folder of every model (``<model>/v<version>/<report>``, as
``airloop.monitoring.report.publish_report`` writes them), so a report's link names its model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airloop import history
from airloop.jsonable import plain
from airloop.ledger import Decision, Kind
from airloop.settings import Settings

if TYPE_CHECKING:
    from airloop.storage import Storage

HISTORY_LIMIT = 500
DRIFT_POINTS = 48
TOP_FEATURES = 5
TOP_IMPORTANCE = 8  # features of each version's global importance shown
MAX_RULES = 12  # rules shown per verdict (there are fewer than that kinds of rule, each fires once)
TEST_METRIC_PREFIX = "test_"  # how the training pipeline names its held-out metrics on the training run


def monitor_state(
    settings: Settings, history_limit: int = HISTORY_LIMIT, drift_points: int = DRIFT_POINTS
) -> dict[str, Any]:
    """The JSON document the model monitor page shows (plain JSON: NaN and infinities as None)."""
    from airloop.experiments.live import current, running
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias

    client = connect(settings)
    found, live = current(settings)
    decisions = history.rows(settings, limit=history_limit)
    by_id = {row.id: row for row in decisions}
    evaluations = history.rows(settings, kind=Kind.EVALUATION, limit=1)
    return plain(
        {
            "name": settings.model,
            "model": settings.mlflow.model_name,
            "target": _target(settings),
            "mlflow_ui": settings.mlflow.ui_url,
            "require_approval": settings.loop.require_approval,
            "versions": {
                alias.value: _version(settings, client, found.get(alias.value), by_id) for alias in tuple(Alias)
            },
            "routing": {**live.to_dict(), "running": running(found, live)},
            "evaluation": _evaluation(evaluations[0], live.experiment) if evaluations else None,
            "drift": _drift(settings, history.rows(settings, kind=Kind.DRIFT_VERDICT, limit=drift_points)),
            "history": [_decision(row) for row in decisions],
        }
    )


def models_overview(settings: Settings, user: str | None = None) -> dict[str, Any]:
    """The models the monitor can show: per valid spec its name, description, owner, team, tags and champion version
    (None before one is registered, with the registry's error if it could not be read), and the broken spec files
    with their errors. One registry call per model. With ``user``: only the models that user may see
    (``airloop.security.may_see``: another team's are hidden when ``security.outside_team_role`` is null)."""
    from mlflow.exceptions import MlflowException

    from airloop import security
    from airloop.registry.aliases import model_state
    from airloop.registry.client import connect
    from airloop.registry.contract import Alias
    from airloop.spec.loader import FOLDER_SPEC

    found = settings.catalog
    client = connect(settings)  # one tracking store and registry for every model
    models = []
    for name, spec in sorted(found.specs.items()):
        if user is not None and not security.may_see(settings.for_model(name), user):
            continue
        entry: dict[str, Any] = {
            "name": name,
            "description": spec.description,
            "owner": spec.owner,
            "team": spec.team,
            "tags": list(spec.tags),
            "default": name == settings.models.default,
            Alias.CHAMPION.value: None,
        }
        try:
            aliases, _ = model_state(client, spec.registered_model)
        except MlflowException as error:  # one unreadable model must not hide the others
            entry["error"] = str(error)[:200]
        else:
            entry[Alias.CHAMPION.value] = aliases.get(Alias.CHAMPION)
        models.append(entry)
    broken = [
        {"file": str(path), "name": path.parent.name if path.name == FOLDER_SPEC else path.stem, "error": str(error)}
        for path, error in sorted(found.errors.items())
    ]
    return plain({"default": settings.models.default, "folder": str(found.folder), "models": models, "broken": broken})


def _target(settings: Settings) -> dict[str, Any] | None:
    """What the model predicts and how long its outcomes take to arrive (None without a spec)."""
    spec = settings.catalog.specs.get(settings.model or "")
    if spec is None:
        return None
    target = spec.data.target
    return {"name": target.name, "description": target.description, "delay_days": target.delay_days}


def _version(settings: Settings, client: Any, version: str | None, by_id: dict[int, Decision]) -> dict | None:
    """One aliased version: its record, training run (with the MLflow UI link) and its last history row."""
    if version is None:
        return None
    from mlflow.exceptions import MlflowException

    from airloop.groups import from_metrics
    from airloop.registry.client import ui_link
    from airloop.registry.contract import Tag, VersionRecord
    from airloop.training.evaluate import importance_from_metrics

    model_version = client.get_model_version(settings.mlflow.model_name, version)
    record = VersionRecord.from_tags(model_version.tags)
    run_id = record.training_run_id or model_version.run_id
    run: dict[str, Any] | None = None
    if run_id:
        try:
            found = client.get_run(run_id)
        except MlflowException as error:  # a deleted run must not hide the rest of the page
            run = {"id": run_id, "url": None, "error": str(error)[:200]}
        else:
            run = {
                "id": run_id,
                "url": ui_link(settings.mlflow.ui_url, found.info.experiment_id, run_id),
                "test_metrics": {
                    k.removeprefix(TEST_METRIC_PREFIX): v
                    for k, v in sorted(found.data.metrics.items())
                    if k.startswith(TEST_METRIC_PREFIX)
                },
                # Its test-set figures per group of the spec's evaluation.groups (airloop.groups).
                "groups": from_metrics(found.data.metrics),
                # Its global importance: the features whose permutation hurt its test ROC AUC most.
                "importance": importance_from_metrics(found.data.metrics, TOP_IMPORTANCE),
            }
    last = by_id.get(int(model_version.tags[Tag.HISTORY_ID])) if model_version.tags.get(Tag.HISTORY_ID) else None
    return {
        "version": str(model_version.version),
        "created": model_version.creation_timestamp,
        "dataset_version": record.dataset_version,
        "gate": {
            "decision": record.decision,
            "reason": record.decision_reason,
            "by": record.decided_by,
            "at": record.decided_at,
            "metric": record.metric,
            "score": record.candidate_score,
            "champion_score": record.champion_score,
        },
        "run": run,
        "last_decision": _decision(last) if last else None,
    }


def _evaluation(row: Decision, experiment: str) -> dict[str, Any]:
    """The newest look at the experiment, as the evaluation recorded it."""
    payload = row.payload
    sequential = payload.get("sequential") or {}
    return {
        "id": row.id,
        "decided_at": row.decided_at.isoformat(),
        "experiment": payload.get("experiment"),
        "current": payload.get("experiment") == experiment,
        "mode": payload.get("mode"),
        "metric": payload.get("metric"),
        "action": payload.get("action"),
        "reason": payload.get("reason"),
        "arms": payload.get("arms") or {},
        "estimate": sequential.get("estimate"),
        "interval": sequential.get("interval"),
        "p_value": sequential.get("p_value"),
        "rows_needed": payload.get("rows_needed"),
        "alpha": payload.get("alpha"),
        "min_effect": payload.get("min_effect"),
        "guardrails_failed": payload.get("guardrails_failed") or [],
        "worst_group": ((payload.get("groups") or {}).get("worst") or {}).get("text"),
        "paired": payload.get("paired"),
        "variance_reduction": payload.get("variance_reduction"),
        "srm": [c["sentence"] for c in (payload.get("srm") or {}).values() if c],
    }


def all_reports(settings: Settings) -> Storage:
    """The runtime root's reports folder of every model (``<model>/v<version>/<report>`` below it)."""
    return settings.layout.reports()


def report_path(settings: Settings, report_url: str | None) -> list[str] | None:
    """The folders below the runtime root's reports that hold the published drift report at ``report_url`` (the
    ``html_url`` its publication returned; the first folder is the model's), for ``report_page``; None for no URL or
    one outside these reports."""
    from airloop.monitoring.report import HTML_FILE

    prefix, suffix = all_reports(settings).url() + "/", "/" + HTML_FILE
    if not report_url or not report_url.startswith(prefix) or not report_url.endswith(suffix):
        return None
    parts = report_url[len(prefix) : -len(suffix)].split("/")
    return parts if all(parts) else None


def report_page(settings: Settings, parts: Sequence[str]) -> str | None:
    """The HTML page of the published drift report at ``parts`` (as ``report_path`` gives them), or None unless each
    part names a folder listed below the runtime root's reports and the last one a published report: a name the
    listing does not hold (``..``, a path, a file) never reaches the filesystem."""
    from airloop.monitoring.report import HTML_FILE

    reports = all_reports(settings)
    *folders, name = parts or [""]
    try:
        for depth, folder in enumerate(folders):
            if folder not in reports.listdir(*folders[:depth]):
                return None
        if name not in reports.published_dirs(*folders):
            return None
        return reports.read_text(*folders, name, HTML_FILE)
    except (FileNotFoundError, NotADirectoryError):  # a file where a folder was named; a report without its page
        return None


def _drift(settings: Settings, rows: list[Decision]) -> dict[str, Any]:
    """The newest drift verdict (top drifted features, label-free estimate, report link) and per run, oldest first,
    the drifted share and the estimated and realised ROC AUC."""
    latest = None
    if rows:
        payload = rows[0].payload
        latest = {
            "id": rows[0].id,
            "decided_at": rows[0].decided_at.isoformat(),
            "verdict": payload.get("verdict"),
            "reason": payload.get("reason"),
            "source": payload.get("source"),
            "variant": payload.get("variant"),
            "window": payload.get("window"),
            "rows": payload.get("rows"),
            "drifted_share": payload.get("drifted_share"),
            "importance_weighted_share": payload.get("importance_weighted_share"),
            "multivariate": payload.get("multivariate"),
            "segments": payload.get("segments") or {},
            "alert": payload.get("alert", payload.get("verdict") == "drift"),
            "retrain": payload.get("retrain", payload.get("verdict") == "drift"),
            "rules": [
                {k: r.get(k) for k in ("rule", "decision", "message")} for r in (payload.get("rules") or [])[:MAX_RULES]
            ],
            "drifted_features": list(payload.get("drifted_features") or [])[:TOP_FEATURES],
            "drifted_feature_count": len(payload.get("drifted_features") or []),
            "performance_estimate": payload.get("performance_estimate"),
            "performance": payload.get("performance"),
            "report_url": payload.get("report_url"),
            "report": report_path(settings, payload.get("report_url")),
            "outcome": rows[0].outcome,
            "outcome_detail": rows[0].outcome_detail,
        }
    series = [
        {
            "id": row.id,
            "at": ((row.payload.get("window") or {}).get("end")) or row.decided_at.isoformat(),
            "drifted_share": row.payload.get("drifted_share"),
            "importance_weighted_share": row.payload.get("importance_weighted_share"),
            "verdict": row.payload.get("verdict"),
            "source": row.payload.get("source"),
            "estimated_roc_auc": (row.payload.get("performance_estimate") or {}).get("estimated_roc_auc"),
            "realised_roc_auc": (row.payload.get("performance") or {}).get("roc_auc"),
        }
        for row in reversed(rows)
    ]
    return {"latest": latest, "series": series}


def _decision(row: Decision) -> dict[str, Any]:
    """One history row as the page lists it."""
    return {
        "id": row.id,
        "kind": row.kind,
        "subject": row.subject,
        "decided_at": row.decided_at.isoformat(),
        "decided_by": row.decided_by,
        "outcome": row.outcome,
        "outcome_detail": row.outcome_detail,
        "summary": history.summary(row),
    }
