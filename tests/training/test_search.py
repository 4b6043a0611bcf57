"""Training trials run by Optuna: fixed candidates as enqueued trials, a budgeted TPE search pruned on folds, the
champion's parameters as a warm start, every trial a nested MLflow run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.spec.schema import SearchSpec
from airloop.training import evaluate, features, search
from airloop.training.split import group_split
from tests.specs import MODELS

CANDIDATES = {"logistic_regression": [{"C": 0.1}, {"C": 1.0}], "hist_gradient_boosting": [{"learning_rate": 0.1}]}
SPACE = {
    "hist_gradient_boosting": {
        "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
        "max_leaf_nodes": {"low": 8, "high": 64, "integer": True},
        "max_iter": {"choices": [100, 200, 300]},
    },
    "logistic_regression": {"C": {"low": 0.001, "high": 100.0, "log": True}},
}


class Curve:
    """A built objective over ``x`` in [0, 1]: fold ``k`` scores ``x - 0.01 k`` (so a low ``x`` lags from fold 0);
    counts the folds it was asked to fit, and moves a simulated clock by ``seconds_per_fold`` each."""

    def __init__(self, seconds_per_fold: float = 0.0) -> None:
        self.fits = 0
        self.now = 0.0
        self.seconds_per_fold = seconds_per_fold

    def __call__(self, params: dict, fold: int) -> search.FoldResult:
        self.fits += 1
        self.now += self.seconds_per_fold
        return {"roc_auc": params["x"] - 0.01 * fold, "brier": 1 - params["x"]}, f"model-x{params['x']}"

    def clock(self) -> float:
        return self.now


def curve_plan(**overrides) -> search.KindPlan:
    spec = {"budget": 20, "space": {"logistic_regression": {"x": {"low": 0.0, "high": 1.0}}}, "folds": 3}
    spec.update(overrides)
    return search.plans({}, spec, seed=5)[0]


def params_of(result: search.KindResult) -> list[dict]:
    return [trial.params for trial in result.trials]


# --- the spec: compatible with what specs said before --------------------------------------------------------------


def test_an_existing_search_keeps_meaning_its_budget_of_trials_per_kind():
    assert SearchSpec.model_validate({"budget": 2, "space": SPACE}).max_trials == 2
    assert SearchSpec.model_validate({"space": SPACE}).max_trials == 4  # the earlier default
    assert SearchSpec.model_validate({"minutes": 5, "space": SPACE}).max_trials is None  # the clock alone stops it
    assert SearchSpec.model_validate({"budget": 9, "minutes": 5, "space": SPACE}).max_trials == 9


def test_the_churn_spec_search_plans_two_trials_per_kind():
    from airloop.spec import load_spec

    spec = load_spec(MODELS / "churn.yaml")

    planned = search.plans({}, spec.training.search, seed=42)

    assert [(p.kind, p.max_trials, p.searched, p.enqueued) for p in planned] == [
        ("hist_gradient_boosting", 2, True, ()),
        ("logistic_regression", 2, True, ()),
    ]


@pytest.mark.parametrize(
    ("space", "named"),
    [
        ({"C": {"low": 0.0, "high": 1.0, "log": True}}, "logistic_regression.C"),
        ({"C": {"low": 0.2, "high": 0.8, "integer": True}}, "logistic_regression.C"),
    ],
)
def test_an_impossible_range_is_an_error_naming_the_parameter(space, named):
    with pytest.raises(ValueError, match=named):
        search.plans({}, {"budget": 1, "space": {"logistic_regression": space}}, seed=0)


# --- fixed candidates: today's trials, as enqueued trials with no sampler draws -------------------------------------


def test_without_a_search_the_fixed_candidates_are_the_trials_in_order():
    planned = search.plans(CANDIDATES, None, seed=1)

    assert {p.kind: list(p.enqueued) for p in planned} == CANDIDATES
    assert all(not p.searched and p.max_trials == len(CANDIDATES[p.kind]) for p in planned)
    for plan in planned:
        result = search.run(plan, "roc_auc", lambda params, fold: ({"roc_auc": 0.5}, None))
        assert params_of(result) == CANDIDATES[plan.kind]
        assert all(t.state == search.COMPLETE and len(t.folds) == 1 and t.enqueued for t in result.trials)


def test_fixed_candidates_are_fitted_and_scored_as_before(churn_parts):
    """The fixed trials of a spec give the very models and validation scores of a plain fit on the training part."""
    spec, train, validation = churn_parts
    fixed = {"logistic_regression": [{"C": 0.1}, {"C": 1.0}]}
    seen = []

    (found,) = search.candidates(spec, fixed, None, 3, "roc_auc", train, validation, on_trial=seen.append)

    today = []
    for params in fixed["logistic_regression"]:
        model = features.make_pipeline(spec, "logistic_regression", dict(params), 3).fit(*train)
        proba = model.predict_proba(validation[0])[:, 1]
        today.append(evaluate.score(validation[1], proba, evaluate.best_threshold(validation[1], proba)))
    assert [t.params for t in seen] == fixed["logistic_regression"]
    assert [t.scores() for t in seen] == today
    best = max(range(2), key=lambda i: today[i]["roc_auc"])
    assert found.params == fixed["logistic_regression"][best]
    assert found.validation_scores == today[best]


# --- the search: budget, pruning, reproducibility ------------------------------------------------------------------


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(
    budget=st.one_of(st.none(), st.integers(1, 50)),
    minutes=st.one_of(st.none(), st.floats(0.01, 100)),
    done=st.integers(0, 60),
    elapsed=st.floats(0, 10_000),
)
def test_the_budget_allows_a_trial_only_within_both_limits(budget, minutes, done, elapsed):
    plan = search.KindPlan("logistic_regression", (), space={}, max_trials=budget, minutes=minutes)

    allowed = search.budget_left(plan, done, elapsed)

    if done == 0:
        assert allowed  # a kind always gets its first trial
    else:
        assert allowed == ((budget is None or done < budget) and (minutes is None or elapsed < minutes * 60))


@pytest.mark.parametrize(("minutes", "expected"), [(1, 1), (2, 1), (2.5, 2), (5, 3)])
def test_a_budget_in_minutes_stops_starting_trials_once_it_is_spent(minutes, expected):
    """Each trial takes 3 folds x 40 simulated seconds: the kind starts trials until 2 minutes x its budget is over."""
    curve = Curve(seconds_per_fold=40)
    plan = curve_plan(budget=None, minutes=minutes, pruner="none")

    result = search.run(plan, "roc_auc", curve, clock=curve.clock)

    assert len(result.trials) == expected == math.ceil(minutes * 60 / 120)
    assert curve.fits == 3 * expected


def test_a_budget_in_trials_ends_the_kind_before_the_clock_does():
    curve = Curve(seconds_per_fold=1)

    result = search.run(curve_plan(budget=7, minutes=60), "roc_auc", curve, clock=curve.clock)

    assert len(result.trials) == 7


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_the_pruner_stops_trials_whose_first_folds_lag(pruner):
    curve = Curve()

    result = search.run(curve_plan(pruner=pruner, startup_trials=3), "roc_auc", curve)

    pruned = [t for t in result.trials if t.state == search.PRUNED]
    complete = [t for t in result.trials if t.state == search.COMPLETE]
    assert len(result.trials) == 20 and pruned and complete
    assert all(len(t.folds) < 3 for t in pruned) and all(len(t.folds) == 3 for t in complete)
    assert curve.fits == sum(len(t.folds) for t in result.trials) < 3 * 20  # pruning saved fits
    assert result.best.state == search.COMPLETE
    assert result.best.params["x"] == max(t.params["x"] for t in complete)
    if pruner == "median":  # a pruned trial's first fold was below the median first fold of the trials before it
        for trial in pruned:
            earlier = [t.folds[0]["roc_auc"] for t in complete if t.number < trial.number]
            assert trial.folds[0]["roc_auc"] < float(np.median(earlier))


def test_no_pruner_scores_every_fold_of_every_trial():
    curve = Curve()

    result = search.run(curve_plan(pruner="none", budget=8), "roc_auc", curve)

    assert all(t.state == search.COMPLETE and len(t.folds) == 3 for t in result.trials)
    assert curve.fits == 24


def test_a_lower_is_better_metric_keeps_the_lowest_trial():
    result = search.run(curve_plan(pruner="none", budget=8), "brier", Curve())

    assert result.best.scores()["brier"] == min(t.scores()["brier"] for t in result.trials)


@pytest.mark.property
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), startup=st.integers(0, 6))
def test_the_same_seed_gives_the_same_trials_and_best(seed, startup):
    spec = {"budget": 12, "space": SPACE, "startup_trials": startup, "folds": 2}
    plan = search.plans({}, spec, seed=seed)[0]

    def score(params, fold):
        return {"roc_auc": -abs(math.log(params["learning_rate"] / 0.08)) - params["max_leaf_nodes"] / 1e3 - fold}, None

    first, again = search.run(plan, "roc_auc", score), search.run(plan, "roc_auc", score)

    assert params_of(first) == params_of(again)
    assert [t.state for t in first.trials] == [t.state for t in again.trials]
    assert first.best.params == again.best.params


def test_another_seed_draws_other_trials_and_a_kind_ignores_the_other_kinds():
    one = {p.kind: p for p in search.plans({}, {"budget": 6, "space": SPACE}, seed=7)}
    other = {p.kind: p for p in search.plans({}, {"budget": 6, "space": SPACE}, seed=8)}
    alone = search.plans({}, {"budget": 6, "space": {"logistic_regression": SPACE["logistic_regression"]}}, seed=7)[0]

    def score(params, fold):
        return {"roc_auc": -abs(math.log10(params["C"]))}, None

    drawn = params_of(search.run(one["logistic_regression"], "roc_auc", score))
    assert drawn != params_of(search.run(other["logistic_regression"], "roc_auc", score))
    assert drawn == params_of(search.run(alone, "roc_auc", score))
    assert all(0.001 <= p["C"] <= 100 for p in drawn)


@pytest.fixture(scope="module")
def churn_parts():
    """Churn (a spec with no code of its own): 1,500 synthetic rows split by customer into train and validation."""
    from airloop.data.generator import generate
    from airloop.data.records import prepare
    from airloop.spec import load_spec

    spec = load_spec(MODELS / "churn.yaml")
    frame = prepare(spec, generate(spec, 1500, seed=11))
    parts = group_split(frame, spec.data.target.name, spec.data.entity, 0.2, 0.2, 0)

    def xy(positions):
        rows = frame.iloc[positions]
        return features.model_inputs(spec, rows), features.target(spec, rows).to_numpy()

    return spec, xy(parts.train), xy(parts.validation)


def test_a_search_on_real_fits_repeats_its_trials_and_best_with_the_same_seed(churn_parts):
    spec, train, validation = churn_parts
    space = {
        "hist_gradient_boosting": {
            "learning_rate": {"low": 0.05, "high": 0.3, "log": True},
            "max_iter": {"choices": [10, 20]},
        },
        "logistic_regression": {"C": {"low": 0.001, "high": 10.0, "log": True}},
    }
    budget = {"budget": 4, "space": space, "startup_trials": 2, "folds": 2}

    def trials_of(seed):
        seen = []
        best = list(search.candidates(spec, {}, budget, seed, "roc_auc", train, validation, on_trial=seen.append))
        return [(t.kind, t.params, t.state, t.folds) for t in seen], [(c.kind, c.params) for c in best]

    first, again = trials_of(4), trials_of(4)

    assert first == again
    assert [kind for kind, *_ in first[0]] == ["hist_gradient_boosting"] * 4 + ["logistic_regression"] * 4
    assert len({str(params) for _, params, *_ in first[0]}) == 8  # drawn, not repeated


def test_the_best_of_a_search_is_refitted_on_all_training_rows_and_scored_on_validation(churn_parts):
    spec, train, validation = churn_parts
    budget = {"budget": 3, "space": {"logistic_regression": SPACE["logistic_regression"]}, "folds": 2}

    (found,) = search.candidates(spec, {}, budget, 2, "roc_auc", train, validation)

    refit = features.make_pipeline(spec, "logistic_regression", found.params, 2).fit(*train)
    assert np.array_equal(found.validation_proba, refit.predict_proba(validation[0])[:, 1])
    assert (
        found.validation_scores["roc_auc"]
        == evaluate.score(
            validation[1], found.validation_proba, evaluate.best_threshold(validation[1], found.validation_proba)
        )["roc_auc"]
    )


# --- warm start from the champion ----------------------------------------------------------------------------------


def test_the_champion_params_are_the_first_trial_of_their_searched_kind():
    champion = ("hist_gradient_boosting", {"learning_rate": "0.05", "max_leaf_nodes": "15", "max_iter": "300"})

    planned = {p.kind: p for p in search.plans({}, {"budget": 4, "space": SPACE}, seed=1, warm=champion)}
    result = search.run(planned["hist_gradient_boosting"], "roc_auc", lambda p, f: ({"roc_auc": 0.5}, None))

    assert planned["hist_gradient_boosting"].enqueued == (
        {"learning_rate": 0.05, "max_leaf_nodes": 15, "max_iter": 300},
    )
    assert planned["logistic_regression"].enqueued == ()  # another kind's champion does not touch this kind
    assert result.trials[0].params == {"learning_rate": 0.05, "max_leaf_nodes": 15, "max_iter": 300}
    assert result.trials[0].enqueued and not any(t.enqueued for t in result.trials[1:])
    assert len(result.trials) == 4  # the warm start counts in the budget


def test_no_warm_start_when_the_spec_turns_it_off_or_there_is_no_search():
    champion = ("logistic_regression", {"C": "0.5"})

    off = search.plans({}, {"space": SPACE, "warm_start": False}, seed=1, warm=champion)
    fixed = search.plans(CANDIDATES, None, seed=1, warm=champion)

    assert all(p.enqueued == () for p in off)
    assert {p.kind: list(p.enqueued) for p in fixed} == CANDIDATES


@pytest.mark.property
@settings(max_examples=100, deadline=None)
@given(low=st.floats(0.001, 100), width=st.floats(0, 1000), integer=st.booleans(), value=st.floats(0, 2000))
def test_a_warm_start_keeps_exactly_the_champion_values_inside_the_space(low, width, integer, value):
    high = low + width
    param = {"low": low, "high": high, "integer": integer}
    space = SearchSpec.model_validate({"space": {"logistic_regression": {"p": param}}}).space["logistic_regression"]
    shown = str(round(value)) if integer else repr(value)

    kept = search.warm_params(space, {"p": shown, "not_searched": "1"})

    inside = low <= float(shown) <= high
    assert kept == ({"p": int(shown) if integer else float(shown)} if inside else {})


def test_the_champion_params_are_read_back_from_its_training_run(settings):
    import mlflow

    from airloop.registry.client import connect
    from airloop.registry.contract import Alias, VersionRecord

    client = connect(settings, create_experiment=True)
    chosen = {"learning_rate": 0.05, "max_leaf_nodes": 15, "max_iter": 300}
    with mlflow.start_run() as run:
        mlflow.log_params(search.best_params_record("hist_gradient_boosting", chosen))
    name = settings.mlflow.model_name
    assert search.champion_params(client, name) is None  # no model, no champion
    client.create_registered_model(name)
    tags = VersionRecord(training_run_id=run.info.run_id).to_tags()
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id, tags=tags)
    assert search.champion_params(client, name) is None  # registered, not champion
    client.set_registered_model_alias(name, Alias.CHAMPION, version.version)

    found = search.champion_params(client, name)

    assert found == ("hist_gradient_boosting", {k: str(v) for k, v in chosen.items()})
    plan = search.plans({}, {"budget": 2, "space": SPACE}, seed=0, warm=found)[0]
    assert plan.enqueued == (chosen,)


# --- MLflow: each trial a nested run -------------------------------------------------------------------------------


def test_every_trial_is_a_nested_run_with_its_params_fold_scores_and_state(settings):
    import mlflow

    from airloop.registry.client import connect

    client = connect(settings, create_experiment=True)
    with mlflow.start_run() as parent:
        result = search.run(curve_plan(startup_trials=3, budget=10), "roc_auc", Curve(), on_trial=search.log_trial)

    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_number = {int(r.data.tags[search.TRIAL_NUMBER_TAG]): r for r in children}
    assert sorted(by_number) == list(range(10))
    for trial in result.trials:
        run = by_number[trial.number]
        assert run.data.tags[search.TRIAL_STATE_TAG] == trial.state
        assert float(run.data.params["x"]) == trial.params["x"] and run.data.params["kind"] == "logistic_regression"
        history = client.get_metric_history(run.info.run_id, "fold_roc_auc")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (i, f["roc_auc"]) for i, f in enumerate(trial.folds)
        ]
        assert ("validation_roc_auc" in run.data.metrics) == (trial.state == search.COMPLETE)
    assert any(t.state == search.PRUNED for t in result.trials)
