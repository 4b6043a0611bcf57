"""The dataset store publishes content-hashed versions atomically and never twice, on a local folder and on S3;
quarantine moves batches; a missing version is a final error naming where it was looked for."""

from __future__ import annotations

import re
import uuid

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.data.store import DatasetNotFound, DatasetStore, content_version, dataset_store, quarantine
from airloop.errors import FinalError
from airloop.storage import S3Options, Storage
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY


def frame(n: int = 5, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"encounter_id": range(offset, offset + n), "race": ["Caucasian"] * n})


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> Storage:
    """A runtime root on a local folder, then on a fresh bucket of the moto S3 server."""
    if request.param == "local":
        return Storage.from_url(tmp_path / "runtime")
    server = request.getfixturevalue("s3_server")
    bucket = f"airloop-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket)
    options = S3Options(endpoint_url=server.endpoint_url, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    return Storage.from_url(f"s3://{bucket}/runtime", options)


@pytest.fixture
def store(root) -> DatasetStore:
    return DatasetStore(root.child("datasets", "readmission"))


def test_publish_writes_data_metadata_and_latest(store):
    result = store.publish(frame(), {"source": "test://"})

    assert result.created
    assert result.url == store.url(result.version)
    assert store.latest() == result.version
    assert store.load().equals(frame())
    meta = store.metadata(result.version)
    assert meta["rows"] == 5 and meta["source"] == "test://" and meta["schema"]["race"] == "str"
    assert store.storage.walk_files() == [
        "LATEST",
        f"{result.version}/_MANIFEST.json",
        f"{result.version}/data.parquet",
        f"{result.version}/metadata.json",
    ]


def test_same_content_is_not_published_twice(store):
    first = store.publish(frame(), {"run": 1})

    second = store.publish(frame(), {"run": 2})

    assert not second.created and second.version == first.version
    assert store.versions() == [first.version]
    assert store.metadata(first.version)["run"] == 1


def test_a_publish_retried_by_the_run_that_wrote_it_completes_and_reports_it_new(store):
    older = store.publish(frame(offset=100), {"airflow_run_id": "earlier"}).version
    first = store.publish(frame(), {"airflow_run_id": "run-1"})
    store.storage.write_text(older + "\n", "LATEST")  # the first try died before it could point LATEST at it

    retried = store.publish(frame(), {"airflow_run_id": "run-1"})
    other_run = store.publish(frame(), {"airflow_run_id": "run-2"})

    assert retried.created and retried.version == first.version
    assert store.latest() == first.version
    assert not other_run.created


def test_new_content_is_a_new_version_and_becomes_latest(store):
    first = store.publish(frame(), {})

    second = store.publish(frame(offset=10), {})

    assert store.versions() == [first.version, second.version]
    assert store.latest() == second.version


def test_half_written_version_is_not_a_version(store):
    published = store.publish(frame(), {})
    half = content_version(frame(offset=10))
    store.storage.write_parquet(frame(offset=10), half, "data.parquet")  # crashed before its manifest/rename

    assert store.versions() == [published.version]
    assert not store.exists(half)
    with pytest.raises(DatasetNotFound):
        store.load(half)


def test_unknown_version_is_a_final_error_naming_the_url(store):
    with pytest.raises(DatasetNotFound, match=re.escape(f"'nope' not found at {store.url()}")) as caught:
        store.load("nope")

    assert isinstance(caught.value, FinalError) and isinstance(caught.value, LookupError)


def test_empty_store_says_where_it_looked(store):
    assert store.latest() is None and store.versions() == []
    with pytest.raises(DatasetNotFound, match=re.escape(f"no dataset published at {store.url()}")):
        store.load()


def test_quarantine_moves_the_batch_beside_its_result(root):
    staging = root.child("staging", "run-1")
    staging.write_parquet(frame(), "raw.parquet")
    target = root.child("quarantine", "readmission")

    record = quarantine(target, staging, "raw.parquet", {"success": False}, "expect_x(race) saw ['Martian']", "raw")

    assert not staging.exists("raw.parquet")
    (name,) = target.published_dirs()
    assert record.url == target.url(name) and name.split("-")[1] == "raw"
    assert target.read_parquet(name, "raw.parquet").equals(frame())
    assert target.read_json(name, "validation_result.json") == {"success": False}
    assert "Martian" in target.read_text(name, "reason.txt")
    assert target.read_json(name, "record.json") == {"url": record.url, "reason": record.reason}


def test_dataset_store_of_settings_is_the_configured_dataset_on_the_runtime_storage(tmp_path, monkeypatch):
    from airloop.settings import Settings

    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("AIRLOOP_DATA__DATASET_NAME", "other")

    store = dataset_store(Settings())

    assert store.url() == (tmp_path / "datasets" / "other").as_posix()


@pytest.mark.property
@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30), st.randoms())
def test_version_depends_on_content_not_on_index(values, rnd):
    a = pd.DataFrame({"x": values})
    shuffled_index = a.copy()
    shuffled_index.index = rnd.sample(range(10**6), len(values))

    assert content_version(a) == content_version(shuffled_index)
    assert content_version(a) != content_version(pd.DataFrame({"x": [*values, 1]}))
