"""Batch scoring on a real registry (the serving tests' session models) and real storage: the output equals the
registered Pipeline's probabilities, nothing is lost or written twice, a failure publishes nothing; MLflow lineage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from airloop.data.store import DatasetNotFound, DatasetStore
from airloop.errors import SourceError
from airloop.scoring import batch
from airloop.usecases.readmission import schema
from tests.serving.conftest import CHALLENGER_VERSION, CHAMPION_VERSION, THRESHOLDS, session_registry
from tests.specs import READMISSION

INTEGERS = READMISSION.data.integer_columns

ROWS = 5000


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return session_registry(tmp_path_factory)


def settings_for(home, registry, **overrides):
    from airloop.settings import Settings

    uri = registry.tracking_uri
    return Settings(home=home, mlflow={"tracking_uri": uri, "registry_uri": uri}, **overrides)


@pytest.fixture(scope="module")
def published(tmp_path_factory, registry):
    """A home with one published dataset version of ROWS synthetic encounters (as the ETL publishes them)."""
    from airloop.usecases.readmission.synthetic import generate
    from airloop.usecases.readmission.transform import prepare

    home = tmp_path_factory.mktemp("batch-home")
    # The tests' input files are in their own tmp_path folders: that is where a run's `path` may point.
    settings = settings_for(home, registry, data={"access": {"file_roots": [str(tmp_path_factory.getbasetemp())]}})
    frame = prepare(generate(ROWS, seed=31))
    result = DatasetStore(settings.layout.datasets(settings.data.dataset_name)).publish(frame, {"source": "test"})
    return settings, result.version, frame


def expected(registry, version: str, inputs: pd.DataFrame) -> pd.Series:
    """The registered Pipeline's probabilities, as MLflow loads it."""
    return pd.Series(registry.pipeline(version).predict_proba(inputs.loc[:, READMISSION.data.input_columns])[:, 1])


def test_a_published_version_is_scored_in_chunks_with_the_champion_like_the_registered_pipeline(published, registry):
    settings, version, frame = published

    job = batch.resolve(settings, {"chunk_rows": 700}, "manual__1")
    result = batch.score(settings, job)

    assert job["model_version"] == CHAMPION_VERSION and job["model_alias"] == "champion"
    assert job["input_version"] == version and job["output"] == f"dataset-{version}--readmission-v1"
    assert result["created"] and result["scorer"] == "compiled"
    rows = len(frame)  # ROWS generated, less the encounters that cannot be readmitted
    assert (result["rows"], result["rejected_rows"], result["chunks"]) == (rows, 0, 8)
    storage = batch.output_storage(settings).child(job["output"])
    parts = sorted(n for n in storage.listdir() if n.startswith("part-"))
    assert [len(storage.read_parquet(p)) for p in parts] == [700] * 7 + [rows - 7 * 700]
    out = batch.read_output(settings, job["output"])
    assert list(out.columns) == batch.output_columns(READMISSION)
    pd.testing.assert_frame_equal(out[list(schema.ID_COLUMNS)], frame[list(schema.ID_COLUMNS)])
    probability = expected(registry, CHAMPION_VERSION, frame)
    pd.testing.assert_series_equal(out["probability"], probability, check_names=False, rtol=0, atol=1e-9)
    assert (out["predicted_class"] == (probability >= THRESHOLDS[CHAMPION_VERSION])).all()
    assert set(out["model_version"].astype(str)) == {CHAMPION_VERSION}
    assert result["positives"] == int(out["predicted_class"].sum())


def test_scoring_again_writes_nothing_and_lineage_is_logged_once(published, registry):
    from mlflow import MlflowClient

    settings, version, frame = published
    job = batch.resolve(settings, {}, "manual__2")
    first = batch.score(settings, job)
    folder = batch.output_storage(settings).child(job["output"])
    before = {n: folder.fs.get_file_info(folder.path(n)).mtime for n in folder.listdir()}

    again = batch.score(settings, batch.resolve(settings, {}, "scheduled__3"))  # another run, same version and model
    lineage = batch.record_lineage(settings, job, first)
    repeated = batch.record_lineage(settings, job, again)

    assert not again["created"] and again["job"]["output"] == job["output"]
    assert {n: folder.fs.get_file_info(folder.path(n)).mtime for n in folder.listdir()} == before
    assert lineage["created"] and not repeated["created"] and repeated["run_id"] == lineage["run_id"]
    assert batch.lineage_link(settings, job["output"]) == lineage["url"] and lineage["run_id"] in lineage["url"]
    assert batch.lineage_link(settings, "never-scored") is None
    client = MlflowClient(tracking_uri=registry.tracking_uri)
    experiment = client.get_experiment_by_name(batch.experiment_name(settings))
    runs = client.search_runs([experiment.experiment_id], f"tags.`{batch.TAG_OUTPUT}` = '{job['output']}'")
    assert [r.info.run_id for r in runs] == [lineage["run_id"]]
    run = client.get_run(lineage["run_id"])
    assert run.data.params["input_version"] == version and run.data.params["model_uri"] == "models:/readmission/1"
    assert run.data.tags[batch.TAG_OUTPUT_URL] == job["output_url"] and run.data.metrics["rows_scored"] == len(frame)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == version and dataset_input.dataset.name == f"readmission@{version}"
    model_id = batch.logged_model_id(client.get_model_version("readmission", CHAMPION_VERSION))
    assert model_id.startswith("m-") and [m.model_id for m in run.inputs.model_inputs] == [model_id]


@pytest.mark.parametrize(("model_version", "top"), [(CHAMPION_VERSION, 3), (CHALLENGER_VERSION, 50)])
def test_explain_top_writes_each_rows_top_factors_by_the_version_that_scored_it(
    published, registry, model_version, top
):
    import numpy as np

    settings, _, frame = published
    params = {"model_version": model_version, "chunk_rows": 2500, "explain_top": top}

    job = batch.resolve(settings, params, "explained__1")
    result = batch.score(settings, job)

    assert job["output"].endswith(f"--readmission-v{model_version}-top{top}") and result["explain_top"] == top
    out = batch.read_output(settings, job["output"])
    assert list(out.columns) == batch.output_columns(READMISSION, explained=True) == result["columns"]
    probability = expected(registry, model_version, frame)
    np.testing.assert_allclose(1 / (1 + np.exp(-out["score"])), probability, rtol=0, atol=1e-9)
    shown = out["factors"].map(lambda factors: [f["contribution"] for f in factors])
    assert shown.map(lambda c: [abs(x) for x in c] == sorted((abs(x) for x in c), reverse=True)).all()
    if top >= 49:  # every factor of readmission's linear version is written: they add up to the score exactly
        np.testing.assert_allclose(out["base_value"] + shown.map(sum), out["score"], rtol=0, atol=1e-9)
    else:
        assert set(shown.map(len)) == {top}
    first = out["factors"].iloc[0][0]
    assert first["label"].startswith(first["factor"])
    lineage = batch.record_lineage(settings, job, result)
    assert registry.client().get_run(lineage["run_id"]).data.params["explain_top"] == str(top)
    with pytest.raises(batch.BatchInputError, match=r"explain_top: must be between 0 and 50"):
        batch.resolve(settings, {"explain_top": 51}, "r")


def raw_file(tmp_path, frame: pd.DataFrame) -> str:
    path = tmp_path / "encounters.csv"
    frame.to_csv(path, index=False, lineterminator="\r\n")
    return str(path)


def test_a_file_with_bad_records_scores_the_rest_and_keeps_the_bad_ones_with_their_reason(
    published, registry, tmp_path
):
    settings, _, frame = published
    raw = frame.loc[:, list(schema.RAW_COLUMNS)].head(1000).astype(str)
    raw.loc[3, "num_lab_procedures"] = "many"
    raw.loc[10, "age"] = "[100-110)"
    raw.loc[11, ["age", "encounter_id"]] = ["[200-210)", ""]
    good = raw.drop(index=[3, 10, 11])

    job = batch.resolve(
        settings, {"source": "file", "path": raw_file(tmp_path, raw), "model_version": "2", "chunk_rows": 300}, "r1"
    )
    result = batch.score(settings, job)

    assert job["output"] == "file-r1--readmission-v2" and job["input_uri"].startswith("file://")
    assert (result["rows"], result["rejected_rows"], result["chunks"]) == (997, 3, 4)
    out = batch.read_output(settings, job["output"])
    probability = expected(registry, CHALLENGER_VERSION, frame.head(1000).drop(index=[3, 10, 11]))
    assert out["encounter_id"].tolist() == good["encounter_id"].astype(int).tolist()
    pd.testing.assert_series_equal(out["probability"], probability, check_names=False, rtol=0, atol=1e-9)
    rejected = batch.read_rejected(settings, job["output"])
    assert rejected[batch.REASON].tolist() == [
        "num_lab_procedures: not an integer",
        "age: not one of the model's values",
        "encounter_id: not an integer; age: not one of the model's values",
    ]
    assert rejected["num_lab_procedures"].tolist()[0] == "many"  # the record as it came


def test_a_source_failing_mid_way_publishes_nothing_and_a_retry_publishes_it_whole(published, registry, tmp_path):
    settings, _, frame = published
    raw = frame.loc[:, list(schema.RAW_COLUMNS)].head(900)
    path = Path(raw_file(tmp_path, raw))
    good_bytes = path.read_bytes()
    lines = good_bytes.split(b"\r\n")
    lines[700] += b",an,extra,field"  # the third chunk of 300 cannot be parsed
    path.write_bytes(b"\r\n".join(lines))
    job = batch.resolve(settings, {"source": "file", "path": str(path), "chunk_rows": 300}, "r2")

    with pytest.raises(SourceError, match="not a readable CSV"):
        batch.score(settings, job)

    outputs = batch.output_storage(settings)
    assert not outputs.is_published(job["output"])
    assert not [n for n in outputs.listdir() if job["output"] in n]  # no half-written folder left behind
    path.write_bytes(good_bytes)
    assert batch.score(settings, job)["rows"] == 900 and outputs.is_published(job["output"])


def test_what_cannot_be_scored_is_refused_naming_the_parameter(published, tmp_path):
    settings, _, frame = published
    no_age = tmp_path / "no-age.csv"
    frame.drop(columns=["age"]).head(50).to_csv(no_age, index=False)

    with pytest.raises(batch.BatchInputError, match=r"model_version: 'readmission' has no version '9'"):
        batch.resolve(settings, {"model_version": "9"}, "r")
    with pytest.raises(batch.BatchInputError, match=r"source: 'ftp' is not one of"):
        batch.resolve(settings, {"source": "ftp"}, "r")
    with pytest.raises(DatasetNotFound, match=r"dataset_version: 'nope' is not published"):
        batch.resolve(settings, {"dataset_version": "nope"}, "r")
    with pytest.raises(batch.BatchInputError, match=r"chunk_rows: must be at least 1"):
        batch.resolve(settings, {"chunk_rows": -5}, "r")
    job = batch.resolve(settings, {"source": "file", "path": str(no_age)}, "r3")
    with pytest.raises(batch.BatchInputError, match=r"lacks the column\(s\) the model needs: age"):
        batch.score(settings, job)
    assert not batch.output_storage(settings).is_published(job["output"])


def test_without_a_champion_the_job_says_so(tmp_path, registry):
    from airloop.settings import Settings

    settings = Settings(home=tmp_path)  # an empty registry of its own

    with pytest.raises(batch.BatchInputError, match=r"model_version: model 'readmission' has no 'champion' version"):
        batch.resolve(settings, {"source": "synthetic"}, "r")


def test_on_an_s3_root_the_version_is_read_and_the_output_published_in_the_bucket(
    published, registry, s3_server, monkeypatch
):
    import uuid

    from tests.s3_server import ACCESS_KEY, SECRET_KEY

    _, _, frame = published
    bucket = f"airloop-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    settings = settings_for(
        published[0].home, registry, storage={"url": f"s3://{bucket}/prod", "s3_endpoint_url": s3_server.endpoint_url}
    )
    small = frame.head(1500)
    version = DatasetStore(settings.layout.datasets("readmission")).publish(small, {"source": "test"}).version

    job = batch.resolve(settings, {"chunk_rows": 400}, "s3-run")
    leftover = batch.output_storage(settings).child(job["output"])
    for index in range(6):  # an earlier attempt, killed after six parts of 250 rows: invisible, and must not count
        leftover.write_bytes(b"half of an attempt", batch.part_name(index))
    result = batch.score(settings, job)

    assert job["input_uri"] == f"s3://{bucket}/prod/datasets/readmission/{version}"
    assert job["output_url"] == f"s3://{bucket}/prod/batch-scores/readmission/{job['output']}"
    assert (result["rows"], result["chunks"]) == (1500, 4)
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="prod/batch-scores/")
    keys = {o["Key"] for o in listed["Contents"] if not o["Key"].endswith("/")}  # not pyarrow's folder markers
    prefix = f"prod/batch-scores/readmission/{job['output']}"
    assert keys == {f"{prefix}/{n}" for n in ("_MANIFEST.json", "metadata.json", *map(batch.part_name, range(4)))}
    out = batch.read_output(settings, job["output"])
    pd.testing.assert_series_equal(
        out["probability"], expected(registry, CHAMPION_VERSION, small), check_names=False, rtol=0, atol=1e-9
    )


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        (
            pd.Series(["12", " 7", "+3", "-2", "1e3", "12.0", "inf", "", "99999999999999999999", "x"], dtype="str"),
            [False, False, False, False, True, True, True, True, True, True],
        ),
        (pd.Series([1.0, 2.5, float("nan"), float("inf"), 2.0**60]), [False, True, True, True, True]),
        (pd.Series([1, None, 3], dtype="Int64"), [False, True, False]),
        (pd.Series([4, 5], dtype="int64"), [False, False]),
        (pd.Series([1, "2", None, 3.5], dtype=object), [False, False, True, True]),
    ],
    ids=["text", "float", "nullable", "int64", "object"],
)
def test_only_exact_integers_pass_and_none_is_rounded(values, bad):
    numbers, refused = batch._integers(values)

    assert refused.tolist() == bad
    assert numbers.dtype == "int64"
    assert numbers[~refused].tolist() == [int(float(v)) for v in values[~refused]]


def test_records_refused_for_integers_are_kept_and_ids_never_rounded():
    from airloop.usecases.readmission.synthetic import generate

    raw = generate(6, seed=3).drop(columns=["readmitted"]).astype(str)
    raw.loc[0, "encounter_id"] = "99999999999999999999"  # beyond int64: refused, not written as a wrong id
    raw.loc[1, "num_medications"] = "inf"
    raw.loc[2, "encounter_id"] = "123456789012345678"  # 18 digits: kept exactly
    columns = READMISSION.data.input_columns

    good, refused = batch.split_scorable(raw, columns, {"age": list(schema.AGE_BUCKETS)}, INTEGERS, "file:///in.csv")

    assert good["encounter_id"].tolist()[0] == 123456789012345678 and len(good) == 4
    assert refused[batch.REASON].tolist() == ["encounter_id: not an integer", "num_medications: not an integer"]
    assert refused["encounter_id"].tolist()[0] == "99999999999999999999"
    with pytest.raises(batch.BatchInputError, match=r"file:///in\.csv lacks the column\(s\) the model needs: age"):
        batch.split_scorable(raw.drop(columns=["age"]), columns, {}, INTEGERS, "file:///in.csv")


def test_an_input_whose_records_are_all_refused_or_that_is_empty_publishes_an_empty_output(published, tmp_path):
    settings, _, frame = published
    raw = frame.loc[:, list(schema.RAW_COLUMNS)].head(10).astype(str).assign(age="[300-310)")
    header_only = tmp_path / "header-only.csv"
    header_only.write_text(",".join(schema.RAW_COLUMNS) + "\r\n")

    refused = batch.score(settings, batch.resolve(settings, {"source": "file", "path": raw_file(tmp_path, raw)}, "a"))
    empty = batch.score(settings, batch.resolve(settings, {"source": "file", "path": str(header_only)}, "b"))

    assert (refused["rows"], refused["rejected_rows"], refused["mean_probability"]) == (0, 10, None)
    assert len(batch.read_rejected(settings, refused["job"]["output"])) == 10
    assert len(batch.read_output(settings, refused["job"]["output"])) == 0
    assert (empty["rows"], empty["rejected_rows"]) == (0, 0)
    assert list(batch.read_output(settings, empty["job"]["output"]).columns) == batch.output_columns(READMISSION)


def test_a_published_version_lacking_a_column_the_model_needs_is_refused_naming_it(published, tmp_path):
    settings, _, frame = published
    store = DatasetStore(settings.layout.datasets(settings.data.dataset_name))
    version = store.publish(frame.drop(columns=["num_medications"]).head(100), {"source": "test"}).version

    job = batch.resolve(settings, {"dataset_version": version}, "r4")
    with pytest.raises(batch.BatchInputError, match=rf"{version}/data\.parquet lacks .*: num_medications"):
        batch.score(settings, job)


def test_a_lineage_run_killed_before_it_finished_is_not_taken_for_the_logged_one(published, registry):
    from mlflow import MlflowClient

    settings, version, _ = published
    job = batch.resolve(settings, {"dataset_version": version, "model_version": "2"}, "killed")
    result = batch.score(settings, job)
    client = MlflowClient(tracking_uri=registry.tracking_uri)
    from airloop.registry.client import ensure_experiment

    experiment_id = ensure_experiment(client, batch.experiment_name(settings), settings.artifact_location)
    killed = client.create_run(experiment_id, tags={batch.TAG_OUTPUT: job["output"]})  # tagged, never finished

    lineage = batch.record_lineage(settings, job, result)

    assert lineage["created"] and lineage["run_id"] != killed.info.run_id
    assert batch.find_lineage(settings, job["output"]) == lineage["run_id"]
