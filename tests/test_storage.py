"""One storage for the runtime root, local or S3 (a real moto server): atomic writes, folders published all at once
behind a manifest, listing, clear errors naming the URL; the layout and settings that choose it."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pandas as pd
import pytest

from airloop.settings import Settings, config_file, packaged_config
from airloop.storage import MANIFEST, RuntimeLayout, S3Options, Storage, folder_name
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY, s3_server

__all__ = ["s3_server"]  # the session fixture, imported so pytest finds it here


def s3_storage(server, prefix: str = "runtime") -> Storage:
    """A Storage on a fresh bucket of the moto server."""
    bucket = f"airloop-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket)
    options = S3Options(endpoint_url=server.endpoint_url, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    return Storage.from_url(f"s3://{bucket}/{prefix}", options)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Storage:
    """The same tests on a local folder and on an S3 bucket."""
    if request.param == "local":
        return Storage.from_url(tmp_path / "runtime")
    return s3_storage(request.getfixturevalue("s3_server"))


def s3_keys(server, storage: Storage) -> list[str]:
    """Every object key in the storage's bucket, as S3 itself lists them."""
    bucket = storage.root.split("/", 1)[0]
    return sorted(o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", []))


# --- single files --------------------------------------------------------------------------------------------------


def test_write_replaces_content_and_leaves_no_temporary_files(storage):
    storage.write_text("old", "a", "file.txt")

    url = storage.write_text("new", "a", "file.txt")

    assert storage.read_text("a", "file.txt") == "new"
    assert url == storage.url("a", "file.txt")
    assert storage.walk_files() == ["a/file.txt"]


def test_failed_parquet_write_keeps_the_previous_file(storage):
    storage.write_parquet(pd.DataFrame({"x": [1, 2]}), "t.parquet")
    unconvertible = pd.DataFrame({"x": [1, "two", 3.5, object()]})

    with pytest.raises((TypeError, ValueError)):  # pyarrow's ArrowTypeError / ArrowInvalid
        storage.write_parquet(unconvertible, "t.parquet")

    assert storage.read_parquet("t.parquet")["x"].tolist() == [1, 2]
    assert storage.walk_files() == ["t.parquet"]


def test_parquet_round_trip_keeps_columns_and_dtypes(storage):
    frame = pd.DataFrame({"encounter_id": [3, 1, 2], "race": ["Caucasian", "?", "Asian"]})

    storage.write_parquet(frame, "staging", "run", "raw.parquet")

    assert storage.read_parquet("staging", "run", "raw.parquet").equals(frame)


def test_missing_file_is_file_not_found_naming_the_url(storage):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{storage.url('nope.txt')} does not exist")):
        storage.read_bytes("nope.txt")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{storage.url('nope.parquet')} does not exist")):
        storage.read_parquet("nope.parquet")


def test_listing_shows_files_and_folders_and_delete_removes_them(storage):
    storage.write_text("1", "d", "x.txt")
    storage.write_text("2", "d", "sub", "y.txt")
    storage.write_text("3", "top.txt")

    assert storage.listdir() == ["d", "top.txt"]
    assert storage.listdir("d") == ["sub", "x.txt"]
    assert storage.walk_files("d") == ["sub/y.txt", "x.txt"]
    assert storage.is_file("d", "x.txt") and not storage.is_file("d")
    assert storage.listdir("absent") == [] and not storage.exists("absent")

    storage.delete("d")

    assert storage.walk_files() == ["top.txt"]


# --- folders published all at once ----------------------------------------------------------------------------------


def test_publish_dir_makes_every_file_visible_with_a_manifest_of_sizes(storage):
    url = storage.publish_dir({"data.bin": b"12345", "sub/meta.json": b"{}"}, "versions", "v1")

    assert url == storage.url("versions", "v1")
    assert storage.is_published("versions", "v1")
    assert storage.published_dirs("versions") == ["v1"]
    assert storage.read_bytes("versions", "v1", "data.bin") == b"12345"
    assert storage.manifest("versions", "v1")["files"] == {"data.bin": {"size": 5}, "sub/meta.json": {"size": 2}}


def test_publishing_the_same_folder_twice_is_refused(storage):
    storage.publish_dir({"a": b"1"}, "v1")

    with pytest.raises(FileExistsError, match=re.escape(storage.url("v1"))):
        storage.publish_dir({"a": b"2"}, "v1")

    assert storage.read_bytes("v1", "a") == b"1"


def test_failed_publish_leaves_no_published_folder(storage):
    with pytest.raises(RuntimeError, match="disk on fire"), storage.publishing("v1") as folder:
        folder.write_bytes(b"half", "data.bin")
        raise RuntimeError("disk on fire")

    assert not storage.is_published("v1")
    assert storage.published_dirs() == []


def test_local_publish_writes_beside_the_target_then_renames(tmp_path):
    storage = Storage.from_url(tmp_path)

    with storage.publishing("v1") as folder:
        folder.write_bytes(b"x", "data.bin")
        hidden = [p.name for p in tmp_path.iterdir()]
        assert not (tmp_path / "v1").exists()
        assert len(hidden) == 1 and hidden[0].startswith(".tmp-v1-")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == [MANIFEST, "data.bin"]


def test_failed_local_publish_removes_its_temporary_folder(tmp_path):
    storage = Storage.from_url(tmp_path)

    with pytest.raises(RuntimeError), storage.publishing("v1") as folder:
        folder.write_bytes(b"x", "data.bin")
        raise RuntimeError("interrupted")

    assert list(tmp_path.iterdir()) == []


def test_s3_objects_are_invisible_until_the_manifest_is_written_last(s3_server):
    storage = s3_storage(s3_server)
    prefix = storage.root.split("/", 1)[1]

    with storage.publishing("v1") as folder:
        folder.write_bytes(b"12345", "data.bin")
        assert s3_keys(s3_server, storage) == [f"{prefix}/v1/data.bin"]
        assert not storage.is_published("v1")
        assert storage.published_dirs() == []

    assert s3_keys(s3_server, storage) == [f"{prefix}/v1/{MANIFEST}", f"{prefix}/v1/data.bin"]
    assert storage.published_dirs() == ["v1"]


def test_s3_folder_with_objects_but_no_complete_manifest_is_absent(s3_server):
    storage = s3_storage(s3_server)
    storage.write_bytes(b"orphan", "v1", "data.bin")
    storage.write_bytes(b'{"files": {"data.b', "v2", MANIFEST)  # cut short
    storage.write_bytes(b"x", "v2", "data.bin")

    assert not storage.is_published("v1")
    assert not storage.is_published("v2")
    assert storage.published_dirs() == []


def test_sync_dir_uploads_changed_files_and_drops_removed_ones(storage, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "static").mkdir(parents=True)
    (site / "index.html").write_text("<h1>1</h1>")
    (site / "static" / "style.css").write_text("body {}")
    (site / "old.html").write_text("gone soon")
    storage.sync_dir(site, "docs")
    (site / "index.html").write_text("<h1>2</h1>")
    (site / "old.html").unlink()
    written: list[tuple[str, ...]] = []
    original = Storage.write_bytes

    def recording(self, data, *parts):
        written.append(parts)
        return original(self, data, *parts)

    monkeypatch.setattr(Storage, "write_bytes", recording)

    url = storage.sync_dir(site, "docs")

    assert url == storage.url("docs")
    assert written == [("docs", "index.html"), ("docs", MANIFEST)]
    assert storage.read_text("docs", "index.html") == "<h1>2</h1>"
    assert storage.walk_files("docs") == [MANIFEST, "index.html", "static/style.css"]
    assert sorted(storage.manifest("docs")["files"]) == ["index.html", "static/style.css"]


def test_unpruned_sync_keeps_what_other_machines_published_and_fetch_dir_copies_it_back(storage, tmp_path):
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for site, page in ((mine, "a.html"), (theirs, "b.html")):
        (site / "pages").mkdir(parents=True)
        (site / "pages" / page).write_text(page)
        (site / "index.html").write_text(f"index of {page}")
    storage.sync_dir(theirs, "docs", prune=False)
    storage.sync_dir(mine, "docs", prune=False)

    assert storage.walk_files("docs") == [MANIFEST, "index.html", "pages/a.html", "pages/b.html"]
    assert sorted(storage.manifest("docs")["files"]) == ["index.html", "pages/a.html", "pages/b.html"]
    assert storage.read_text("docs", "index.html") == "index of a.html"  # the last build's index
    assert storage.fetch_dir(mine, "docs") == ["pages/b.html"]  # only what this copy lacks
    assert (mine / "pages" / "b.html").read_text() == "b.html"
    assert (mine / "index.html").read_text() == "index of a.html"
    assert storage.fetch_dir(tmp_path / "new", "docs") == ["index.html", "pages/a.html", "pages/b.html"]


# --- layout and settings ---------------------------------------------------------------------------------------------


def test_layout_puts_every_location_below_the_one_root(tmp_path):
    layout = RuntimeLayout(Storage.from_url(tmp_path))

    locations = {
        "datasets": layout.datasets("readmission"),
        "quarantine": layout.quarantine("readmission"),
        "data_docs": layout.data_docs(),
        "validation_results": layout.validation_results(),
        "reports": layout.reports(),
        "baselines": layout.baselines(),
        "predictions": layout.predictions(),
        "feedback": layout.feedback(),
        "staging": layout.staging("manual__2026-01-01T00:00:00+00:00"),
    }

    assert {k: Path(v.url()).relative_to(tmp_path).as_posix() for k, v in locations.items()} == {
        "datasets": "datasets/readmission",
        "quarantine": "quarantine/readmission",
        "data_docs": "data_docs",
        "validation_results": "validations",
        "reports": "reports",
        "baselines": "baselines",
        "predictions": "predictions",
        "feedback": "feedback",
        "staging": "staging/manual__2026-01-01T00_00_00_00_00",
    }


def test_run_ids_that_cannot_name_a_folder_are_refused():
    assert folder_name("scheduled__2026:01+x/../y") == "scheduled__2026_01_x_.._y"
    with pytest.raises(ValueError, match=re.escape("'..' cannot name a folder")):
        folder_name("..")


def test_unsupported_url_scheme_is_named():
    with pytest.raises(ValueError, match=re.escape("gs://bucket/prefix")):
        Storage.from_url("gs://bucket/prefix")


def test_storage_defaults_to_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path / "home"))

    settings = Settings()

    assert settings.storage_url == (tmp_path / "home").as_posix()
    assert settings.layout.root.is_local
    assert settings.layout.datasets("readmission").url() == (tmp_path / "home" / "datasets" / "readmission").as_posix()


def test_s3_storage_url_and_endpoint_come_from_settings(s3_server, monkeypatch):
    bucket = f"airloop-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("AIRLOOP_STORAGE__URL", f"s3://{bucket}/prod")
    monkeypatch.setenv("AIRLOOP_STORAGE__S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)

    layout = Settings().layout
    url = layout.staging("run-1").write_text("hello", "note.txt")

    assert url == f"s3://{bucket}/prod/staging/readmission/run-1/note.txt"
    assert s3_keys(s3_server, layout.root) == ["prod/staging/readmission/run-1/note.txt"]


def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRLOOP_HOME", "state")
    monkeypatch.setenv("AIRLOOP_STORAGE__URL", "shared/runtime")
    monkeypatch.setenv("AIRLOOP_DATA__PATH", "in/diabetic_data.csv")

    settings = Settings()

    assert settings.home == tmp_path / "state"
    assert settings.storage_url == (tmp_path / "shared" / "runtime").as_posix()
    assert settings.data.path == tmp_path / "in" / "diabetic_data.csv"


def test_installed_package_finds_its_packaged_defaults_from_any_directory(tmp_path, monkeypatch):
    from importlib import resources

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIRLOOP_CONFIG", raising=False)

    settings = Settings()

    packaged = resources.files("airloop") / "config"
    assert config_file() == packaged_config("airloop.yaml")
    assert (packaged / "airloop.yaml").is_file() and (packaged / "routing.yaml").is_file()
    assert settings.serving.routing_file == packaged_config("routing.yaml").resolve()
    assert settings.serving.routing_file.is_file()
    assert settings.training.candidates["logistic_regression"]  # read from the packaged airloop.yaml


def test_config_file_prefers_the_environment_then_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIRLOOP_CONFIG", raising=False)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "airloop.yaml").write_text("batch:\n  chunk_rows: 7\n")
    other = tmp_path / "other.yaml"
    other.write_text("batch:\n  chunk_rows: 9\n")

    assert Settings().batch.chunk_rows == 7

    monkeypatch.setenv("AIRLOOP_CONFIG", str(other))

    assert config_file() == other
    assert Settings().batch.chunk_rows == 9


def test_in_airflow_s3_credentials_and_endpoint_come_from_the_storage_connection(s3_server, monkeypatch):
    from airloop import storage as storage_module

    bucket = f"conn-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AIRLOOP_STORAGE__S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_STORAGE", s3_server.airflow_connection())  # endpoint + keys in it
    monkeypatch.setenv("AIRLOOP_STORAGE__URL", f"s3://{bucket}/runtime")
    storage_module._connection_options.cache_clear()
    try:
        settings = Settings()
        options = storage_module.s3_options(None, None, settings.storage.s3_conn_id)
        settings.layout.reports().write_bytes(b"{}", "r.json")
    finally:
        storage_module._connection_options.cache_clear()

    assert (options.endpoint_url, options.region, options.access_key) == (s3_server.endpoint_url, REGION, ACCESS_KEY)
    assert SECRET_KEY not in repr(options)
    assert s3_server.client().get_object(Bucket=bucket, Key="runtime/reports/r.json")["Body"].read() == b"{}"


def test_without_that_connection_the_default_aws_chain_is_used():
    from airloop import storage as storage_module

    storage_module._connection_options.cache_clear()
    options = storage_module.s3_options("http://minio:9000", "eu-west-1", "no_such_connection")

    assert options == S3Options(endpoint_url="http://minio:9000", region="eu-west-1")
