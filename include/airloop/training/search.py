"""The trials of one training run, run by Optuna: a spec's fixed candidates, or a search per kind with a budget.

One mechanism for both. Each candidate kind is one in-memory Optuna study whose trials are asked for, scored fold
by fold and told back:

- **fixed candidates** (``training.candidates``, no ``training.search``): every candidate is an enqueued trial, the
  sampler never draws, there is no pruning, and the one "fold" is today's: fit on the training part, score on the
  validation part;
- **a search** (``training.search``: ``{budget, minutes, space, folds, pruner, startup_trials, warm_start}``):
  the champion's parameters are enqueued first when its kind is searched (``warm_start``), then a seeded TPE sampler
  draws inside the kind's ``space``; each trial is fitted and scored on ``folds`` group folds of the training part,
  every fold's score is reported, and the pruner (median or Hyperband) stops a trial whose early folds lag; the kind
  stops after ``budget`` trials or ``minutes`` (a started trial is finished). The best complete trial by the mean
  fold metric is refitted on the whole training part and scored on the validation part.

Every trial can be logged as a nested MLflow run (:func:`log_trial`: params, each fold's score by step, state) under
the training run; the best kind by validation metric is the model (``pipeline.train``). Each kind's sampler has its
own stream of the training seed, so the same seed, data and budget in trials give the same trials and the same best,
and adding a kind never changes another kind's trials. A budget in minutes ends at a time, so it repeats only as far
as the clock lets it.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from airloop.spec import ModelSpec
from airloop.spec.schema import SearchParam, SearchSpec
from airloop.training import evaluate, features
from airloop.training.split import group_folds

log = logging.getLogger(__name__)

Params = dict[str, Any]
#: A fold's scores (``evaluate.score``'s metrics) and the model fitted for it.
FoldResult = tuple[dict[str, float], Any]

COMPLETE, PRUNED = "complete", "pruned"
#: Tags of a trial's nested MLflow run.
TRIAL_STATE_TAG = "airloop.trial.state"
TRIAL_NUMBER_TAG = "airloop.trial.number"
TRIAL_ENQUEUED_TAG = "airloop.trial.enqueued"
#: Run params of the training run that name the chosen kind and its parameters (read back for a warm start).
BEST_KIND_PARAM = "best_kind"
BEST_PARAM_PREFIX = "best_"


@dataclass(frozen=True)
class KindPlan:
    """What one kind's study runs: enqueued trials first, then sampler draws inside ``space`` until the budget ends.

    ``space`` None means fixed trials: exactly the enqueued ones, scored on the validation part.
    """

    kind: str
    enqueued: tuple[Params, ...]
    space: Mapping[str, SearchParam] | None = None
    max_trials: int | None = None
    minutes: float | None = None
    seed: int = 0
    folds: int = 1
    pruner: str = "none"
    startup_trials: int = 0

    @property
    def searched(self) -> bool:
        """True when the sampler draws (a search), False for fixed trials."""
        return self.space is not None


@dataclass
class TrialResult:
    """One finished trial: its parameters, each scored fold, and whether it completed or was pruned."""

    kind: str
    number: int
    params: Params
    state: str
    folds: list[dict[str, float]]
    enqueued: bool

    def scores(self) -> dict[str, float]:
        """The mean of each metric over the scored folds."""
        return {key: float(np.mean([fold[key] for fold in self.folds])) for key in self.folds[0]} if self.folds else {}


@dataclass
class KindResult:
    """A kind's study: every trial in order, the best complete one and the model fitted on its last fold."""

    kind: str
    trials: list[TrialResult]
    best: TrialResult
    best_model: Any = field(default=None, repr=False)

    @property
    def pruned(self) -> int:
        """How many trials the pruner stopped."""
        return sum(trial.state == PRUNED for trial in self.trials)


def kind_seed(seed: int, kind: str) -> int:
    """The sampler seed of ``kind``: its own stream of the training seed."""
    return int(np.random.SeedSequence([seed, zlib.crc32(kind.encode())]).generate_state(1)[0])


def _check(path: str, param: SearchParam) -> None:
    if param.choices is not None:
        return
    assert param.low is not None and param.high is not None
    if param.log and param.low <= 0:
        raise ValueError(f"{path}: a log-scale range needs `low` above 0 (got {param.low})")
    if param.integer:
        low, high = math.ceil(param.low), math.floor(param.high)
        if low > high:
            raise ValueError(f"{path}: an integer range [{param.low}, {param.high}] holds no integer")


def _typed(param: SearchParam, value: Any) -> Any | None:
    """``value`` (e.g. an MLflow param string) as ``param`` takes it, or None when it is not inside ``param``."""
    if param.choices is not None:
        for choice in param.choices:
            if value == choice or str(value) == str(choice):
                return choice
        return None
    assert param.low is not None and param.high is not None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if param.integer:
        if number != round(number):
            return None
        return round(number) if param.low <= number <= param.high else None
    return number if param.low <= number <= param.high else None


def warm_params(space: Mapping[str, SearchParam], params: Mapping[str, Any]) -> Params:
    """The parameters of ``params`` that lie inside ``space``, typed as it takes them (the rest the sampler draws)."""
    out = {}
    for name, value in params.items():
        if name in space and (typed := _typed(space[name], value)) is not None:
            out[name] = typed
    return out


def plans(
    candidates: Mapping[str, list[Params]],
    search: SearchSpec | Mapping[str, Any] | None,
    seed: int,
    warm: tuple[str, Mapping[str, Any]] | None = None,
) -> list[KindPlan]:
    """Each kind's study: ``search``'s kinds when given (the champion's ``warm`` kind and params first), else the
    fixed ``candidates``.

    Args:
        candidates: fixed hyperparameters per kind (the trials when there is no search).
        search: a search (``SearchSpec`` or its dict form); None or empty for the fixed candidates.
        seed: the training seed.
        warm: the champion's (kind, params), enqueued first when that kind is searched and ``warm_start`` is on.

    Returns:
        One plan per kind, kinds in the order given.
    """
    if not search:
        return [
            KindPlan(kind, tuple(dict(p) for p in listed), max_trials=len(listed), seed=kind_seed(seed, kind))
            for kind, listed in candidates.items()
            if listed
        ]
    spec = search if isinstance(search, SearchSpec) else SearchSpec.model_validate(dict(search))
    out = []
    for kind, space in spec.space.items():
        for name, param in space.items():
            _check(f"training.search.space.{kind}.{name}", param)
        enqueued: tuple[Params, ...] = ()
        if warm is not None and spec.warm_start and warm[0] == kind:
            first = warm_params(space, warm[1])
            if first:
                enqueued = (first,)
            log.info("warm start of %s from the champion's parameters %s: %s", kind, dict(warm[1]), first or "none fit")
        out.append(
            KindPlan(
                kind=kind,
                enqueued=enqueued,
                space=dict(space),
                max_trials=spec.max_trials,
                minutes=spec.minutes,
                seed=kind_seed(seed, kind),
                folds=spec.folds,
                pruner=spec.pruner,
                startup_trials=spec.startup_trials,
            )
        )
    return out


def budget_left(plan: KindPlan, done: int, elapsed_s: float) -> bool:
    """Whether the kind may start another trial after ``done`` trials and ``elapsed_s`` seconds (the first always)."""
    if done == 0:
        return plan.max_trials is None or plan.max_trials > 0
    if plan.max_trials is not None and done >= plan.max_trials:
        return False
    return plan.minutes is None or elapsed_s < plan.minutes * 60


def _pruner(plan: KindPlan) -> optuna.pruners.BasePruner:
    if not plan.searched or plan.pruner == "none":
        return optuna.pruners.NopPruner()
    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=plan.folds, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=plan.startup_trials, n_warmup_steps=0)


def _study(plan: KindPlan, higher_is_better: bool) -> optuna.Study:
    if plan.searched:
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
            seed=plan.seed, n_startup_trials=plan.startup_trials
        )
    else:
        sampler = optuna.samplers.RandomSampler(seed=plan.seed)  # never asked: every fixed trial is enqueued
    study = optuna.create_study(  # in memory: the study lives as long as this training task
        direction="maximize" if higher_is_better else "minimize", sampler=sampler, pruner=_pruner(plan)
    )
    for params in plan.enqueued:
        study.enqueue_trial(params)
    return study


def _fixed_choices(plan: KindPlan) -> dict[str, list[Any]]:
    """Each fixed parameter's values over the enqueued trials (one categorical per name, as Optuna records it)."""
    choices: dict[str, list[Any]] = {}
    for params in plan.enqueued:
        for name, value in params.items():
            known = choices.setdefault(name, [])
            if not any(type(v) is type(value) and v == value for v in known):
                known.append(value)
    return choices


def _suggest(trial: optuna.Trial, name: str, param: SearchParam) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(name, list(param.choices))
    assert param.low is not None and param.high is not None
    if param.integer:
        return trial.suggest_int(name, math.ceil(param.low), math.floor(param.high), log=param.log)
    return trial.suggest_float(name, float(param.low), float(param.high), log=param.log)


def _ask(study: optuna.Study, plan: KindPlan, number: int, choices: dict[str, list[Any]]) -> optuna.Trial:
    trial = study.ask()
    if plan.space is None:  # a fixed trial: exactly the enqueued candidate, recorded as one-of-its-values
        params = plan.enqueued[number]
        for name in params:
            trial.suggest_categorical(name, choices[name])  # the enqueued value: fixed params win over the sampler
        trial.set_user_attr("params", params)
    else:
        trial.set_user_attr("params", {name: _suggest(trial, name, p) for name, p in plan.space.items()})
    return trial


def run(
    plan: KindPlan,
    metric: str,
    evaluate_fold: Callable[[Params, int], FoldResult],
    on_trial: Callable[[TrialResult], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> KindResult:
    """Run one kind's study: ask a trial, score it fold by fold (reporting each), prune or tell, until the budget ends.

    Args:
        plan: the kind's study (:func:`plans`).
        metric: the selection metric (a key of each fold's scores).
        evaluate_fold: ``(params, fold) -> (scores, fitted model)`` for fold ``0 .. plan.folds - 1``.
        on_trial: called with every finished trial (e.g. :func:`log_trial`).
        clock: seconds, for the ``minutes`` budget.

    Returns:
        Every trial, the best complete one (first of equals) and the model of its last fold.
    """
    higher = metric in evaluate.HIGHER_IS_BETTER
    study = _study(plan, higher)
    choices = _fixed_choices(plan)
    started = clock()
    results: list[TrialResult] = []
    best: TrialResult | None = None
    best_value = math.nan
    best_model = None
    while budget_left(plan, len(results), clock() - started):
        number = len(results)
        trial = _ask(study, plan, number, choices)
        params = dict(trial.user_attrs["params"])
        scored: list[dict[str, float]] = []
        model, state = None, COMPLETE
        for step in range(plan.folds):
            scores, model = evaluate_fold(params, step)
            scored.append({k: float(v) for k, v in scores.items()})
            trial.report(scores[metric], step)
            if step < plan.folds - 1 and trial.should_prune():  # a trial with every fold scored is complete
                state = PRUNED
                break
        result = TrialResult(plan.kind, number, params, state, scored, number < len(plan.enqueued))
        if state == PRUNED:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            value = result.scores()[metric]
            study.tell(trial, value)
            if best is None or (value > best_value if higher else value < best_value):
                best, best_value, best_model = result, value, model
        results.append(result)
        log.info("trial %s #%d %s: %s (%s %s)", plan.kind, number, params, state, metric, [f[metric] for f in scored])
        if on_trial is not None:
            on_trial(result)
    if best is None:
        raise RuntimeError(f"no trial of {plan.kind} completed ({len(results)} pruned)")
    return KindResult(plan.kind, results, best, best_model)


@dataclass
class Candidate:
    """The best of one kind: its parameters, the model fitted on the training part, its validation scores."""

    kind: str
    params: Params
    model: Any
    validation_proba: np.ndarray
    validation_scores: dict[str, float]
    search: KindResult


def _fit_score(
    spec: ModelSpec, kind: str, params: Params, seed: int, fit: tuple[pd.DataFrame, np.ndarray], score: tuple
) -> FoldResult:
    pipeline = features.make_pipeline(spec, kind, dict(params), seed)
    pipeline.fit(*fit)
    proba = pipeline.predict_proba(score[0])[:, 1]
    return evaluate.score(score[1], proba, evaluate.best_threshold(score[1], proba)), pipeline


def candidates(
    spec: ModelSpec,
    candidates_: Mapping[str, list[Params]],
    search: SearchSpec | Mapping[str, Any] | None,
    seed: int,
    metric: str,
    train: tuple[pd.DataFrame, np.ndarray],
    validation: tuple[pd.DataFrame, np.ndarray],
    warm: tuple[str, Mapping[str, Any]] | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Candidate]:
    """The best trial of each kind as a candidate model, fitted on ``train`` and scored on ``validation``.

    Fixed trials are fitted on ``train`` and scored on ``validation`` (one fold); a search scores each trial on
    group folds of ``train`` (by the spec's entity) and refits its best on the whole of it.
    """
    (x_train, y_train), (x_val, y_val) = train, validation
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None
    for plan in plans(candidates_, search, seed, warm):
        if plan.searched:
            if folds is None:
                groups = x_train[spec.data.entity].to_numpy()
                folds = group_folds(np.asarray(y_train), groups, plan.folds, seed)
            cv = folds

            def evaluate_fold(params: Params, step: int, kind: str = plan.kind, cv: list = cv) -> FoldResult:
                fit, held = cv[step]
                return _fit_score(
                    spec, kind, params, seed, (x_train.iloc[fit], y_train[fit]), (x_train.iloc[held], y_train[held])
                )
        else:

            def evaluate_fold(params: Params, step: int, kind: str = plan.kind) -> FoldResult:
                return _fit_score(spec, kind, params, seed, (x_train, y_train), (x_val, y_val))

        result = run(plan, metric, evaluate_fold, on_trial, clock)
        model = result.best_model
        if plan.searched:  # the folds' models saw part of the training rows: refit the best on all of them
            model = features.make_pipeline(spec, plan.kind, dict(result.best.params), seed).fit(x_train, y_train)
        proba = model.predict_proba(x_val)[:, 1]
        scores = evaluate.score(y_val, proba, evaluate.best_threshold(y_val, proba))
        log.info(
            "%s: best of %d trials (%d pruned) %s, validation %s=%.4f",
            plan.kind,
            len(result.trials),
            result.pruned,
            result.best.params,
            metric,
            scores[metric],
        )
        yield Candidate(plan.kind, dict(result.best.params), model, proba, scores, result)


# --- MLflow: each trial a nested run, the candidates on the training run, the champion's params read back ----------


def log_trial(result: TrialResult) -> None:
    """The trial as a nested run of the active training run: params, each fold's scores by step, its state; a
    complete trial also gets the mean of each metric as ``validation_<metric>`` (what the compare view plots)."""
    import mlflow

    with mlflow.start_run(run_name=f"{result.kind}-{result.number}", nested=True):
        mlflow.set_tags(
            {
                TRIAL_STATE_TAG: result.state,
                TRIAL_NUMBER_TAG: str(result.number),
                TRIAL_ENQUEUED_TAG: str(result.enqueued).lower(),
            }
        )
        mlflow.log_params({"kind": result.kind, **result.params})
        for step, scores in enumerate(result.folds):
            mlflow.log_metrics({f"fold_{k}": v for k, v in scores.items()}, step=step)
        mlflow.log_metric("folds_scored", len(result.folds))
        if result.state == COMPLETE:
            mlflow.log_metrics({f"validation_{k}": v for k, v in result.scores().items()})


def log_candidate(candidate: Candidate, metric: str) -> None:
    """A kind's search summary on the active training run: its trials, pruned trials, best validation metric."""
    import mlflow

    kind = candidate.kind
    mlflow.log_metrics(
        {
            f"{kind}_trials": len(candidate.search.trials),
            f"{kind}_pruned": candidate.search.pruned,
            f"{kind}_validation_{metric}": candidate.validation_scores[metric],
        }
    )


def best_params_record(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The training run's params naming the chosen kind and parameters (what :func:`champion_params` reads)."""
    return {BEST_KIND_PARAM: kind, **{f"{BEST_PARAM_PREFIX}{k}": v for k, v in params.items()}}


def champion_params(client: Any, model_name: str) -> tuple[str, Params] | None:
    """The champion's kind and parameters (strings, as MLflow keeps params) from its training run, or None when
    there is no champion or its run names none."""
    from airloop.registry.aliases import alias_version, version_record
    from airloop.registry.contract import Alias

    version = alias_version(client, model_name, Alias.CHAMPION)
    if version is None:
        return None
    run_id = version_record(client, model_name, version).training_run_id
    if not run_id:
        return None
    params = client.get_run(run_id).data.params
    kind = params.get(BEST_KIND_PARAM)
    if not kind:
        return None
    chosen = {
        k[len(BEST_PARAM_PREFIX) :]: v
        for k, v in params.items()
        if k.startswith(BEST_PARAM_PREFIX) and k != BEST_KIND_PARAM
    }
    return kind, chosen
