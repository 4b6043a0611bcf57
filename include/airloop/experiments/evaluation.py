"""One look at the live experiment: the prediction log joined with the fed-back outcomes, per variant, judged by the
always-valid sequential test of ``airloop.experiments.sequential``.

``evaluate`` reads the rows of the current experiment (its id is on every logged prediction) since it started, keeps
those whose outcome has arrived, and computes per variant the labelled count, ROC AUC, log loss, Brier and positive
rate with intervals. In A/B mode the arms are disjoint requests (an unpaired difference); in shadow mode both variants
scored the same requests (a paired difference on those); in A/B mode with ``loop.score_both`` the variant that did not
answer a request scored it too, unserved, and the difference is paired on every labelled request as well (the arms'
figures stay those of the requests each answered). The decision:

- **promote** when the challenger is better by at least ``loop.min_effect`` on ``loop.metric`` with confidence
  ``1 - loop.alpha``, however often the DAG has looked;
- **reject** when it is significantly worse, or when a guardrail fails (``guardrails``): its calibration gap
  (|mean probability - observed rate|) exceeds ``loop.max_calibration_gap`` once it has ``loop.min_rows`` labelled
  rows; its error rate (failed model calls in the scoring-error log) exceeds the champion's by more than
  ``loop.max_error_rate``; or its p95 scoring latency is over ``loop.max_latency_ratio`` times the champion's (and
  over it by ``loop.min_latency_gap_ms``). The operational guardrails need ``loop.min_rows`` scoring attempts, not
  labels: a broken or slow challenger is stopped before its outcomes arrive;
- **reject** as well when the challenger is worse than the champion for a group of the spec's ``evaluation.groups``
  (``airloop.groups``: per group, the difference's whole interval below ``-evaluation.tolerance``, paired when both
  variants scored the same requests); the reason names the group and the figures. Each look reports every group's
  figures per arm (``groups``) and the worst group's gap;
- **continue** otherwise, saying how many more labelled rows it needs (also with no labelled rows at all).

Each look is one ledger row (kind ``evaluation``) with every number; promote and reject act through
``airloop.experiments.lifecycle``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from airloop.experiments import sequential
from airloop.experiments.live import current, running
from airloop.ledger import Kind, ledger
from airloop.registry.contract import Alias
from airloop.settings import Settings

log = logging.getLogger(__name__)

NO_EXPERIMENT = "none"


def _started(settings: Settings, experiment: str, challenger: str) -> datetime:
    """When the experiment started: its history row, else the challenger version's registration."""
    for row in ledger(settings).rows(kind=Kind.EXPERIMENT_STARTED):
        if row.payload.get("experiment") == experiment:
            return row.decided_at
    from airloop.registry.client import connect

    version = connect(settings).get_model_version(settings.mlflow.model_name, challenger)
    return datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)


PREDICTION_COLUMNS = [
    "request_id",
    "variant",
    "model_version",
    "entity_id",
    "probability",
    "predicted_class",
    "shadow",
    "latency_ms",
]
HALT = "halt"  # a sample ratio mismatch: neither promote nor reject until a person looks


def scored_rows(settings: Settings, experiment: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Every prediction of ``experiment`` made in ``[start, end)``, labelled or not."""
    from airloop import predlog

    # The raw records only when the spec judges per group: they are most of a prediction's bytes.
    columns = PREDICTION_COLUMNS + ([predlog.RECORD] if settings.spec.evaluation.groups else [])
    storage = settings.layout.predictions()
    return predlog.load_predictions(storage, start, end, experiment_id=experiment, columns=columns)


def with_outcomes(settings: Settings, predictions: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """The rows of ``predictions`` whose outcome has arrived (by ``end``), with it."""
    from airloop import predlog

    if not len(predictions):
        return predictions.assign(outcome=pd.Series(dtype="Int8"))
    feedback = predlog.load_feedback(settings.layout.feedback(), start, end)
    return predlog.join_outcomes(predictions, feedback, labelled_only=True)


def labelled_rows(settings: Settings, experiment: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Predictions of ``experiment`` made in ``[start, end)`` whose outcome has arrived (by ``end``)."""
    return with_outcomes(settings, scored_rows(settings, experiment, start, end), start, end)


def failed_calls(settings: Settings, experiment: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The failed model calls of ``experiment`` in ``[start, end)`` (scoring-error log)."""
    from airloop import predlog

    return predlog.load_errors(settings.layout.errors(), start, end, experiment_id=experiment)


def operations(scored: pd.DataFrame, errors: pd.DataFrame, versions: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per variant (alias -> version): records scored, records that failed, error rate and p95 latency (pure)."""
    found = {}
    for alias, version in versions.items():
        mine = scored[scored["model_version"] == version]
        failed = int(errors.loc[errors["model_version"] == version, "records"].sum()) if len(errors) else 0
        attempts = len(mine) + failed
        latency = mine["latency_ms"].dropna() if "latency_ms" in mine else pd.Series(dtype=float)
        found[alias] = {
            "scored": len(mine),
            "failed": failed,
            "error_rate": failed / attempts if attempts else None,
            "latency_p95_ms": float(np.percentile(latency, 95)) if len(latency) else None,
            "latency_rows": len(latency),
        }
    return found


def guardrails(settings: Settings, arms: dict[str, Any], ops: dict[str, dict[str, Any]]) -> list[str]:
    """The guardrails the challenger fails, each as a sentence (empty: none). ``arms``: alias -> ``ArmStats``."""
    cfg = settings.loop
    failures = []
    mine = arms[Alias.CHALLENGER.value]
    if mine.labelled >= cfg.min_rows and mine.mean_probability is not None and mine.positive_rate is not None:
        gap = abs(mine.mean_probability - mine.positive_rate)
        if gap > cfg.max_calibration_gap:
            failures.append(
                f"calibration gap |{mine.mean_probability:.3f} - {mine.positive_rate:.3f}| = {gap:.3f} exceeds"
                f" {cfg.max_calibration_gap}"
            )
    challenger, champion = ops.get(Alias.CHALLENGER.value), ops.get(Alias.CHAMPION.value)
    if not challenger or not champion:
        return failures
    if challenger["scored"] + challenger["failed"] >= cfg.min_rows and challenger["error_rate"] is not None:
        baseline = champion["error_rate"] or 0.0
        if challenger["error_rate"] - baseline > cfg.max_error_rate:
            failures.append(
                f"error rate {challenger['error_rate']:.2%} ({challenger['failed']} of"
                f" {challenger['scored'] + challenger['failed']} records failed) vs the champion's {baseline:.2%}:"
                f" more than {cfg.max_error_rate:.2%} higher"
            )
    slow, fast = challenger["latency_p95_ms"], champion["latency_p95_ms"]
    enough = challenger["latency_rows"] >= cfg.min_rows and champion["latency_rows"] >= cfg.min_rows
    if enough and slow and fast and slow > cfg.max_latency_ratio * fast and slow - fast > cfg.min_latency_gap_ms:
        failures.append(
            f"p95 latency {slow:.1f} ms vs the champion's {fast:.1f} ms: over {cfg.max_latency_ratio}x and"
            f" {cfg.min_latency_gap_ms} ms slower"
        )
    return failures


def srm_checks(scored: pd.DataFrame, labelled: pd.DataFrame, weights: dict[str, float]) -> dict[str, Any]:
    """The sample-ratio checks of an A/B look: the answering traffic and the labelled rows, each in randomisation
    units per variant against the configured weights (``airloop.experiments.srm``)."""
    from airloop.experiments import srm

    found = {}
    for name, rows, unit in ((TRAFFIC, scored, "routed entities"), (LABELLED, labelled, "labelled entities")):
        answering = rows[~rows["shadow"].astype(bool)] if len(rows) else rows
        result = srm.check(srm.units(answering), weights, unit)
        found[name] = None if result is None else result.to_dict() | {"sentence": result.sentence()}
    return found


TRAFFIC, LABELLED = "traffic", "labelled"


def look(
    settings: Settings,
    rows: pd.DataFrame,
    champion: str,
    challenger: str,
    paired: bool,
    ops: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The statistics and the decision of one look on the labelled rows of both variants, and the operational
    figures ``ops`` (``operations``) when given (pure: no I/O)."""
    cfg = settings.loop
    by_version = {v: rows[rows["model_version"] == v] for v in (champion, challenger)}
    # A/B arms are the requests each variant answered; in shadow mode every score is an arm's (the challenger's are
    # all unserved). In A/B mode with ``loop.score_both`` the unserved scores pair the two variants on each request.
    answered = rows[~rows["shadow"].astype(bool)] if "shadow" in rows and not paired else rows
    arms = {}
    for alias, version in ((Alias.CHAMPION.value, champion), (Alias.CHALLENGER.value, challenger)):
        arm = answered[answered["model_version"] == version]
        arms[alias] = sequential.arm_stats(arm["outcome"].to_numpy(dtype=float), arm["probability"].to_numpy(float))
    both = by_version[champion].merge(by_version[challenger], on="request_id", suffixes=("_a", "_b"))
    pairs = sequential.paired_difference(
        cfg.metric,
        both["outcome_a"].to_numpy(dtype=float),
        both["probability_a"].to_numpy(dtype=float),
        both["probability_b"].to_numpy(dtype=float),
    )
    a = answered[answered["model_version"] == champion]
    b = answered[answered["model_version"] == challenger]
    unpaired = sequential.difference(
        cfg.metric,
        a["outcome"].to_numpy(dtype=float),
        a["probability"].to_numpy(dtype=float),
        b["outcome"].to_numpy(dtype=float),
        b["probability"].to_numpy(dtype=float),
    )
    # Declared before looking, so the test stays valid: the paired difference whenever the same requests were scored
    # by both (shadow mode, or A/B with score_both on at least min_rows labelled requests); else the arms unpaired.
    use_pairs = paired or (pairs is not None and len(both) >= cfg.min_rows)
    diff = pairs if use_pairs else unpaired
    reduction = None
    if pairs is not None and unpaired is not None and unpaired.variance > 0 and not paired:
        # Labelled rows at equal power scale with the variance of the difference: the share pairing saves.
        reduction = {
            "variance_unpaired": unpaired.variance,
            "variance_paired": pairs.variance,
            "rows_saved_at_equal_power": max(0.0, 1.0 - pairs.variance / unpaired.variance),
        }
    decision = sequential.decide(diff, min_effect=cfg.min_effect, alpha=cfg.alpha, min_rows=cfg.min_rows)
    action, reason = decision.action, decision.reason
    by_group = group_look(settings, answered, both, champion, challenger, use_pairs)
    failed = guardrails(settings, arms, ops or {}) + by_group.pop("failures", [])
    if failed:
        action = "reject"
        reason = "guardrail: the challenger's " + "; ".join(failed)
    return {
        "action": action,
        "reason": reason,
        "metric": cfg.metric,
        "outcome_sources": outcome_sources(
            answered, {Alias.CHAMPION.value: champion, Alias.CHALLENGER.value: challenger}
        ),
        "paired": use_pairs,
        "variance_reduction": reduction,
        "arms": {k: v.to_dict() for k, v in arms.items()},
        "operations": ops or {},
        "guardrails_failed": failed,
        "groups": by_group,
        "difference": None if diff is None else {"estimate": diff.estimate, "variance": diff.variance},
        "sequential": decision.to_dict(),
        "rows_needed": decision.rows_needed if action == "continue" else None,
        "alpha": cfg.alpha,
        "min_effect": cfg.min_effect,
    }


def group_look(
    settings: Settings, answered: pd.DataFrame, both: pd.DataFrame, champion: str, challenger: str, paired: bool
) -> dict[str, Any]:
    """Per arm and per group of the spec's ``evaluation.groups``: the figures of ``airloop.groups``, the challenger's
    gap to the champion per group (paired on ``both`` when the look is paired), the worst group, and ``failures``:
    the groups the challenger is worse for, as guardrail sentences (pure; empty without groups or raw records)."""
    from airloop import groups
    from airloop.predlog import raw_records

    spec = settings.spec
    cfg = spec.evaluation
    if not cfg.groups or not len(answered):
        return {}
    markers = spec.data.missing_markers
    arms: dict[str, tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]] = {}
    figures = {}
    for alias, version in ((Alias.CHAMPION.value, champion), (Alias.CHALLENGER.value, challenger)):
        arm = answered[answered["model_version"] == version]
        labels = groups.labels(cfg, raw_records(arm), markers)
        if not labels:
            return {}
        y, p = arm["outcome"].to_numpy(dtype=float), arm["probability"].to_numpy(dtype=float)
        flagged = arm["predicted_class"].to_numpy(dtype=float) == 1 if "predicted_class" in arm else None
        arms[alias] = (labels, y, p)
        figures[alias] = groups.figures(labels, y, p, flagged, cfg.level)
    if paired and len(both):
        records = both[[c for c in both.columns if c.startswith("record.") and c.endswith("_a")]]
        labels = groups.labels(cfg, raw_records(records.rename(columns=lambda c: c[:-2])), markers)
        gaps = groups.compare(
            cfg,
            labels,
            both["outcome_a"].to_numpy(dtype=float),
            both["probability_a"].to_numpy(dtype=float),
            both["probability_b"].to_numpy(dtype=float),
        )
    else:
        gaps = groups.compare_arms(cfg, arms[Alias.CHAMPION.value], arms[Alias.CHALLENGER.value])
    worst = groups.worst(gaps)
    return {
        "metric": cfg.metric,
        "tolerance": cfg.tolerance,
        "min_rows": cfg.min_rows,
        "paired": bool(paired and len(both)),
        "arms": figures,
        "gaps": [g.to_dict() for g in gaps],
        "worst": worst.to_dict() if worst else None,
        "failures": [f"group gap: {g.sentence()}" for g in groups.refusals(gaps)],
    }


def outcome_sources(rows: pd.DataFrame, versions: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per arm (alias -> version), how many of its labelled rows got their outcome from which source: the serving key
    that sent it ("feedback_key", "api_key", "open"), or "unknown" for outcomes logged before sources were (pure)."""
    found: dict[str, dict[str, int]] = {}
    for alias, version in versions.items():
        mine = rows[rows["model_version"] == version]
        sources = mine["outcome_source"] if "outcome_source" in mine else pd.Series("unknown", index=mine.index)
        counts = sources.astype(object).where(sources.notna(), "unknown").value_counts()
        found[alias] = {str(k): int(v) for k, v in sorted(counts.items())}
    return found


def evaluate(settings: Settings, actor: str, now: datetime | None = None, key: str | None = None) -> dict[str, Any]:
    """Look at the current experiment once and record the look; ``action`` is ``promote``, ``reject``,
    ``continue`` or ``none`` (no experiment running)."""
    end = now or datetime.now(UTC)
    found, live = current(settings)
    champion, challenger = found.get(Alias.CHAMPION.value), found.get(Alias.CHALLENGER.value)
    if champion is None or running(found, live) is None:
        reason = f"no experiment running (aliases {found}, routing {live.to_dict()})"
        log.info(reason)
        return {"action": NO_EXPERIMENT, "reason": reason, "experiment": live.experiment}
    start = _started(settings, live.experiment, challenger)
    scored = scored_rows(settings, live.experiment, start, end)
    versions = {Alias.CHAMPION.value: champion, Alias.CHALLENGER.value: challenger}
    ops = operations(scored, failed_calls(settings, live.experiment, start, end), versions)
    rows = with_outcomes(settings, scored, start, end)
    result = look(settings, rows, champion, challenger, paired=live.mode == "shadow", ops=ops)
    checks = srm_checks(scored, rows, dict(live.weights)) if live.mode == "ab" else {}
    mismatched = [c for c in checks.values() if c and c["mismatch"]]
    result["srm"] = checks
    if mismatched:
        # Every other number of this experiment is suspect: no promotion, no rejection, a person should look.
        result["action"] = HALT
        result["reason"] = "halted: " + "; ".join(c["sentence"] for c in mismatched)
        result["rows_needed"] = None
    result.update(
        experiment=live.experiment,
        mode=live.mode,
        champion_version=champion,
        challenger_version=challenger,
        window={"start": start.isoformat(), "end": end.isoformat()},
    )
    key = key or f"evaluation:{live.experiment}:{end.isoformat()}"
    row = ledger(settings).record(Kind.EVALUATION, key, settings.mlflow.model_name, result, actor)
    if row.outcome is None:
        ledger(settings).set_outcome(key, result["action"], result["reason"][:2000])
    log.info("evaluation of %s: %s (%s)", live.experiment, result["action"], result["reason"])
    if mismatched and row.outcome is None:
        _alert_srm(settings, result)
    return {**row.payload, "key": key, "evaluation_id": row.id}


def _alert_srm(settings: Settings, result: dict[str, Any]) -> None:
    """A sample ratio mismatch goes to the same channels as drift alerts (the log always)."""
    from airloop.monitoring.alerts import Alert, AlertDeliveryFailed, send

    cfg = settings.monitoring
    alert = Alert(
        title=f"Sample ratio mismatch: {settings.mlflow.model_name} experiment {result.get('experiment')}",
        text=result["reason"],
        severity="warning",
        fields={"model": settings.mlflow.model_name, "verdict": HALT},
    )
    try:
        send(alert, webhook_conn_id=cfg.webhook_conn_id, email_conn_id=cfg.email_conn_id, email_to=list(cfg.email_to))
    except AlertDeliveryFailed as err:  # the halt is recorded either way; a channel that failed is said so
        log.warning("SRM alert not delivered: %s", err)
    except Exception as err:  # outside an Airflow task (the CLI, a test) connections cannot be read: the log only
        log.warning("SRM alert sent to the log only (%s: connections unreadable here)", type(err).__name__)


def evidence(result: dict[str, Any]) -> str:
    """The evaluation as Markdown, for the person asked to approve a promotion."""
    arms = result.get("arms") or {}
    lines = [
        f"**{result.get('action', '?')}**: {result.get('reason', '')}",
        "",
        f"Experiment `{result.get('experiment')}` ({result.get('mode')}): champion v{result.get('champion_version')}"
        f" vs challenger v{result.get('challenger_version')}, metric `{result.get('metric')}`,"
        f" alpha {result.get('alpha')}, minimum effect {result.get('min_effect')}.",
        "",
        "| variant | labelled | ROC AUC | log loss | Brier | positive rate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, arm in arms.items():
        cells = [_num(arm.get(k)) for k in ("roc_auc", "log_loss", "brier", "positive_rate")]
        lines.append(f"| {name} | {arm.get('labelled')} | " + " | ".join(cells) + " |")
    ops = result.get("operations") or {}
    if ops:
        lines += ["", "| variant | scored | failed | error rate | p95 latency (ms) |", "|---|---:|---:|---:|---:|"]
        for name, op in ops.items():
            rate, p95 = op.get("error_rate"), op.get("latency_p95_ms")
            shown = "-" if rate is None else f"{rate:.2%}"
            lines.append(f"| {name} | {op.get('scored')} | {op.get('failed')} | {shown} | {_num(p95)} |")
    worst = (result.get("groups") or {}).get("worst")
    if worst:
        lines += ["", f"Worst group of the challenger: {worst['text']}"]
    sequential_part = result.get("sequential") or {}
    lines += ["", f"Always-valid interval of the improvement: {sequential_part.get('interval')}"]
    for check in (result.get("srm") or {}).values():
        if check:
            lines.append(f"Sample ratio: {check['sentence']}")
    if result.get("rows_needed"):
        lines.append(f"Labelled rows still needed to decide: {result['rows_needed']}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.4f}"
