"""Where a run's params may make airloop read data from (``airloop.data.access``): the configured source always, other
files, S3 objects and tables only inside ``data.access``, and a refusal never repeats the value it refused."""

from __future__ import annotations

import os

import pytest

from airloop.data import access
from airloop.data.access import SourceRefused
from airloop.settings import Settings

pytestmark = pytest.mark.security

SECRET = "simple_auth_manager_passwords.json.generated"


def make(home, **changes) -> Settings:
    (home / "incoming").mkdir(exist_ok=True)
    rules = {"s3_prefixes": ["s3://landing/readmission"], "postgres_tables": ["staging.*", "public.enc_*"]} | changes
    return Settings(home=home, model="readmission", data={"access": rules})


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make(tmp_path)


def refused(settings: Settings, params: dict, user: str | None = None) -> str:
    with pytest.raises(SourceRefused) as error:
        access.check(settings, params, user)
    return str(error.value)


def test_files_below_the_incoming_folder_are_allowed_and_the_airflow_password_file_is_not(settings, tmp_path):
    inside = tmp_path / "incoming" / "batch.csv"
    inside.write_text("x\n")
    (tmp_path / "incoming" / "link.csv").symlink_to(inside)  # a link inside: read where it really leads
    access.check(settings, {"source": "file", "path": str(inside)}, None)
    assert access.check(settings, {"path": str(tmp_path / "incoming" / "link.csv")}, None) == {"path": str(inside)}

    secret = tmp_path / "airflow" / SECRET
    secret.parent.mkdir()
    secret.write_text('{"admin": "hunter2"}')
    message = refused(settings, {"source": "file", "path": str(secret)})
    assert message.startswith("param path: not below an allowed folder (data.access.file_roots")
    assert SECRET not in message and str(tmp_path) not in message


@pytest.mark.parametrize(
    "escape",
    [
        "incoming/../airflow/" + SECRET,
        "incoming/link-out",
        "incoming/link-dir/" + SECRET,
        "relative/incoming/x.csv",
        "~/incoming/x.csv",
    ],
)
def test_no_dot_dot_symlink_or_relative_path_leaves_the_allowed_folder(settings, tmp_path, escape):
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / SECRET).write_text("{}")
    os.symlink(tmp_path / "airflow" / SECRET, tmp_path / "incoming" / "link-out")
    os.symlink(tmp_path / "airflow", tmp_path / "incoming" / "link-dir")
    value = escape if escape.startswith(("relative", "~")) else str(tmp_path / escape)
    assert refused(settings, {"path": value}).startswith("param path:")


def test_the_configured_source_is_always_allowed(tmp_path):
    configured = tmp_path / "elsewhere" / "diabetic_data.csv"
    settings = Settings(home=tmp_path, model="readmission", data={"source": "file", "path": str(configured)})
    access.check(settings, {"source": "file", "path": str(configured)}, None)
    access.check(settings, {"source": "synthetic", "rows": 100}, None)  # the generator reads nothing
    own = settings.data.postgres_table or "readmission"  # the spec's table, else one named like the model
    access.check(settings, {"postgres_table": own}, None)


def test_s3_objects_only_below_an_allowed_prefix(settings):
    access.check(settings, {"source": "s3", "s3_uri": "s3://landing/readmission/2026-12-07.csv"}, None)
    for uri in (
        "s3://landing/readmission-other/x.csv",  # a prefix is a folder, not the start of a name
        "s3://airloop-storage/mlflow/secrets.csv",
        "s3://landing/readmission/../other/x.csv",
        "s3://landing/readmission//x.csv",
        "https://landing/readmission/x.csv",
    ):
        assert refused(settings, {"s3_uri": uri}).startswith("param s3_uri:"), uri


def test_tables_only_matching_an_allowed_pattern_and_never_a_system_schema(settings, tmp_path):
    access.check(settings, {"postgres_table": "staging.encounters"}, None)
    assert access.check(settings, {"postgres_table": "public.enc_2026"}, None) == {"postgres_table": "public.enc_2026"}
    # Unqualified, PostgreSQL would look in pg_catalog first: refused, whatever the patterns allow.
    assert "must be schema.table" in refused(make(tmp_path, postgres_tables=["*"]), {"postgres_table": "pg_settings"})
    for table in ("public.connection", "pg_catalog.pg_authid", "information_schema.tables", 'x"; DROP TABLE y; --'):
        message = refused(settings, {"postgres_table": table})
        assert message.startswith("param postgres_table:") and table not in message, message
    broad = make(tmp_path, postgres_tables=["*"])
    assert "system schemas" in refused(broad, {"postgres_table": "pg_catalog.pg_authid"})


def test_an_override_role_limits_who_may_point_the_source_elsewhere(settings, tmp_path):
    inside = tmp_path / "incoming" / "batch.csv"
    strict = make(tmp_path, override_role="ml_engineer")
    access.check(strict, {"path": str(inside)}, "engineer")
    access.check(strict, {"path": str(inside)}, "admin")
    assert "user 'scientist' may not point the source elsewhere" in refused(strict, {"path": str(inside)}, "scientist")
    assert "a run no signed-in user triggered" in refused(strict, {"path": str(inside)}, None)
    access.check(strict, {"source": "synthetic"}, "scientist")  # the configured location: no override


def test_oversized_or_nul_values_are_refused_without_being_repeated(settings, tmp_path):
    assert refused(settings, {"path": "/" + "a" * 5000}) == "param path: longer than 4096 characters"
    assert refused(settings, {"path": str(tmp_path / "incoming" / "x\x00y")}) == "param path: holds a NUL character"
