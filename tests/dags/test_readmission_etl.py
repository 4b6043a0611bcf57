"""readmission_etl run for real with dag.test(): publishes once, is idempotent, and quarantines a corrupt batch."""

from __future__ import annotations

import json

import pytest

from tests.dags.conftest import run_dag

pytestmark = pytest.mark.dag

CONF = {"source": "synthetic", "rows": 3000, "seed": 11}


@pytest.fixture(scope="module")
def store(airflow_db):
    from airloop import etl
    from airloop.settings import get_settings

    get_settings.cache_clear()
    return etl.dataset_store(get_settings())


def test_first_run_publishes_exactly_one_version_with_metadata(store):
    states = run_dag("readmission_etl", CONF)

    assert set(states.values()) == {"success"}, states
    assert len(store.versions()) == 1
    version = store.latest()
    meta = store.metadata(version)
    assert meta["version"] == version
    assert meta["rows"] == len(store.load(version)) > 2500
    assert meta["source"].startswith("synthetic://")
    assert "readmitted_30d" in meta["schema"]
    assert meta["created_at"]
    assert [v["suite"] for v in meta["validation"]] == ["readmission_raw", "readmission_features"]
    assert all(v["success"] and v["result_id"] for v in meta["validation"])


def test_second_run_on_same_data_publishes_nothing(store):
    before = store.versions()

    states = run_dag("readmission_etl", CONF)

    assert states["publish"] == "skipped", states
    assert states["validate_features"] == "success"
    assert store.versions() == before


def test_corrupt_batch_is_quarantined_not_published(store, tmp_path):
    from airloop.data.synthetic import generate
    from airloop.settings import get_settings

    frame = generate(3000, seed=5)
    frame.loc[3, "race"] = "Martian"
    frame.loc[7, "encounter_id"] = frame.loc[8, "encounter_id"]
    corrupt = tmp_path / "diabetic_data.csv"
    frame.to_csv(corrupt, index=False, lineterminator="\r\n")
    before = store.versions()
    quarantine_root = get_settings().quarantine_dir / get_settings().data.dataset_name
    quarantined_before = set(quarantine_root.glob("*")) if quarantine_root.exists() else set()

    states = run_dag("readmission_etl", {"source": "file", "path": str(corrupt)})

    assert states["validate_raw"] == "failed", states
    assert states["publish"] == "upstream_failed", states
    assert store.versions() == before
    new = sorted(set(quarantine_root.glob("*")) - quarantined_before)
    assert len(new) == 1
    assert (new[0] / "raw.parquet").is_file()
    result = json.loads((new[0] / "validation_result.json").read_text())
    assert result["success"] is False
    reason = (new[0] / "reason.txt").read_text()
    assert "expect_column_values_to_be_in_set(race) saw 1 unexpected values, e.g. ['Martian']" in reason
    assert "expect_column_values_to_be_unique(encounter_id)" in reason
