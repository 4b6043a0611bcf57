"""readmission_etl run for real with dag.test(): publishes once, is idempotent, and quarantines a corrupt batch."""

from __future__ import annotations

import pytest

from tests.dags.conftest import run_dag

pytestmark = pytest.mark.dag

CONF = {"source": "synthetic", "rows": 3000, "seed": 11}


@pytest.fixture(scope="module")
def store(airflow_db):
    from airloop.data.store import dataset_store
    from airloop.settings import get_settings

    get_settings.cache_clear()
    return dataset_store(get_settings())


def test_first_run_publishes_exactly_one_version_with_metadata(store):
    from airloop.usecases.readmission import schema

    states = run_dag("readmission_etl", CONF)

    assert set(states.values()) == {"success"}, states
    assert len(store.versions()) == 1
    version = store.latest()
    meta = store.metadata(version)
    assert meta["version"] == version
    assert meta["rows"] == len(store.load(version)) > 2500
    assert meta["source"].startswith("synthetic://")
    assert list(store.load(version).columns) == [*schema.RAW_COLUMNS, "readmitted_30d"]  # encounters as recorded
    assert meta["schema"]["weight"] == "str" and "diag_1_group" not in meta["schema"]
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
    from airloop.settings import get_settings
    from airloop.usecases.readmission.synthetic import generate

    frame = generate(3000, seed=5)
    frame.loc[3, "race"] = "Martian"
    frame.loc[7, "encounter_id"] = frame.loc[8, "encounter_id"]
    corrupt = get_settings().home / "incoming" / f"{tmp_path.name}.csv"  # the folder a run's `path` may name
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(corrupt, index=False, lineterminator="\r\n")
    before = store.versions()
    quarantine = get_settings().layout.quarantine(get_settings().data.dataset_name)
    quarantined_before = set(quarantine.published_dirs())

    states = run_dag("readmission_etl", {"source": "file", "path": str(corrupt)})

    assert states["validate_raw"] == "failed", states
    assert states["publish"] == "upstream_failed", states
    assert store.versions() == before
    (new,) = set(quarantine.published_dirs()) - quarantined_before
    assert quarantine.is_file(new, "raw.parquet")
    assert quarantine.read_json(new, "validation_result.json")["success"] is False
    reason = quarantine.read_text(new, "reason.txt")
    assert "expect_column_values_to_be_in_set(race) saw 1 unexpected values, e.g. ['Martian']" in reason
    assert "expect_column_values_to_be_unique(encounter_id)" in reason


@pytest.mark.security
def test_a_path_param_outside_the_data_fails_extract_at_once_and_reads_nothing(store, tmp_path):
    """The attack of issue 20: a user who may trigger the ETL names Airflow's password file as the source."""
    from airloop.settings import get_settings

    secret = tmp_path / "simple_auth_manager_passwords.json.generated"
    secret.write_text('{"admin": "not-to-be-read"}')
    quarantine = get_settings().layout.quarantine(get_settings().data.dataset_name)
    quarantined_before, before = set(quarantine.published_dirs()), store.versions()

    states = run_dag("readmission_etl", {"source": "file", "path": str(secret)})

    assert states["extract"] == "failed", states
    assert states["validate_raw"] == "upstream_failed", states
    assert set(quarantine.published_dirs()) == quarantined_before  # nothing was read, so nothing was kept
    assert store.versions() == before
