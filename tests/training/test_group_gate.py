"""The gate judged per group on real rows (the 3,000-row sample of diabetic_data.csv): a candidate better overall but
worse for one group of patients is refused with the group named; retrains that are no worse are not refused."""

from __future__ import annotations

import numpy as np
import pytest

from airloop import groups
from airloop.data.records import prepare
from airloop.data.sources import read_csv_bytes
from airloop.registry.contract import Outcome
from airloop.spec.loader import load_spec
from airloop.training import evaluate, features
from airloop.training.model_gate import decide
from airloop.training.split import group_split
from tests.conftest import REPO

PARAMS = {"learning_rate": 0.1, "max_leaf_nodes": 15, "max_iter": 200, "l2_regularization": 1.0}


@pytest.fixture(scope="module")
def real(real_sample):
    """The readmission spec, the champion trained on 60% of the sample's patients, and the held-out rows."""
    spec = load_spec(REPO / "models" / "readmission.yaml")
    frame = prepare(spec, read_csv_bytes(real_sample, spec)).reset_index(drop=True)
    parts = group_split(frame, spec.data.target.name, spec.data.entity, 0.4, 0.1, 42)
    train, test = frame.iloc[parts.train], frame.iloc[parts.test]
    x_train, y_train = features.model_inputs(spec, train), features.target(spec, train).to_numpy()
    x_test, y_test = features.model_inputs(spec, test), features.target(spec, test).to_numpy()

    def fit(seed: int, rows: np.ndarray | None = None):
        rows = np.arange(len(y_train)) if rows is None else rows
        model = features.make_pipeline(spec, "hist_gradient_boosting", PARAMS, seed)
        return model.fit(x_train.iloc[rows], y_train[rows]).predict_proba(x_test)[:, 1]

    labels = groups.labels(spec.evaluation, x_test, spec.data.missing_markers)
    return {"spec": spec, "fit": fit, "y": y_test, "champion": fit(42), "labels": labels, "n_train": len(y_train)}


def gate(real, candidate: np.ndarray):
    """The gate's decision on the held-out rows, with and without the per-group comparison."""
    y, champion, spec = real["y"], real["champion"], real["spec"]
    overall = [evaluate.score(y, p, 0.5)["roc_auc"] for p in (candidate, champion)]
    gaps = groups.compare(spec.evaluation, real["labels"], y, champion, candidate)
    return decide("roc_auc", *overall, 0.005), decide("roc_auc", *overall, 0.005, groups=gaps), gaps


def test_a_candidate_better_overall_but_ranking_one_age_band_backwards_is_refused_naming_it(real):
    y, champion, band = real["y"], real["champion"], real["labels"]["age_band"] == "60-80"
    candidate = np.clip(champion + 0.2 * y, 0, 1)  # better elsewhere: it has seen more of the outcome ...
    order = np.argsort(champion[band])
    reversed_scores = np.empty(band.sum())
    reversed_scores[order] = np.sort(champion[band])[::-1]  # ... and ranks the patients of 60-80 backwards
    candidate[band] = reversed_scores

    plain, judged, gaps = gate(real, candidate)

    assert plain.outcome == Outcome.CHALLENGER  # better on average: one pooled metric would have promoted it
    assert judged.outcome == Outcome.REJECTED
    assert "better overall" in judged.reason and "worse for age_band=60-80: roc_auc" in judged.reason
    worst = groups.worst(gaps)
    assert (worst.group, worst.level) == ("age_band", "60-80") and worst.gap < -0.2


@pytest.mark.parametrize("seed", [1, 2])
def test_a_retrain_of_the_same_config_is_not_refused_for_any_group(real, seed):
    """Another seed (early stopping's validation split differs), and another 90% of the training patients' rows: the
    noise of a retrain. Measured: a retrain on a bootstrap resample (63% unique rows) of these 1,800 training rows can
    be really worse for a group, and is refused; that is not this test's case."""
    subset = np.sort(np.random.default_rng(seed).choice(real["n_train"], int(0.9 * real["n_train"]), replace=False))
    for candidate in (real["fit"](seed), real["fit"](seed, subset)):
        plain, judged, gaps = gate(real, candidate)

        assert not groups.refusals(gaps), groups.reason(groups.refusals(gaps))
        assert judged == plain
        assert sum(g.judged for g in gaps) >= 4  # the restraint is tested on judged groups, not on none
        assert any(g.gap != 0 for g in gaps if g.judged)  # and on a model that differs from the champion
