"""The compiled fast path: the registered Pipeline's probabilities without pandas, and None for shapes it does not know.

The registered pipelines come from the serving tests' session registry (trained by airloop's own code on synthetic
encounters), so a full run trains them once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from airloop.training.compiled import compile_pipeline
from tests.serving.conftest import CHALLENGER_VERSION, CHAMPION_VERSION, encounters, session_registry
from tests.specs import READMISSION

# Free-text fields of the raw record (the age bucket has a closed domain the service enforces, so it is left alone).
STRINGS = ["race", "gender", "weight", "payer_code", "medical_specialty", "diag_1", "diag_2", "diag_3", "insulin"]
NULLABLE = ("race", "payer_code", "medical_specialty", "diag_1")
PIPELINES = pytest.mark.parametrize(
    "version", [CHAMPION_VERSION, CHALLENGER_VERSION], ids=["hist_gradient_boosting", "logistic_regression"]
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return session_registry(tmp_path_factory)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """3,000 unseen raw encounters as request records, with unseen values, unseen ids and nulls sprinkled in."""
    inputs, _ = encounters(3000, seed=5)
    records = inputs.to_dict("records")
    for i, record in enumerate(records):
        if i % 5 == 0:
            record[STRINGS[i % len(STRINGS)]] = f"never-seen-{i}"
        if i % 7 == 0:
            record[NULLABLE[i % len(NULLABLE)]] = None
        if i % 11 == 0:
            record[STRINGS[(3 * i) % len(STRINGS)]] = None
        if i % 13 == 0:
            record["num_medications"] = 400  # far outside anything seen in training
        if i % 17 == 0:
            record["admission_source_id"] = 99  # an id no training row had
    return records


def pipeline_proba(pipeline: Pipeline, records: list[dict]) -> np.ndarray:
    """The Pipeline on a frame built from request records, as the service does without the fast path."""
    return pipeline.predict_proba(pd.DataFrame.from_records(records, columns=READMISSION.data.input_columns))[:, 1]


@PIPELINES
def test_compiled_fast_path_gives_the_registered_pipelines_probabilities(registry, records, version):
    pipeline = registry.pipeline(version)

    compiled = compile_pipeline(pipeline)

    assert compiled is not None
    np.testing.assert_allclose(compiled.predict_proba(records), pipeline_proba(pipeline, records), rtol=0, atol=1e-9)


@PIPELINES
def test_compiled_fast_path_scores_single_records_like_the_pipeline(registry, records, version):
    pipeline = registry.pipeline(version)
    compiled = compile_pipeline(pipeline)
    sample = records[:: len(records) // 40]

    singles = np.concatenate([compiled.predict_proba([r]) for r in sample])

    np.testing.assert_allclose(singles, pipeline_proba(pipeline, sample), rtol=0, atol=1e-9)


@PIPELINES
def test_a_null_field_scores_like_the_question_mark_the_published_file_uses(registry, records, version):
    compiled = compile_pipeline(registry.pipeline(version))
    plain = records[:300]

    nulls = compiled.predict_proba([{**r, **dict.fromkeys(NULLABLE)} for r in plain])
    missing = compiled.predict_proba([{**r, **dict.fromkeys(NULLABLE, "?")} for r in plain])

    np.testing.assert_array_equal(nulls, missing)


@PIPELINES
def test_compiled_frame_path_gives_the_pipelines_probabilities_and_the_records_paths(registry, records, version):
    pipeline = registry.pipeline(version)
    compiled = compile_pipeline(pipeline)
    frame = pd.DataFrame.from_records(records, columns=READMISSION.data.input_columns)

    batch = compiled.predict_proba_frame(frame)

    np.testing.assert_allclose(batch, pipeline_proba(pipeline, records), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(compiled.frame_matrix(frame), compiled.matrix(records))


def test_compiled_fast_path_of_no_records_is_empty(registry):
    assert compile_pipeline(registry.pipeline(CHAMPION_VERSION)).predict_proba_frame(
        pd.DataFrame(columns=READMISSION.data.input_columns)
    ).shape == (0,)

    assert compile_pipeline(registry.pipeline(CHAMPION_VERSION)).predict_proba([]).shape == (0,)


NUMERIC, CATEGORICAL = ["n1", "n2"], ["c1", "c2"]


def _categories(**onehot) -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(sparse_output=False, **onehot)),
        ]
    )


def _preprocess(num=None, cat=None, **column_transformer) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", StandardScaler() if num is None else num, NUMERIC),
            ("cat", _categories(handle_unknown="ignore") if cat is None else cat, CATEGORICAL),
        ],
        **column_transformer,
    )


def _model(preprocess, model=None) -> Pipeline:
    return Pipeline([("pre", preprocess), ("model", model or LogisticRegression())])


UNKNOWN_SHAPES = [
    pytest.param(lambda: _preprocess(), id="not-a-pipeline"),
    pytest.param(
        lambda: Pipeline([("pre", _preprocess()), ("again", FunctionTransformer()), ("model", LogisticRegression())]),
        id="three-steps",
    ),
    pytest.param(lambda: _model(FunctionTransformer(lambda f: f[NUMERIC])), id="no-column-transformer"),
    pytest.param(
        lambda: _model(_preprocess(num=Pipeline([("i", SimpleImputer()), ("s", StandardScaler())]))),
        id="numeric-imputer",
    ),
    pytest.param(
        lambda: _model(
            ColumnTransformer(
                [("cat", _categories(handle_unknown="ignore"), CATEGORICAL), ("num", "passthrough", NUMERIC)]
            )
        ),
        id="categories-before-numbers",
    ),
    pytest.param(
        lambda: _model(_preprocess(cat=_categories(drop="first", handle_unknown="ignore"))),
        id="encoder-drops-a-column",
    ),
    pytest.param(
        lambda: _model(
            _preprocess(
                cat=make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
            )
        ),
        id="other-imputer",
    ),
    pytest.param(lambda: _model(_preprocess(remainder="passthrough")), id="remainder-passthrough"),
    pytest.param(lambda: _model(_preprocess(), RidgeClassifier()), id="no-predict-proba"),
    pytest.param(
        lambda: _model(_preprocess(cat=_categories(handle_unknown="error"))),
        id="encoder-errors-on-unknown",
    ),
]


@pytest.fixture(scope="module")
def small_frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "n1": rng.normal(size=80),
            "n2": rng.normal(size=80),
            "c1": rng.choice(["a", "b", "c"], size=80),
            "c2": rng.choice(["x", "y"], size=80),
            "extra": rng.normal(size=80),
        }
    )
    return frame, (frame["n1"] > 0).to_numpy().astype(int)


@pytest.mark.parametrize("build", UNKNOWN_SHAPES)
def test_compile_pipeline_declines_a_pipeline_shape_it_does_not_know(small_frame, build):
    frame, target = small_frame
    model = build().fit(frame, target)

    assert compile_pipeline(model) is None


def test_compile_pipeline_accepts_the_known_shape_built_by_hand(small_frame):
    frame, target = small_frame
    model = _model(_preprocess()).fit(frame, target)
    records = frame.assign(c1=["a", "zzz", None, "b"] * 20).to_dict("records")

    compiled = compile_pipeline(model)

    assert compiled is not None
    np.testing.assert_allclose(
        compiled.predict_proba(records), model.predict_proba(pd.DataFrame.from_records(records))[:, 1], atol=1e-12
    )
    np.testing.assert_allclose(
        compiled.predict_proba_frame(pd.DataFrame.from_records(records)),
        model.predict_proba(pd.DataFrame.from_records(records))[:, 1],
        atol=1e-12,
    )
