"""The data gate: a failing staged batch is moved to quarantine and the error names the quarantine and Data Docs URLs;
on S3 both live in the bucket, and the Data Docs site is published there after each build."""

from __future__ import annotations

import uuid

import pytest

from airloop import etl
from airloop.errors import QualityGateFailed
from airloop.quality import data_gate
from airloop.settings import Settings
from airloop.usecases.readmission.synthetic import generate
from airloop.usecases.readmission.transform import prepare
from tests.s3_server import ACCESS_KEY, SECRET_KEY, s3_server

__all__ = ["s3_server"]  # the session fixture, imported so pytest finds it here


@pytest.fixture
def s3_settings(s3_server, tmp_path, monkeypatch) -> Settings:
    """Settings whose runtime root is a fresh bucket on the moto server; process state stays in tmp_path."""
    bucket = f"airloop-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRLOOP_STORAGE__URL", f"s3://{bucket}/runtime")
    monkeypatch.setenv("AIRLOOP_STORAGE__S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    return Settings()


def test_failing_batch_on_s3_is_quarantined_and_its_data_docs_published(s3_settings):
    batch = generate(600, seed=4)
    batch.loc[0, "race"] = "Martian"
    staging = s3_settings.layout.staging("run-1")
    staging.write_parquet(batch, "raw.parquet")

    with pytest.raises(QualityGateFailed) as caught:
        data_gate.check(s3_settings, staging, "raw.parquet", "raw", "run-1")

    error, quarantine, docs = caught.value, s3_settings.layout.quarantine("readmission"), s3_settings.layout.data_docs()
    (name,) = quarantine.published_dirs()
    assert error.quarantined_at == quarantine.url(name) and error.quarantined_at.startswith("s3://")
    assert f"batch quarantined at {quarantine.url(name)}" in str(error)
    assert "expect_column_values_to_be_in_set(race) saw 1 unexpected values, e.g. ['Martian']" in str(error)
    assert not staging.exists("raw.parquet")
    assert quarantine.read_parquet(name, "raw.parquet").equals(batch)
    assert "Martian" in quarantine.read_text(name, "reason.txt")
    page = error.report.docs_url
    assert page.startswith(docs.url("validations", "readmission_raw", "run-1")) and f"Data Docs: {page}" in str(error)
    assert docs.is_published() and docs.is_file("index.html")
    assert docs.is_file(*page.removeprefix(docs.url() + "/").split("/"))


def test_features_failure_quarantines_the_staged_encounters(settings):
    run_id = "manual__2026-01-01T00:00:00+00:00"
    encounters = prepare(generate(800, seed=6))
    encounters.loc[2, "admission_type_id"] = 99
    staging = etl.staging(settings, run_id)
    staging.write_parquet(encounters, etl.PREPARED_FILE)

    with pytest.raises(QualityGateFailed, match=r"expect_column_values_to_be_in_set\(admission_type_id\)") as caught:
        etl.validate_features(settings, run_id)

    quarantine = settings.layout.quarantine(settings.data.dataset_name)
    (name,) = quarantine.published_dirs()
    assert name.split("-")[1] == "features"
    assert caught.value.quarantined_at == quarantine.url(name)
    assert caught.value.report.docs_url.startswith("file://")
    assert quarantine.read_parquet(name, etl.PREPARED_FILE).equals(encounters)
    assert not staging.exists(etl.PREPARED_FILE)


def test_data_docs_on_s3_keep_every_machines_validations(s3_settings, tmp_path, monkeypatch):
    """Two workers (each its own home, so its own GE project) validate against one bucket: the site there keeps both
    validation pages, and its index, built by whichever published last, lists both."""
    pages = {}
    for worker, run_id in (("worker-a", "run-a"), ("worker-b", "run-b")):
        settings = Settings(home=tmp_path / worker)
        staging = settings.layout.staging(run_id)
        staging.write_parquet(generate(600, seed=len(pages)), "raw.parquet")
        pages[run_id] = data_gate.check(settings, staging, "raw.parquet", "raw", run_id).docs_url

    docs = s3_settings.layout.data_docs()
    for run_id, page in pages.items():
        assert page.startswith(docs.url("validations", "readmission_raw", run_id)), page
        assert docs.is_file(*page.removeprefix(docs.url() + "/").split("/")), f"{run_id}'s page is gone"
    index = docs.read_text("index.html")
    assert all(f"validations/readmission_raw/{run_id}/" in index for run_id in pages), "index misses a validation"
