"""Test support shared by the drift tests: a champion trained through the pipeline's own stages, and logged traffic."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from tests.specs import READMISSION

MODEL = "readmission"


@contextmanager
def settings_env(values: dict[str, str]) -> Iterator[object]:
    """``get_settings()`` with the environment variables ``values`` set; the environment (and the settings cache) are
    restored afterwards."""
    from airloop.settings import get_settings

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@contextmanager
def champion_home(home: Path) -> Iterator[tuple[object, str]]:
    """Settings on ``home`` with a logistic-regression champion registered from 5,000 synthetic rows (ETL and training
    stages called directly; their DAGs are tested elsewhere); the environment is restored afterwards."""
    candidates = json.dumps({"logistic_regression": [{"C": 0.5}]})
    with settings_env({"AIRLOOP_HOME": str(home), "AIRLOOP_TRAINING__CANDIDATES": candidates}) as settings:
        yield settings, register_champion(settings, rows=5000)


def register_champion(settings, rows: int, seed: int = 7) -> str:
    """Publish ``rows`` generated records of the settings' model and register a version from them through the ETL and
    training stages called directly (their DAGs are tested elsewhere); returns the version."""
    from airloop import etl
    from airloop.training import pipeline

    raw = etl.extract(settings, "setup", {"rows": rows, "seed": seed})
    etl.transform(settings, "setup")
    published = etl.publish(settings, raw["source"], [], "setup")
    dataset = pipeline.load(settings, published.version)
    validation = pipeline.validate(settings, published.version, "setup")
    split = pipeline.split(settings, published.version, "setup")
    trained = pipeline.train(settings, dataset, split, validation, "setup")
    return pipeline.register(settings, dataset, split, trained, "test")["version"]


def log_traffic(
    settings,
    version: str,
    seed: int,
    covariate: float,
    start: datetime,
    span: timedelta,
    rows: int,
    logged_as: str | None = None,
) -> list[str]:
    """Score synthetic encounters with the model version and write them to the prediction log, spread over ``span``.

    ``logged_as`` logs them as scored by another version. Returns the request ids, in order.
    """
    from airloop.predlog import PredictionRow, new_request_ids, prediction_log
    from airloop.registry.contract import Alias
    from airloop.training.features import model_inputs
    from airloop.training.model_io import load_sklearn_model
    from airloop.usecases.readmission.synthetic import generate

    x = model_inputs(READMISSION, generate(rows, seed=seed, covariate_drift=covariate))
    proba = load_sklearn_model(f"models:/{MODEL}/{version}").predict_proba(x)[:, 1]
    records = x.astype(object).where(x.notna(), None).to_dict("records")
    t0, step = start.timestamp(), span.total_seconds() / rows
    ids = new_request_ids(rows)
    variant = Alias.CHAMPION.value
    writer = prediction_log(settings)
    writer.append(
        PredictionRow(
            ids[i], t0 + i * step, "exp-1", variant, logged_as or version, None, float(p), int(p > 0.5), False, r
        )
        for i, (p, r) in enumerate(zip(proba, records, strict=True))
    )
    writer.flush()
    return ids
