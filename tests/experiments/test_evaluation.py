"""One look of the A/B evaluation on prepared rows: the operational figures per variant and the guardrails that
reject a challenger (calibration, error rate, latency) whatever the sequential test says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from airloop.experiments import evaluation
from airloop.registry.contract import Alias
from airloop.settings import Settings

CHAMPION, CHALLENGER = Alias.CHAMPION.value, Alias.CHALLENGER.value
VERSIONS = {CHAMPION: "1", CHALLENGER: "2"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), loop={"min_rows": 100})


def scored(n: dict[str, int], latency: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """``n[alias]`` predictions per variant, with latencies around ``latency[alias]`` ms and outcomes drawn from
    well-calibrated probabilities."""
    rng = np.random.default_rng(seed)
    frames = []
    for alias, count in n.items():
        p = rng.uniform(0.05, 0.5, count)
        frames.append(
            pd.DataFrame(
                {
                    "request_id": [f"{alias}-{i}" for i in range(count)],
                    "variant": alias,
                    "model_version": VERSIONS[alias],
                    "probability": p,
                    "shadow": False,
                    "latency_ms": rng.normal(latency[alias], latency[alias] / 10, count).clip(0.01),
                    "outcome": (rng.uniform(size=count) < p).astype(int),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def failures(**records: int) -> pd.DataFrame:
    rows = [(VERSIONS[alias], count) for alias, count in records.items() if count]
    return pd.DataFrame(rows, columns=["model_version", "records"])


def judge(settings, rows, errors) -> dict:
    ops = evaluation.operations(rows, errors, VERSIONS)
    return evaluation.look(settings, rows, "1", "2", paired=False, ops=ops)


def test_operations_count_scored_and_failed_records_and_the_p95_latency():
    rows = scored({CHAMPION: 300, CHALLENGER: 100}, {CHAMPION: 2.0, CHALLENGER: 4.0})
    ops = evaluation.operations(rows, failures(challenger=25), VERSIONS)

    assert ops[CHAMPION] == {
        "scored": 300,
        "failed": 0,
        "error_rate": 0.0,
        "latency_p95_ms": pytest.approx(np.percentile(rows["latency_ms"][:300], 95)),
        "latency_rows": 300,
    }
    assert (ops[CHALLENGER]["scored"], ops[CHALLENGER]["failed"]) == (100, 25)
    assert ops[CHALLENGER]["error_rate"] == pytest.approx(25 / 125)


def test_a_challenger_that_fails_calls_is_rejected_before_any_outcome_arrives(settings):
    rows = scored({CHAMPION: 900, CHALLENGER: 100}, {CHAMPION: 2.0, CHALLENGER: 2.0})
    unlabelled = rows.iloc[:0]  # no outcome yet: the statistical test has nothing to say
    ops = evaluation.operations(rows, failures(challenger=5), VERSIONS)

    result = evaluation.look(settings, unlabelled, "1", "2", paired=False, ops=ops)

    assert result["action"] == "reject"
    assert result["reason"] == (
        "guardrail: the challenger's error rate 4.76% (5 of 105 records failed) vs the champion's 0.00%:"
        " more than 1.00% higher"
    )
    assert result["guardrails_failed"] and result["operations"] == ops


def test_errors_the_champion_shares_or_too_few_attempts_are_not_held_against_the_challenger(settings):
    rows = scored({CHAMPION: 900, CHALLENGER: 100}, {CHAMPION: 2.0, CHALLENGER: 2.0})
    shared = judge(settings, rows, failures(champion=45, challenger=5))  # 4.8% each
    few = scored({CHAMPION: 900, CHALLENGER: 50}, {CHAMPION: 2.0, CHALLENGER: 2.0})
    early = judge(settings, few, failures(challenger=40))  # 90 attempts < min_rows 100

    assert shared["guardrails_failed"] == [] and shared["action"] != "reject"
    assert early["guardrails_failed"] == [] and early["action"] != "reject"


def test_a_challenger_much_slower_than_the_champion_is_rejected(settings):
    slow = judge(settings, scored({CHAMPION: 900, CHALLENGER: 200}, {CHAMPION: 3.0, CHALLENGER: 30.0}), failures())
    # Twice as slow but only by ~3 ms: noise on a loaded machine, not a reason to stop the experiment.
    close = judge(settings, scored({CHAMPION: 900, CHALLENGER: 200}, {CHAMPION: 1.0, CHALLENGER: 3.5}), failures())

    assert slow["action"] == "reject"
    assert slow["reason"].startswith("guardrail: the challenger's p95 latency")
    assert "over 2.0x and 5.0 ms slower" in slow["reason"]
    assert close["guardrails_failed"] == []


def test_a_miscalibrated_challenger_is_rejected_and_the_reasons_add_up(settings):
    rows = scored({CHAMPION: 900, CHALLENGER: 300}, {CHAMPION: 2.0, CHALLENGER: 40.0})
    challenger = rows["variant"] == CHALLENGER
    rows.loc[challenger, "probability"] = (rows.loc[challenger, "probability"] + 0.3).clip(upper=0.99)

    result = judge(settings, rows, failures(challenger=30))

    assert result["action"] == "reject"
    assert [f.split(" ")[0] for f in result["guardrails_failed"]] == ["calibration", "error", "p95"]
    assert result["reason"] == "guardrail: the challenger's " + "; ".join(result["guardrails_failed"])


def test_evidence_for_the_approver_shows_the_operational_figures(settings):
    rows = scored({CHAMPION: 300, CHALLENGER: 300}, {CHAMPION: 2.0, CHALLENGER: 2.5})
    text = evaluation.evidence(judge(settings, rows, failures(challenger=3)))

    assert "| variant | scored | failed | error rate | p95 latency (ms) |" in text
    assert f"| {CHALLENGER} | 300 | 3 | 0.99% |" in text


@pytest.mark.property
@hsettings(max_examples=60, deadline=None)
@given(
    scored_a=st.integers(0, 2_000),
    failed_a=st.integers(0, 200),
    attempts_b=st.integers(0, 2_000),
    latency=st.floats(0.05, 500),
)
def test_the_operational_guardrails_never_fire_on_a_challenger_no_worse_than_the_champion(
    settings, scored_a, failed_a, attempts_b, latency
):
    # The challenger fails at most at the champion's rate and answers as fast: no operational guardrail may fire.
    attempts_a = scored_a + failed_a
    failed_b = failed_a * attempts_b // attempts_a if attempts_a else 0
    scored_b = attempts_b - failed_b
    ops = {
        CHAMPION: {
            "scored": scored_a,
            "failed": failed_a,
            "error_rate": failed_a / attempts_a if attempts_a else None,
            "latency_p95_ms": latency,
            "latency_rows": scored_a,
        },
        CHALLENGER: {
            "scored": scored_b,
            "failed": failed_b,
            "error_rate": failed_b / (scored_b + failed_b) if scored_b + failed_b else None,
            "latency_p95_ms": latency,
            "latency_rows": scored_b,
        },
    }
    arms = {a: evaluation.sequential.arm_stats([], []) for a in (CHAMPION, CHALLENGER)}

    assert evaluation.guardrails(settings, arms, ops) == []


# ---------------------------------------------------------------- A/B with both variants scoring every request


def paired_ab_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """An A/B experiment on the synthetic stream where the variant that did not answer a request scored it too:
    the champion a logistic regression trained on the old traffic, the challenger one trained on drifted traffic,
    both scoring the drifted stream; each request answered by one (50/50), with the other's score unserved."""
    from airloop.training import features
    from airloop.usecases.readmission import transform as tf
    from airloop.usecases.readmission.synthetic import generate
    from tests.specs import READMISSION

    def xy(rows: int, seed: int, drift: float):
        frame = tf.prepare(generate(rows, seed=seed, covariate_drift=drift, concept_drift=drift))
        return features.model_inputs(READMISSION, frame), features.target(READMISSION, frame).to_numpy()

    models = {
        alias: features.make_pipeline(READMISSION, "logistic_regression", {"C": 0.5}, 0).fit(*xy(6_000, s, d))
        for alias, s, d in ((CHAMPION, 1, 0.0), (CHALLENGER, 2, 1.0))
    }
    x, y = xy(n, seed + 10, 1.0)
    served = np.random.default_rng(seed).random(len(y)) < 0.5
    frames = [
        pd.DataFrame(
            {
                "request_id": [f"r{i}" for i in range(len(y))],
                "variant": alias,
                "model_version": VERSIONS[alias],
                "probability": model.predict_proba(x)[:, 1],
                "shadow": ~served if alias == CHALLENGER else served,
                "latency_ms": 2.0,
                "outcome": y,
            }
        )
        for alias, model in models.items()
    ]
    return pd.concat(frames, ignore_index=True)


def test_scoring_both_variants_pairs_the_ab_test_and_saves_labelled_rows_at_equal_power(settings):
    rows = paired_ab_rows(3_000)
    answered_only = rows[~rows["shadow"]]

    paired = evaluation.look(settings, rows, "1", "2", paired=False)
    unpaired = evaluation.look(settings, answered_only, "1", "2", paired=False)

    assert paired["paired"] and not unpaired["paired"] and unpaired["variance_reduction"] is None
    # The arms are still the requests each variant answered: the unserved scores only pair the difference.
    assert paired["arms"] == unpaired["arms"]
    saved = paired["variance_reduction"]["rows_saved_at_equal_power"]
    assert saved > 0.5, paired["variance_reduction"]
    assert paired["difference"]["variance"] < unpaired["difference"]["variance"]
    assert np.sign(paired["difference"]["estimate"]) == np.sign(unpaired["difference"]["estimate"])


def test_the_plan_scores_every_record_by_both_variants_but_serves_each_by_one():
    import random

    from airloop.experiments.routing import RoutingConfig, plan

    config = RoutingConfig(experiment="x", weights={CHAMPION: 50, CHALLENGER: 50}, mode="ab")
    ids = [f"p{i}" for i in range(40)]

    both = plan(config, ids, {CHAMPION, CHALLENGER}, random.Random(0), score_both=True)
    alone = plan(config, ids, {CHAMPION, CHALLENGER}, random.Random(0))
    champion_only = plan(config, ids, {CHAMPION}, random.Random(0), score_both=True)

    assert both.served == alone.served and set(both.served) == {CHAMPION, CHALLENGER}
    assert both.groups[CHAMPION] == both.groups[CHALLENGER] == list(range(40))
    assert sorted(alone.groups[CHAMPION] + alone.groups[CHALLENGER]) == list(range(40))
    assert champion_only.groups == {CHAMPION: list(range(40))}


def test_each_look_says_how_many_outcomes_each_arm_got_from_which_source(settings):
    rows = scored({CHAMPION: 300, CHALLENGER: 100}, {CHAMPION: 2.0, CHALLENGER: 2.0})
    sources = np.array(["feedback_key"] * 250 + ["api_key"] * 40 + [None] * 10 + ["feedback_key"] * 99 + ["open"])
    result = evaluation.look(settings, rows.assign(outcome_source=sources), "1", "2", paired=False)

    assert result["outcome_sources"] == {
        CHAMPION: {"api_key": 40, "feedback_key": 250, "unknown": 10},
        CHALLENGER: {"feedback_key": 99, "open": 1},
    }
    # Rows joined from a log written before outcomes carried their source.
    assert evaluation.look(settings, rows, "1", "2", paired=False)["outcome_sources"][CHALLENGER] == {"unknown": 100}


# ---------------------------------------------------------------- judged per group, on real rows


@pytest.fixture(scope="module")
def real_scores(real_sample):
    """Half of the 3,000-row sample's patients: the champion (gradient boosting) and a retrain of the same config
    with another seed, each trained on the other half, scoring these encounters."""
    from airloop.data.records import prepare
    from airloop.data.sources import read_csv_bytes
    from airloop.training import features
    from airloop.training.split import group_split
    from tests.specs import READMISSION as spec

    frame = prepare(spec, read_csv_bytes(real_sample, spec)).reset_index(drop=True)
    parts = group_split(frame, spec.data.target.name, spec.data.entity, 0.5, 0.1, 42)
    train, test = frame.iloc[parts.train], frame.iloc[parts.test]
    x, y = features.model_inputs(spec, train), features.target(spec, train).to_numpy()
    params = {"learning_rate": 0.1, "max_leaf_nodes": 15, "max_iter": 200, "l2_regularization": 1.0}
    x_test = features.model_inputs(spec, test)
    scores = {
        seed: features.make_pipeline(spec, "hist_gradient_boosting", params, seed).fit(x, y).predict_proba(x_test)[:, 1]
        for seed in (42, 1)
    }
    return x_test, features.target(spec, test).to_numpy(), scores[42], scores[1]


def ab_rows(x: pd.DataFrame, y: np.ndarray, champion: np.ndarray, challenger: np.ndarray) -> pd.DataFrame:
    """An A/B test scoring every request by both variants (each answered by one), as the prediction log has it:
    the raw record of each request in ``record.*`` columns, the class at a threshold of 0.12."""
    served = np.random.default_rng(0).random(len(y)) < 0.5
    records = x.reset_index(drop=True).add_prefix("record.")
    frames = [
        pd.DataFrame(
            {
                "request_id": [f"r{i}" for i in range(len(y))],
                "variant": alias,
                "model_version": VERSIONS[alias],
                "probability": p,
                "predicted_class": (p >= 0.12).astype(int),
                "shadow": ~served if alias == CHALLENGER else served,
                "latency_ms": 2.0,
                "outcome": y,
            }
        ).join(records)
        for alias, p in ((CHAMPION, champion), (CHALLENGER, challenger))
    ]
    return pd.concat(frames, ignore_index=True)


def test_a_challenger_that_wins_overall_but_loses_an_age_band_is_not_promoted_and_the_band_is_named(
    settings, real_scores
):
    x, y, champion, _ = real_scores
    band = np.isin(x["age"].to_numpy(), ["[60-70)", "[70-80)"])
    challenger = np.clip(champion + 0.2 * y, 0, 1)  # better on average: it has seen more of the outcome ...
    reversed_scores = np.empty(band.sum())
    reversed_scores[np.argsort(champion[band])] = np.sort(champion[band])[::-1]
    challenger[band] = reversed_scores  # ... and ranks the patients aged 60-80 backwards

    result = evaluation.look(settings, ab_rows(x, y, champion, challenger), "1", "2", paired=False)

    assert result["paired"] and result["difference"]["estimate"] > 0  # the pooled metric favours the challenger
    assert result["action"] == "reject"
    assert "group gap: age_band=60-80: roc_auc" in result["reason"]
    assert result["groups"]["worst"]["level"] == "60-80" and result["groups"]["worst"]["gap"] < -0.2
    assert "Worst group of the challenger: age_band=60-80" in evaluation.evidence(result)


def test_a_retrained_challenger_gets_figures_per_arm_and_group_and_no_group_guardrail(settings, real_scores):
    x, y, champion, retrained = real_scores

    result = evaluation.look(settings, ab_rows(x, y, champion, retrained), "1", "2", paired=False)

    assert not [f for f in result["guardrails_failed"] if f.startswith("group gap")]
    judged = [g for g in result["groups"]["gaps"] if g["judged"]]
    assert len(judged) >= 4 and any(g["gap"] != 0 for g in judged)
    for alias in (CHAMPION, CHALLENGER):
        figures = result["groups"]["arms"][alias]
        assert set(figures) == {"age_band", "gender", "race", "admission_type_id"}
        answered = result["arms"][alias]["labelled"]
        assert sum(level["rows"] for level in figures["gender"].values()) == answered
        assert all(level["recall"] is None or 0 <= level["recall"] <= 1 for level in figures["age_band"].values())
