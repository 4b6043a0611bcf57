"""The training stages that each model's ``<model>_train`` DAG wires: load, validate, split, train, register and gate.

Stages hand each other small JSON-able values and files in a per-run staging folder. Every function runs without a
scheduler; MLflow locations come from settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from airloop import groups
from airloop.data.store import DatasetNotFound, DatasetStore, dataset_store
from airloop.errors import QualityGateFailed
from airloop.experiments.live import current, running
from airloop.explanations import remember_training_rows
from airloop.quality import suites
from airloop.quality.data_gate import validator
from airloop.registry import aliases as reg
from airloop.registry.client import connect, describe_model, model_uri
from airloop.registry.contract import Alias, Outcome, Tag, VersionRecord
from airloop.settings import Settings
from airloop.storage import Storage
from airloop.training import evaluate, features, model_io, search
from airloop.training.model_gate import Decision, decide
from airloop.training.split import group_split

log = logging.getLogger(__name__)

SPLIT_FILE = "split.npz"
VALIDATION_FILE = "training_validation.json"


def config_hash(settings: Settings) -> str:
    """Hash of everything that shapes a model besides the data: same data + same hash = same model version."""
    spec = settings.spec
    shape = {"data": spec.data.model_dump(mode="json"), "features": spec.features.model_dump(mode="json")}
    point = spec.evaluation.operating_point
    if point.kind != "f1":  # it moves the threshold; the default is left out so earlier versions keep their hash
        shape["operating_point"] = point.model_dump(mode="json")
    payload = json.dumps([settings.training.model_dump(exclude={"margin"}), shape], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def git_commit() -> str:
    """The HEAD commit of the checkout the airloop package runs from, or "unknown" (e.g. an installed wheel)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def staging(settings: Settings, run_id: str) -> Storage:
    """The staging folder of one training run, on the runtime storage (readable by tasks on any machine)."""
    return settings.layout.staging(f"train-{run_id}")


def store(settings: Settings) -> DatasetStore:
    """The published dataset store."""
    return dataset_store(settings)


def existing_version(client: MlflowClient, settings: Settings, dataset_version: str) -> Any | None:
    """The model version already trained on this dataset version with this config, if any."""
    query = f"name = '{settings.mlflow.model_name}'"
    try:
        versions = client.search_model_versions(query)
    except mlflow.exceptions.MlflowException:
        return None
    for version in versions:
        record = VersionRecord.from_tags(version.tags)
        if record.dataset_version == dataset_version and record.config_hash == config_hash(settings):
            return version
    return None


def load(settings: Settings, dataset_version: str | None) -> dict[str, Any]:
    """Resolve the dataset version to train on (the latest when not given)."""
    datasets = store(settings)
    version = dataset_version or datasets.latest()
    if version is None:
        raise DatasetNotFound(f"no published dataset at {datasets.url()}: run {settings.spec.dag_id('etl')} first")
    meta = datasets.metadata(version)
    log.info("training on dataset version %s (%d rows, source %s)", version, meta["rows"], meta["source"])
    return {"version": version, "rows": meta["rows"], "source": meta["source"], "url": datasets.url(version)}


def validate(settings: Settings, dataset_version: str, run_id: str) -> dict[str, Any]:
    """Validate the features the model will compute from the published rows with the features suite; the full result
    is kept for the MLflow run."""
    spec = settings.spec
    frame = suites.features_frame(spec, store(settings).load(dataset_version))
    report = validator(settings).validate(
        frame,
        suites.suite_name(spec, "features"),
        suites.expectations(spec, settings.quality, "features", list(frame.columns)),
        f"train-{run_id}",
    )
    url = staging(settings, run_id).write_json(report.result, VALIDATION_FILE)
    if not report.success:
        raise QualityGateFailed(report)
    return {**report.summary(), "result_url": url}


def split(settings: Settings, dataset_version: str, run_id: str) -> dict[str, Any]:
    """Group-aware stratified split by the spec's entity (no entity in two parts), saved as row positions."""
    frame = store(settings).load(dataset_version)
    cfg, data = settings.training, settings.spec.data
    parts = group_split(frame, data.target.name, data.entity, cfg.test_size, cfg.validation_size, cfg.seed)
    buffer = io.BytesIO()
    np.savez(buffer, train=parts.train, validation=parts.validation, test=parts.test)
    url = staging(settings, run_id).write_bytes(buffer.getvalue(), SPLIT_FILE)
    sizes = {"train": len(parts.train), "validation": len(parts.validation), "test": len(parts.test)}
    log.info("split %s by %s: %s", dataset_version, data.entity, sizes)
    return {"url": url, "run_id": run_id, **sizes}


def _parts(
    settings: Settings, dataset_version: str, split_info: dict[str, Any]
) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    frame = store(settings).load(dataset_version)
    spec = settings.spec
    positions = np.load(io.BytesIO(staging(settings, split_info["run_id"]).read_bytes(SPLIT_FILE)))
    return {
        name: (
            features.model_inputs(spec, frame.iloc[positions[name]]),
            features.target(spec, frame.iloc[positions[name]]).to_numpy(),
        )
        for name in ("train", "validation", "test")
    }


def _better(metric: str, a: float, b: float) -> bool:
    return a > b if metric in evaluate.HIGHER_IS_BETTER else a < b


def train(
    settings: Settings, dataset: dict[str, Any], split_info: dict[str, Any], validation: dict[str, Any], run_id: str
) -> dict[str, Any]:
    """Search the candidates (nested MLflow runs), keep the best on validation, log it with everything it needs."""
    client = connect(settings, create_experiment=True)
    version = dataset["version"]
    existing = existing_version(client, settings, version)
    if existing is not None:
        log.info(
            "dataset %s with config %s already trained as %s v%s: not training again",
            version,
            config_hash(settings),
            existing.name,
            existing.version,
        )
        return {"run_id": existing.run_id, "model_uri": existing.source, "existing_version": str(existing.version)}
    cfg = settings.training
    parts = _parts(settings, version, split_info)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = parts["train"], parts["validation"], parts["test"]
    frame_meta = store(settings).metadata(version)
    with mlflow.start_run(run_name=f"train-{version}") as parent:
        mlflow.set_tags(
            {
                Tag.DATASET_VERSION: version,
                Tag.AIRFLOW_RUN_ID: run_id,
                Tag.CONFIG_HASH: config_hash(settings),
                Tag.GIT_COMMIT: git_commit(),
            }
        )
        dataset_input = mlflow.data.from_pandas(
            store(settings).load(version),
            source=dataset["url"],
            name=f"{settings.data.dataset_name}@{version}",
            targets=settings.spec.data.target.name,
            digest=version,
        )
        mlflow.log_input(dataset_input, context="training")
        mlflow.log_params(
            {
                "dataset_version": version,
                "dataset_source": frame_meta["source"],
                "seed": cfg.seed,
                "test_size": cfg.test_size,
                "validation_size": cfg.validation_size,
                "selection_metric": cfg.metric,
                "rows_train": len(y_train),
                "rows_validation": len(y_val),
                "rows_test": len(y_test),
            }
        )
        warm = search.champion_params(client, settings.mlflow.model_name) if cfg.search else None
        best: search.Candidate | None = None
        for found in search.candidates(
            settings.spec,
            cfg.candidates,
            cfg.search,
            cfg.seed,
            cfg.metric,
            (x_train, y_train),
            (x_val, y_val),
            warm=warm,
            on_trial=search.log_trial,
        ):
            search.log_candidate(found, cfg.metric)
            score = found.validation_scores[cfg.metric]
            if best is None or _better(cfg.metric, score, best.validation_scores[cfg.metric]):
                best = found
        assert best is not None, "no candidates configured"
        model, kind, params, val_proba = best.model, best.kind, best.params, best.validation_proba
        remember_training_rows(model, x_train)  # what a linear model's explanations and band need of these rows
        point = settings.spec.evaluation.operating_point
        threshold = evaluate.operating_threshold(y_val, val_proba, point.kind, point.target)
        operating_point = {"kind": point.kind, "target": point.target, "threshold": threshold}
        test_proba = model.predict_proba(x_test)[:, 1]
        test_scores = evaluate.score(y_test, test_proba, threshold)
        mlflow.log_params({**search.best_params_record(kind, params), "operating_point": point.kind})
        mlflow.log_metrics({f"validation_{k}": v for k, v in best.validation_scores.items()})
        mlflow.log_metrics({f"test_{k}": v for k, v in test_scores.items()})
        _log_group_figures(settings, x_test, y_test, test_proba, operating_point)
        importance = _importance(model, x_test, y_test, cfg)
        mlflow.log_metrics(evaluate.importance_metrics(importance))
        profile = features.reference_profile_of(
            model, x_train, test_proba, test_scores, importance, y_test, x_test, settings.monitoring.segments
        )
        mlflow.log_dict(profile, "baseline/baseline_stats.json")  # what the model saw, and what it relies on
        _log_reference_sample(model, x_train, cfg.seed)
        mlflow.log_dict(staging(settings, run_id).read_json(VALIDATION_FILE), "validation/ge_validation_result.json")
        mlflow.log_dict(importance, "plots/feature_importance.json")
        with tempfile.TemporaryDirectory() as tmp:
            evaluate.plots(y_test, test_proba, threshold, importance, Path(tmp))
            mlflow.log_artifacts(tmp, "plots")
        example = x_test.head(5)
        info = model_io.log_sklearn_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict_proba(example)[:, 1]),
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            pip_requirements=features.pip_requirements(),
            skops_trusted_types=features.skops_trusted_types(model),
            metadata={"threshold": threshold, "operating_point": operating_point, "dataset_version": version},
        )
        log.info("best %s %s: test %s", kind, params, test_scores)
    return {
        "run_id": parent.info.run_id,
        "model_uri": info.model_uri,
        "kind": kind,
        "threshold": threshold,
        "operating_point": operating_point,
        "test_metrics": test_scores,
    }


GROUPS_ARTIFACT = "evaluation/groups.json"
GROUP_GATE_ARTIFACT = "evaluation/group_gate.json"


def group_labels(settings: Settings, x: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each record's level of every group the spec names (``evaluation.groups``)."""
    spec = settings.spec
    return groups.labels(spec.evaluation, x, spec.data.missing_markers)


def _log_group_figures(
    settings: Settings, x_test: pd.DataFrame, y_test: np.ndarray, proba: np.ndarray, operating_point: dict[str, Any]
) -> None:
    """The model's figures per group on the test rows: a JSON artifact and flat metrics, kept with the version."""
    evaluation = settings.spec.evaluation
    if not evaluation.groups:
        return
    found = groups.figures(
        group_labels(settings, x_test), y_test, proba, proba >= operating_point["threshold"], evaluation.level
    )
    mlflow.log_dict({"level": evaluation.level, "operating_point": operating_point, "groups": found}, GROUPS_ARTIFACT)
    mlflow.log_metrics(groups.flat_metrics(found))


def _log_reference_sample(model: Any, x_train: pd.DataFrame, seed: int) -> None:
    """A bounded sample of the training rows' model features, for the drift DAG's multivariate check."""
    from airloop.monitoring.multivariate import SAMPLE_ARTIFACT, reference_sample

    step = features.feature_step(model)
    sample = reference_sample(step.transform(x_train) if step is not None else x_train, seed=seed)
    folder, name = SAMPLE_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        sample.to_parquet(Path(tmp) / name, index=False)
        mlflow.log_artifact(str(Path(tmp) / name), folder)


def _importance(model: Any, x: pd.DataFrame, y: np.ndarray, cfg: Any) -> dict[str, float]:
    """Permutation importance of the model features on (a sample of) the test rows."""
    rows = min(len(x), cfg.importance_rows)
    sample = x.sample(rows, random_state=cfg.seed) if rows < len(x) else x
    y_sample = y[x.index.get_indexer(sample.index)] if rows < len(x) else y
    return features.feature_importance(model, sample, y_sample, cfg.seed)


def register(
    settings: Settings, dataset: dict[str, Any], split_info: dict[str, Any], trained: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Register the trained model, score it and the champion on the same test set, and apply the gate."""
    client = connect(settings, create_experiment=True)
    name = settings.mlflow.model_name
    if "existing_version" in trained:
        existing = reg.version_record(client, name, trained["existing_version"])
        log.info(
            "%s v%s already registered for this dataset and config (decision %s): nothing new",
            name,
            trained["existing_version"],
            existing.decision,
        )
        return {
            "version": trained["existing_version"],
            "decision": existing.decision,
            "created": False,
            "aliases": _alias_view(client, name),
        }
    earlier = existing_version(client, settings, dataset["version"])
    if earlier is not None:  # an earlier try of this step registered it, then failed: finish its work, nothing twice
        record = VersionRecord.from_tags(earlier.tags)
        if record.decision in (Outcome.CHAMPION, Outcome.CHALLENGER):
            reg.move_alias(client, name, Alias(record.decision), str(earlier.version), actor, record.decision_reason)
        _history(settings, str(earlier.version), str(record.decision), record.decision_reason, dataset, actor)
        log.info("%s v%s was registered by an earlier try (decision %s)", name, earlier.version, record.decision)
        return {
            "version": str(earlier.version),
            "decision": record.decision,
            "created": False,
            "aliases": _alias_view(client, name),
        }
    cfg = settings.training
    x_test, y_test = _parts(settings, dataset["version"], split_info)["test"]
    candidate_proba = _proba(trained["model_uri"], x_test)
    candidate_score = evaluate.score(y_test, candidate_proba, trained["threshold"])[cfg.metric]
    champion_version = reg.alias_version(client, name, Alias.CHAMPION)
    champion_score = None
    gaps: list[groups.GroupGap] = []
    if champion_version is not None:
        threshold = reg.version_record(client, name, champion_version).threshold
        champion_proba = _proba(model_uri(name, champion_version), x_test)
        champion_score = evaluate.score(y_test, champion_proba, threshold)[cfg.metric]
        labels = group_labels(settings, x_test)
        gaps = groups.compare(settings.spec.evaluation, labels, y_test, champion_proba, candidate_proba)
        _log_group_gate(client, trained["run_id"], champion_version, gaps)
    found, live = current(settings)
    decision = decide(cfg.metric, candidate_score, champion_score, cfg.margin, running(found, live), gaps)
    # Tags go in with the registration itself, so a retry always finds this version by dataset + config.
    version = mlflow.register_model(
        trained["model_uri"], name, tags=_decision_tags(dataset, trained, decision, actor, settings)
    )
    describe_model(client, name, settings.spec)
    reg.audit(client, name, version.version, f"gate_{decision.outcome}", actor, decision.reason)
    if decision.outcome in (Outcome.CHAMPION, Outcome.CHALLENGER):
        reg.move_alias(client, name, Alias(decision.outcome.value), version.version, actor, decision.reason)
    _history(settings, str(version.version), str(decision.outcome), decision.reason, dataset, actor)
    log.info("%s v%s: %s (%s)", name, version.version, decision.outcome, decision.reason)
    return {
        "version": str(version.version),
        "decision": decision.outcome,
        "reason": decision.reason,
        "created": True,
        "candidate_score": candidate_score,
        "champion_score": champion_score,
        "aliases": _alias_view(client, name),
    }


def _log_group_gate(client: MlflowClient, run_id: str, champion: str, gaps: list[groups.GroupGap]) -> None:
    """The candidate's per-group comparison with the champion, on its training run (so with the version)."""
    if not gaps:
        return
    worst = groups.worst(gaps)
    client.log_dict(
        run_id,
        {
            "champion_version": champion,
            "worst": worst.to_dict() if worst else None,
            "gaps": [g.to_dict() for g in gaps],
        },
        GROUP_GATE_ARTIFACT,
    )
    if worst is not None and worst.gap is not None:
        client.log_metric(run_id, "gate_worst_group_gap", worst.gap)


def _history(settings: Settings, version: str, decision: str, reason: str, dataset: dict[str, Any], actor: str) -> None:
    """The gate's decision as a row of the decision history (once per version, whatever the retries)."""
    from airloop import history
    from airloop.experiments.live import current_state
    from airloop.ledger import Kind

    details = {"version": version, "decision": decision, "reason": reason, "dataset_version": dataset["version"]}
    key = f"registered:{settings.mlflow.model_name}:v{version}"
    state = current_state(settings)
    history.record(
        settings, Kind.MODEL_REGISTERED, actor, details, state=state, key=key, versions=[version], outcome="done"
    )


def _alias_view(client: MlflowClient, name: str) -> dict[str, str]:
    return {str(alias): version for alias, version in reg.aliases(client, name).items()}


def _proba(model_uri: str, x: pd.DataFrame) -> np.ndarray:
    return model_io.load_sklearn_model(model_uri).predict_proba(x)[:, 1]


def _decision_tags(
    dataset: dict[str, Any], trained: dict[str, Any], decision: Decision, actor: str, settings: Settings
) -> dict[str, str]:
    record = VersionRecord(
        dataset_version=dataset["version"],
        dataset_source=dataset["source"],
        training_run_id=trained["run_id"],
        git_commit=git_commit(),
        config_hash=config_hash(settings),
        threshold=trained["threshold"],
        operating_point=_operating_point_tag(trained),
        decision=decision.outcome,
        decision_reason=decision.reason,
        decided_by=actor,
        decided_at=reg.now(),
        metric=decision.metric,
        candidate_score=decision.candidate_score,
        champion_score=decision.champion_score,
    )
    return record.to_tags()


def _operating_point_tag(trained: dict[str, Any]) -> str:
    point = trained.get("operating_point") or {"kind": "f1", "target": None}
    return json.dumps({"kind": point["kind"], "target": point.get("target")}, sort_keys=True)
