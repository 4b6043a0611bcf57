"""The dataset store publishes content-hashed versions atomically and never twice; quarantine moves batches."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airloop.data.store import DatasetNotFound, DatasetStore, content_version, quarantine


def frame(n: int = 5, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"encounter_id": range(offset, offset + n), "race": ["Caucasian"] * n})


def test_publish_writes_data_metadata_and_latest(tmp_path):
    store = DatasetStore(tmp_path)

    result = store.publish(frame(), {"source": "test://"})

    assert result.created
    assert store.latest() == result.version
    assert store.load().equals(frame())
    meta = store.metadata(result.version)
    assert meta["rows"] == 5 and meta["source"] == "test://" and meta["schema"]["race"] == "str"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_same_content_is_not_published_twice(tmp_path):
    store = DatasetStore(tmp_path)
    first = store.publish(frame(), {"run": 1})

    second = store.publish(frame(), {"run": 2})

    assert not second.created and second.version == first.version
    assert store.versions() == [first.version]
    assert store.metadata(first.version)["run"] == 1


def test_new_content_is_a_new_version_and_becomes_latest(tmp_path):
    store = DatasetStore(tmp_path)
    first = store.publish(frame(), {})

    second = store.publish(frame(offset=10), {})

    assert store.versions() == [first.version, second.version]
    assert store.latest() == second.version


def test_unknown_version_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFound, match="nope"):
        DatasetStore(tmp_path).load("nope")


def test_quarantine_moves_the_batch_beside_its_result(tmp_path):
    batch = tmp_path / "raw.parquet"
    frame().to_parquet(batch)

    record = quarantine(tmp_path / "q", batch, {"success": False}, "expect_x(race) saw ['Martian']", "raw")

    assert not batch.exists()
    moved = tmp_path / "q" / record.path.rsplit("/", 1)[-1]
    assert (moved / "raw.parquet").is_file()
    assert json.loads((moved / "validation_result.json").read_text()) == {"success": False}
    assert "Martian" in (moved / "reason.txt").read_text()


@pytest.mark.property
@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30), st.randoms())
def test_version_depends_on_content_not_on_index(values, rnd):
    a = pd.DataFrame({"x": values})
    shuffled_index = a.copy()
    shuffled_index.index = rnd.sample(range(10**6), len(values))

    assert content_version(a) == content_version(shuffled_index)
    assert content_version(a) != content_version(pd.DataFrame({"x": [*values, 1]}))
