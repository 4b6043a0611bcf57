"""The loop, played by ``make demo`` on the real scheduler for each model: batches arrive through ``<model>_etl``
(REST), are scored by the prediction service, their outcomes come back through ``/v1/models/<model>/feedback``;
``<model>_drift`` judges each batch, a drift verdict starts ``<model>_retrain``, and ``<model>_ab_evaluate`` looks at
the challenger until it decides. ``play`` prints the timeline (batch, drift score, decision, ROC AUC per variant,
routing) for the default model; ``brief`` plays another model's loop in less detail (first training, traffic, a
drifted batch, its verdict and the retrain's challenger).

``<model>_train`` is paused once the first champion exists: in this demo the drift verdict decides when to train,
so the only new model is the retrain's. Unpaused, every ETL batch would also hand its version to training; the gate
would hold any better model trained while the experiment runs (decision ``held``), so the timeline would be the same,
only slower on two cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from airloop.settings import Settings

ROWS = 5000
UNDRIFTED = 2
DRIFTED = 4  # at most: the evaluation usually decides after one or two
DRIFT = {"covariate_drift": 2.0, "concept_drift": 2.0}
CHUNK = 250


def stream(settings: Settings, version: str, http: Any = None) -> dict[str, int]:
    """Every record of a published batch to the model's /v1/models/<name>/predict, then its outcome to its
    /feedback; rows per variant.

    ``http``: a client of the service (an ``httpx.Client`` or a FastAPI ``TestClient``); the configured URL when None.
    """
    from airloop.data.store import dataset_store

    data = settings.spec.data
    frame = dataset_store(settings).load(version)
    inputs = frame[data.input_columns]
    records = inputs.astype(object).where(inputs.notna(), None).to_dict("records")  # JSON: a missing number is null
    outcomes = frame[data.target.name].tolist()
    served: dict[str, int] = {}
    base = f"/v1/models/{settings.model}"
    keys = settings.serving
    # The client that asks for scores and the system that knows outcomes hold different keys (admin as a fallback).
    asks, knows = key_header(keys.predict_key or keys.api_key), key_header(keys.feedback_key or keys.api_key)
    own = http is None
    http = httpx.Client(base_url=settings.serving.url, timeout=60) if own else http
    try:
        for start in range(0, len(records), CHUNK):
            chunk = [{**r, "entity_id": str(r[data.entity])} for r in records[start : start + CHUNK]]
            response = http.post(f"{base}/predict", json={"records": chunk}, headers=asks)
            response.raise_for_status()
            for answer, outcome in zip(response.json()["predictions"], outcomes[start : start + CHUNK], strict=True):
                served[answer["variant"]] = served.get(answer["variant"], 0) + 1
                feedback = {"request_id": answer["request_id"], "outcome": int(outcome)}
                sent = http.post(f"{base}/feedback", json=feedback, headers=knows)
                sent.raise_for_status()
    finally:
        if own:
            http.close()
    time.sleep(settings.serving.log_flush_interval_s + 1)  # the service flushes its logs every interval
    return served


def key_header(key: str | None) -> dict[str, str]:
    """The X-API-Key header of ``key`` (none when there is no key: an open scope, or a 401)."""
    return {"X-API-Key": key} if key else {}


def reload(settings: Settings) -> dict[str, Any]:
    """Ask the service to read the aliases and routing now, instead of at its next poll."""
    base = f"/v1/models/{settings.model}"
    with httpx.Client(base_url=settings.serving.url, timeout=60) as http:
        http.post(f"{base}/reload", headers=key_header(settings.serving.api_key)).raise_for_status()
        return http.get(base).json()


def play(settings: Settings, client: Any, run: Callable[[str, dict[str, Any]], str], wait: Callable[[str, str], str]):
    """Play the stream; ``run(dag_id, conf)`` triggers and waits for a run, ``wait(dag_id, run_id)`` waits for one.

    Returns the timeline as text.
    """
    from airloop.data.store import dataset_store
    from airloop.ledger import Kind, Resolution, ledger
    from airloop.registry.contract import Alias

    book, dag = ledger(settings), settings.spec.dag_id
    client.pause(dag("train"))
    lines = [f"{'batch':>5}  {'data':<9} {'served':<30} {'drift (share)':<20} decision"]

    def publish(seed: int, drift: dict[str, float]) -> str:
        before = dataset_store(settings).latest()
        run(dag("etl"), {"rows": ROWS, "seed": seed, **drift})
        version = dataset_store(settings).latest()
        if version == before:
            raise RuntimeError(f"{dag('etl')} published nothing new for seed {seed}")
        return version

    def drift_run() -> Any:
        run(dag("drift"), {})
        return next(r for r in book.rows(kind=Kind.DRIFT_VERDICT) if r.payload.get("source") == "prediction_log")

    retrained = False
    for batch in range(1, UNDRIFTED + DRIFTED + 1):
        drift = DRIFT if batch > UNDRIFTED else {}
        served = stream(settings, publish(9000 + batch, drift))
        label = "drifted" if drift else "as before"
        split = ", ".join(f"{k} {v}" for k, v in sorted(served.items()))
        if not retrained:
            verdict = drift_run()
            fired = sorted({f"{r['decision']}:{r['rule']}" for r in verdict.payload.get("rules") or []})
            score = f"{verdict.payload['verdict']} ({', '.join(fired) or 'no rule fired'})"
            decision = f"{verdict.outcome}"
            if verdict.outcome == Resolution.RETRAIN_STARTED:
                state = wait(dag("retrain"), verdict.outcome_detail)
                retrain = book.rows(kind=Kind.RETRAIN)
                detail = retrain[0].outcome_detail if retrain else state
                models = reload(settings)
                decision += f" -> retrain {state}: {detail}; routing {models['routing']['weights']}"
                retrained = True
            lines.append(f"{batch:>5}  {label:<9} {split:<30} {score:<20} {decision}")
            continue
        run(dag("ab_evaluate"), {})
        evaluation = book.rows(kind=Kind.EVALUATION)[0].payload
        arms = evaluation.get("arms") or {}
        aucs = ", ".join(f"{k} AUC {a['roc_auc']:.3f} (n={a['labelled']})" for k, a in arms.items() if a.get("roc_auc"))
        lines.append(f"{batch:>5}  {label:<9} {split:<30} {'-':<20} evaluation: {evaluation['action']}; {aucs}")
        if evaluation["action"] in ("promote", "reject"):
            models = reload(settings)
            champion = models["models"].get(Alias.CHAMPION.value, {}).get("version")
            lines.append(f"{'':>5}  now serving champion v{champion}; routing {models['routing']['weights']}")
            break
    return "\n".join(lines)


def brief(settings: Settings, client: Any, run: Callable[[str, dict[str, Any]], str], wait: Callable[[str, str], str]):
    """Another model's loop in less detail: its ETL hands the first batch to its training (the hand-off's run id), the
    service answers with the new champion, a drifted batch gets a drift verdict, which starts the retrain whose
    challenger enters an A/B experiment. Returns the lines to print."""
    from airloop.data.store import dataset_store
    from airloop.ledger import Kind, Resolution, ledger
    from airloop.registry.contract import Alias
    from airloop.training.handoff import training_run_id

    book, dag, name = ledger(settings), settings.spec.dag_id, settings.model

    def publish(seed: int, drift: dict[str, float]) -> str:
        run(dag("etl"), {"rows": ROWS, "seed": seed, **drift})
        return dataset_store(settings).latest()

    first = publish(7001, {})
    trained = wait(dag("train"), training_run_id(settings, first))
    client.pause(dag("train"))  # from here on only a drift verdict trains this model too
    models = reload(settings)
    champion = models["models"].get(Alias.CHAMPION.value, {}).get("version")
    lines = [f"{name}: dataset {first} -> {dag('train')} {trained}; serving champion v{champion}"]
    served = stream(settings, first)
    lines.append(f"{name}: {sum(served.values())} predictions with their outcomes ({served})")
    stream(settings, publish(7002, DRIFT))
    run(dag("drift"), {})
    verdict = next(r for r in book.rows(kind=Kind.DRIFT_VERDICT) if r.payload.get("source") == "prediction_log")
    lines.append(f"{name}: drift verdict {verdict.payload['verdict']} ({verdict.payload['reason']}); {verdict.outcome}")
    if verdict.outcome == Resolution.RETRAIN_STARTED:
        state = wait(dag("retrain"), verdict.outcome_detail)
        retrain = book.rows(kind=Kind.RETRAIN)
        models = reload(settings)
        lines.append(
            f"{name}: {dag('retrain')} {state}: {retrain[0].outcome_detail if retrain else ''};"
            f" routing {models['routing']['weights']}"
        )
    return "\n".join(lines)
