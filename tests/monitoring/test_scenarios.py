"""The loop's judgement on a really trained model: which drift alerts, which retrains, and what stays quiet.

A logistic regression is trained on the synthetic stream as the training DAG trains it (the same pipeline, the same
feature-level permutation importance, the same reference profile with test counts). Windows are then scored by it
and compared with ``drift.compare`` with their outcomes:

- covariate drift concentrated in the features the model relies on most (few columns, large harm): alert and retrain;
- drift in many features the model ignores (many columns, no harm): alert only;
- concept drift (features unchanged, their relation to the outcome changed): only the realised performance sees it;
- A/A (another sample of the training period): nothing; random halves of the real rows: nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from airloop.monitoring.drift import compare
from airloop.monitoring.multivariate import reference_sample
from airloop.training import features
from airloop.usecases.readmission import transform as tf
from airloop.usecases.readmission.synthetic import generate
from tests.specs import READMISSION

SEGMENTS = ["age", "race", "gender", "admission_type_id"]  # as the readmission spec names them
ROWS = 6_000  # per window
TRAINING_ROWS = 12_000  # a third of them the test set: the realised figures are set against its AUC and its error
IMPORTANCE_ROWS = 2_000  # as the training DAG's default


def _xy(raw: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    prepared = tf.prepare(raw)
    return features.model_inputs(READMISSION, prepared), features.target(READMISSION, prepared).to_numpy()


def train(x: pd.DataFrame, y: np.ndarray, seed: int = 0):
    """The training DAG's model and reference profile, on ``x``/``y`` split 2:1."""
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) * 2 // 3
    train_rows, test_rows = order[:cut], order[cut:]
    x_train, y_train = x.iloc[train_rows], y[train_rows]
    x_test, y_test = x.iloc[test_rows], y[test_rows]
    model = features.make_pipeline(READMISSION, "logistic_regression", {"C": 0.5}, seed).fit(x_train, y_train)
    proba = model.predict_proba(x_test)[:, 1]
    scores = {
        "roc_auc": float(metrics.roc_auc_score(y_test, proba)),
        "log_loss": float(metrics.log_loss(y_test, proba)),
    }
    sample = slice(0, IMPORTANCE_ROWS)
    importance = features.feature_importance(model, x_test.iloc[sample], y_test[sample], seed)
    profile = features.reference_profile_of(model, x_train, proba, scores, importance, y_test, x_test, SEGMENTS)
    REFERENCE_SAMPLES[id(model)] = reference_sample(features.feature_step(model).transform(x_train), seed=seed)
    return model, json.loads(json.dumps(profile))  # as MLflow stores and returns it


REFERENCE_SAMPLES: dict[int, pd.DataFrame] = {}  # the sample training stores beside the profile, per model


def judge(model, profile, frame, proba, outcomes=None):
    """drift.compare as the drift DAG calls it: with the version's reference sample."""
    sample = REFERENCE_SAMPLES[id(model)]
    return compare(profile, frame, None, proba, outcomes, reference_sample=sample, segments=SEGMENTS)


@pytest.fixture(scope="module")
def trained():
    return train(*_xy(generate(TRAINING_ROWS, seed=1)))


def window(model, x: pd.DataFrame, y: np.ndarray, edit=None):
    """The model features of ``x`` (edited by ``edit``), the model's probabilities on them, and the outcomes."""
    frame = features.feature_step(model).transform(x)
    if edit is not None:
        frame = edit(frame.copy())
    return frame, model[1:].predict_proba(frame)[:, 1], y.astype(float)


def ranked(profile) -> list[str]:
    """Features by importance share, largest first."""
    return sorted(profile["importance"], key=lambda n: -profile["importance"][n])


def shift(frame: pd.DataFrame, names: list[str], profile) -> pd.DataFrame:
    """A coding change in each named feature: numbers moved by two standard deviations, categories swapped."""
    for name in names:
        ref = profile["features"][name]
        if ref["kind"] == "numeric":
            spread = float(np.nanstd(frame[name].to_numpy(dtype=float))) or 1.0
            frame[name] = frame[name] + 2 * spread
        else:
            kept = ref["categories"]
            rotate = dict(zip(kept, kept[1:] + kept[:1], strict=True))
            frame[name] = frame[name].map(lambda v, r=rotate: r.get(v, v))
    return frame


def rules(result) -> set[tuple[str, str]]:
    return {(h.rule, h.decision) for h in result.rules}


def test_the_profile_holds_feature_level_importance_and_test_counts(trained):
    _, profile = trained

    assert set(profile["importance"]) == set(profile["features"])
    x, _ = _xy(generate(TRAINING_ROWS, seed=1))
    assert profile["test_counts"]["positives"] + profile["test_counts"]["negatives"] == len(x) - len(x) * 2 // 3
    top = ranked(profile)[:3]
    assert all(profile["importance"][name] > 0 for name in top)


def test_a_and_a_gives_neither_alert_nor_retrain(trained):
    model, profile = trained
    x, y = _xy(generate(ROWS, seed=2))

    result = judge(model, profile, *window(model, x, y))

    assert result.verdict == "no_drift" and result.rules == [], result.reason
    assert result.importance_weighted_share == 0.0
    assert result.multivariate is not None and result.multivariate.interval[0] < 0.55


def test_few_important_features_moved_alert_and_retrain(trained):
    model, profile = trained
    x, y = _xy(generate(ROWS, seed=3))
    top = ranked(profile)[:2]

    frame, proba, outcomes = window(model, x, y, lambda f: shift(f, top, profile))
    result = judge(model, profile, frame, proba, outcomes)

    assert set(top) <= set(result.drifted_features) and len(result.drifted_features) <= 4
    assert result.drifted_share < 0.3  # a column count stays deaf to it
    assert result.importance_weighted_share >= 0.2
    assert ("importance_weighted_drift", "retrain") in rules(result) and ("feature_drift", "alert") in rules(result)
    assert result.verdict == "drift" and "importance_weighted_drift" in result.reason


def test_many_ignored_features_moved_alert_only(trained):
    model, profile = trained
    x, y = _xy(generate(ROWS, seed=4))
    shares = profile["importance"]
    movable = [n for n in ranked(profile)[::-1] if len(profile["features"][n].get("categories") or "ab") > 1]
    ignored = [name for name in movable if shares[name] < 0.01][:18]
    assert len(ignored) >= 15  # the model leans on a few features: 15 of 49 are over the share of 0.3

    frame, proba, outcomes = window(model, x, y, lambda f: shift(f, ignored, profile))
    result = judge(model, profile, frame, proba, outcomes)

    assert result.drifted_share >= 0.3 and result.importance_weighted_share < 0.2
    assert ("drifted_share", "alert") in rules(result)
    assert not result.retrain and result.verdict == "alert", result.reason
    assert not set(result.multivariate.columns) & set(ignored)  # it looks where the model looks


def test_concept_drift_is_seen_by_the_realised_performance_once_labels_arrive(trained):
    model, profile = trained
    x, y = _xy(generate(ROWS, seed=5, concept_drift=2.0))
    frame, proba, outcomes = window(model, x, y)

    unlabelled = compare(profile, frame, probabilities=proba)
    labelled = compare(profile, frame, probabilities=proba, outcomes=outcomes)

    assert unlabelled.drifted_features == [] and not unlabelled.retrain  # the features did not move
    assert ("realised_performance", "retrain") in rules(labelled), labelled.reason
    assert labelled.verdict == "drift"


def test_random_halves_of_the_real_rows_give_neither(real_sample):
    from airloop.data.sources import read_csv_bytes

    prepared = tf.prepare(read_csv_bytes(real_sample, READMISSION))
    x, y = features.model_inputs(READMISSION, prepared), features.target(READMISSION, prepared).to_numpy()
    halves = np.random.default_rng(0).permutation(len(x)) < len(x) // 2
    model, profile = train(x[~halves].reset_index(drop=True), y[~halves])

    frame, proba, outcomes = window(model, x[halves].reset_index(drop=True), y[halves])
    result = judge(model, profile, frame, proba, outcomes)

    assert result.verdict == "no_drift" and result.rules == [], result.reason
    assert {"age", "race", "gender", "admission_type_id"} == set(result.segments)
    assert result.multivariate.interval[0] < 0.55


def test_a_broken_relation_between_features_escapes_per_feature_statistics_and_the_classifier_sees_it(trained):
    model, profile = trained
    x, y = _xy(generate(ROWS, seed=6))
    numeric = [n for n in ranked(profile) if profile["features"][n]["kind"] == "numeric"]
    watched = numeric[:3]

    def decouple(frame: pd.DataFrame) -> pd.DataFrame:
        # Each feature keeps its own distribution; which row holds which value is shuffled, feature by feature.
        rng = np.random.default_rng(6)
        for name in watched:
            frame[name] = rng.permutation(frame[name].to_numpy())
        return frame

    frame, proba, _ = window(model, x, y, decouple)
    result = judge(model, profile, frame, proba)

    assert result.drifted_features == [], result.drifted_features
    assert ("multivariate_drift", "retrain") in rules(result), result.multivariate
    assert set(result.multivariate.features) & set(watched)


def test_a_drop_confined_to_one_group_of_patients_is_seen_and_named(trained):
    model, profile = trained
    x, y = _xy(generate(ROWS, seed=7))
    frame, proba, outcomes = window(model, x, y)
    group = frame["gender"].eq("Female").to_numpy()
    # For these patients the model's ranking no longer holds: their outcomes follow nothing it sees.
    outcomes[group] = np.random.default_rng(7).permutation(outcomes[group])

    result = judge(model, profile, frame, proba, outcomes)
    quiet = judge(model, profile, frame, proba, window(model, x, y)[2])

    hit = next(h for h in result.rules if h.rule == "segment_performance")
    assert "gender=Female" in hit.message and "gender=Male" not in hit.message
    female = result.segments["gender"]["Female"]
    assert female["labelled"]["roc_auc"] < 0.6 < female["test"]["roc_auc"]
    assert female["training_share"] == pytest.approx(female["share"], abs=0.05)  # who arrives did not change
    assert not any(h.rule.startswith("segment_") for h in quiet.rules), quiet.reason


def test_the_real_rows_in_time_order_name_the_recoding_their_later_half_has(real_sample):
    """The sample is in encounter order, and its later half was coded differently: discharge disposition 25 ("Not
    Mapped") is 38% of the first half and absent from the second (recorded as 1), admission type 6 ("NULL") falls
    from 46% to 14%. Two features the model uses moved: the rules say so and name them, with the calibration it
    cost. (Random halves of the same rows, above, fire nothing.)"""
    from airloop.data.sources import read_csv_bytes

    prepared = tf.prepare(read_csv_bytes(real_sample, READMISSION))
    x, y = features.model_inputs(READMISSION, prepared), features.target(READMISSION, prepared).to_numpy()
    half = len(x) // 2
    model, profile = train(x.iloc[:half].reset_index(drop=True), y[:half])

    result = judge(model, profile, *window(model, x.iloc[half:].reset_index(drop=True), y[half:]))

    feature_drift = next(h for h in result.rules if h.rule == "feature_drift")
    assert {"discharge_disposition_id", "admission_type_id"} <= set(feature_drift.features)
    assert result.features["discharge_disposition_id"].psi > 2
    assert result.alert and result.verdict in {"alert", "drift"}, result.reason
