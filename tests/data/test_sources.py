"""Every raw source (file, S3, PostgreSQL) yields the published rows in the same raw form; failures name the source."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pandas as pd
import pytest

from airloop.data.sources import SourceError, describe_source, iter_raw, load_raw, normalize_raw, read_csv_bytes
from airloop.errors import FinalError, SourceMisconfigured, SourceNotFound
from airloop.settings import DataSettings
from airloop.usecases.readmission import schema
from tests.specs import READMISSION

FIRST_ENCOUNTER_ID = 2278392
BUCKET = "airloop-raw"
KEY = "incoming/diabetic_data.csv"


@pytest.fixture(scope="module")
def published(real_sample) -> pd.DataFrame:
    """The real sample as the file source loads it: the reference every other source must equal."""
    return load_raw(DataSettings(source="file", path=real_sample), READMISSION)


def by_encounter(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("encounter_id", kind="stable").reset_index(drop=True)


# --- file and normalization ---------------------------------------------------------------------------------------


def test_file_source_loads_published_rows_as_published(published):
    integer = list(schema.INTEGER_COLUMNS)
    text = [c for c in schema.RAW_COLUMNS if c not in schema.INTEGER_COLUMNS]

    assert published.shape == (3000, 50)
    assert list(published.columns) == list(schema.RAW_COLUMNS)
    assert (published.dtypes[integer] == "int64").all()
    assert (published.dtypes[text] == "str").all()
    assert published.loc[0, "encounter_id"] == FIRST_ENCOUNTER_ID
    assert published.loc[0, ["race", "gender", "age"]].tolist() == ["Caucasian", "Female", "[0-10)"]
    assert (published["weight"] == "?").sum() > 2500
    assert (published["max_glu_serum"] == "None").sum() > 2500
    assert not published[text].isna().any().any()
    assert not published[text].apply(lambda c: c.str.endswith("\r")).any().any()


def test_non_integer_value_leaves_integer_column_as_strings(real_sample):
    lines = real_sample.read_bytes().split(b"\r\n")
    header = lines[0].split(b",")
    position = header.index(b"num_procedures")
    fields = lines[1].split(b",")
    fields[position] = b"two"
    lines[1] = b",".join(fields)

    frame = read_csv_bytes(b"\r\n".join(lines), READMISSION)

    assert len(frame) == 3000
    assert frame["num_procedures"].dtype == "str"
    assert frame.loc[0, "num_procedures"] == "two"
    assert frame.loc[1:, "num_procedures"].str.fullmatch(r"\d+").all()
    assert frame["num_medications"].dtype == "int64"


def test_normalize_keeps_missing_and_extra_columns_in_given_order():
    frame = pd.DataFrame(
        {
            "extra": [" a ", "b\r"],
            "encounter_id": [" 7 ", "8\r"],
            "race": ["?", " None"],
            "readmitted": ["NO", "<30"],
        },
        dtype="str",
    )

    out = normalize_raw(frame, READMISSION)

    assert list(out.columns) == ["extra", "encounter_id", "race", "readmitted"]
    assert out["extra"].tolist() == ["a", "b"]
    assert out["encounter_id"].dtype == "int64" and out["encounter_id"].tolist() == [7, 8]
    assert out["race"].tolist() == ["?", "None"]


def test_na_like_strings_are_values_not_missing():
    frame = read_csv_bytes(
        b"encounter_id,race,payer_code,medical_specialty\r\n1,NA,None,\r\n2,?,nan,N/A\r\n", READMISSION
    )

    assert frame["race"].tolist() == ["NA", "?"]
    assert frame["payer_code"].tolist() == ["None", "nan"]
    assert frame["medical_specialty"].tolist() == ["", "N/A"]
    assert not frame.isna().any().any()


def test_integer_too_large_for_int64_stays_string():
    frame = read_csv_bytes(b"encounter_id,patient_nbr\r\n1,99999999999999999999\r\n2,3\r\n", READMISSION)

    assert frame["encounter_id"].dtype == "int64"
    assert frame["patient_nbr"].tolist() == ["99999999999999999999", "3"]


def test_missing_file_is_a_final_error_naming_the_path(tmp_path):
    path = tmp_path / "nowhere.csv"

    with pytest.raises(SourceNotFound, match=r"file source .*nowhere\.csv: no such file") as raised:
        load_raw(DataSettings(source="file", path=path), READMISSION)

    assert isinstance(raised.value, FinalError) and isinstance(raised.value, SourceError)
    assert raised.value.location == str(path)


def test_unset_path_is_final_but_an_unreadable_file_may_be_retried(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")

    with pytest.raises(SourceMisconfigured, match=r"needs data\.path") as unset:
        load_raw(DataSettings(source="file"), READMISSION)
    with pytest.raises(SourceError, match=r"empty\.csv: not a readable CSV: EmptyDataError") as unreadable:
        load_raw(DataSettings(source="file", path=empty), READMISSION)

    assert isinstance(unset.value, FinalError)
    assert not isinstance(unreadable.value, FinalError)


def test_describe_source_names_each_source_as_a_uri(tmp_path):
    path = (tmp_path / "d.csv").resolve()

    assert describe_source(DataSettings(source="file", path=path)) == f"file://{path}"
    assert describe_source(DataSettings(source="s3", s3_uri="s3://b/k.csv")) == "s3://b/k.csv"
    assert (
        describe_source(DataSettings(source="postgres", postgres_table="diabetic_data"))
        == "postgresql://airloop_postgres/diabetic_data"
    )
    synthetic = DataSettings(source="synthetic", synthetic_rows=500, synthetic_seed=7, drift={"covariate": 0.5})
    assert describe_source(synthetic) == "synthetic://rows=500&seed=7&covariate=0.5&concept=0"


def test_sources_module_imports_no_airflow_hook_or_generator():
    probe = (
        "import sys, airloop.data.sources; "
        "print(sorted(m for m in sys.modules if m.startswith(('airflow', 'airloop.data.generator', 'botocore'))))"
    )

    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)

    assert done.stdout.strip() == "[]"


def test_synthetic_source_calls_the_generator_with_the_settings():
    pytest.importorskip(
        "airloop.usecases.readmission.synthetic", reason="airloop.usecases.readmission.synthetic is not written yet"
    )
    data = DataSettings(source="synthetic", synthetic_rows=200, synthetic_seed=3)

    first, again = load_raw(data, READMISSION), load_raw(data, READMISSION)

    assert len(first) == 200
    pd.testing.assert_frame_equal(first, again)


# --- S3 (moto server) ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_object(s3_server, real_sample) -> str:
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=real_sample.read_bytes())
    return f"s3://{BUCKET}/{KEY}"


@pytest.fixture
def s3_connection(s3_server, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_S3", s3_server.airflow_connection())


def test_s3_source_equals_file_source(s3_object, s3_connection, published):
    frame = load_raw(DataSettings(source="s3", s3_uri=s3_object), READMISSION)

    pd.testing.assert_frame_equal(frame, published)


def test_missing_s3_key_is_a_final_error_naming_uri_and_connection(s3_object, s3_connection):
    uri = f"s3://{BUCKET}/incoming/absent.csv"

    with pytest.raises(SourceNotFound) as raised:
        load_raw(DataSettings(source="s3", s3_uri=uri), READMISSION)

    assert isinstance(raised.value, FinalError)
    assert str(raised.value) == (
        "s3 source s3://airloop-raw/incoming/absent.csv: no such key 'incoming/absent.csv' in bucket 'airloop-raw' "
        "(connection 'airloop_s3')"
    )


def test_missing_bucket_and_bad_uri_are_final_errors(s3_server, s3_connection):
    with pytest.raises(SourceNotFound) as missing:
        load_raw(DataSettings(source="s3", s3_uri="s3://no-such-bucket/k.csv"), READMISSION)
    with pytest.raises(SourceMisconfigured, match=r"expected a URI of the form s3://bucket/key") as malformed:
        load_raw(DataSettings(source="s3", s3_uri="https://example.com/k.csv"), READMISSION)

    assert str(missing.value) == (
        "s3 source s3://no-such-bucket/k.csv: no such bucket 'no-such-bucket' (connection 'airloop_s3')"
    )
    assert isinstance(missing.value, FinalError) and isinstance(malformed.value, FinalError)


# --- PostgreSQL (real server) -------------------------------------------------------------------------------------


def _create_table(cursor, table: str, real_sample, integer_type: str) -> None:
    columns = ", ".join(f'"{c}" {integer_type if c in schema.INTEGER_COLUMNS else "text"}' for c in schema.RAW_COLUMNS)
    cursor.execute(f'CREATE TABLE "{table}" ({columns})')
    with real_sample.open("rb") as handle:  # COPY's csv format accepts CRLF line ends
        cursor.copy_expert(f'COPY "{table}" FROM STDIN WITH (FORMAT csv, HEADER true)', handle)


@pytest.fixture(scope="module")
def pg_tables(postgres_server, real_sample) -> dict[str, str]:
    """The sample in two tables: integer columns as bigint, and everything as text."""
    import psycopg2

    tables = {"bigint": "diabetic_data", "text": "diabetic_data_text"}
    with psycopg2.connect(postgres_server.dsn) as conn, conn.cursor() as cursor:
        for integer_type, table in tables.items():
            _create_table(cursor, table, real_sample, integer_type)
    conn.close()
    return tables


@pytest.fixture
def pg_connection(postgres_server, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_POSTGRES", postgres_server.airflow_connection())


@pytest.mark.postgres
@pytest.mark.parametrize("storage", ["bigint", "text"])
def test_postgres_source_equals_file_source(pg_tables, pg_connection, published, storage):
    frame = load_raw(DataSettings(source="postgres", postgres_table=pg_tables[storage]), READMISSION)

    assert list(frame.columns) == list(schema.RAW_COLUMNS)
    if storage == "bigint":  # ordered by the stored encounter_id; text sorts as text
        assert frame["encounter_id"].is_monotonic_increasing
    pd.testing.assert_frame_equal(by_encounter(frame), by_encounter(published))


@pytest.mark.postgres
def test_missing_postgres_table_is_a_final_error_naming_table_and_connection(pg_tables, pg_connection):
    table = f"absent_{uuid.uuid4().hex[:8]}"

    with pytest.raises(SourceNotFound) as raised:
        load_raw(DataSettings(source="postgres", postgres_table=table), READMISSION)

    assert isinstance(raised.value, FinalError)
    assert str(raised.value) == (
        f"postgres source airloop_postgres/{table}: no such table '{table}' (connection 'airloop_postgres')"
    )


def test_undefined_postgres_connection_is_a_final_error(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AIRLOOP_MISSING", raising=False)

    with pytest.raises(SourceNotFound, match=r"Airflow connection 'airloop_missing' is not defined") as raised:
        load_raw(
            DataSettings(source="postgres", postgres_conn_id="airloop_missing", postgres_table="diabetic_data"),
            READMISSION,
        )

    assert isinstance(raised.value, FinalError)


def test_unsafe_postgres_table_name_is_refused_before_connecting():
    with pytest.raises(SourceMisconfigured, match=r"table name must be") as raised:
        load_raw(DataSettings(source="postgres", postgres_table='diabetic_data"; DROP TABLE x; --'), READMISSION)

    assert isinstance(raised.value, FinalError)


# --- chunked reading (readmission_batch_score) --------------------------------------------------------------------


def chunks_of(data: DataSettings, chunk_rows: int) -> list[pd.DataFrame]:
    return list(iter_raw(data, READMISSION, chunk_rows))


def assert_chunks_equal_whole(chunks: list[pd.DataFrame], whole: pd.DataFrame, chunk_rows: int) -> None:
    """Every chunk but the last holds exactly ``chunk_rows`` rows, and together they are the whole frame."""
    sizes = [len(c) for c in chunks]
    assert sizes[:-1] == [chunk_rows] * (len(sizes) - 1) and 0 < sizes[-1] <= chunk_rows
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


def test_file_source_in_chunks_is_the_whole_file(real_sample, published):
    chunks = chunks_of(DataSettings(source="file", path=real_sample), 700)

    assert len(chunks) == 5
    assert_chunks_equal_whole(chunks, published, 700)


def test_file_chunks_fail_like_the_whole_file(tmp_path):
    absent = tmp_path / "absent.csv"
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"encounter_id,age\r\n1,[0-10)\r\n2,[0-10),extra,fields\r\n")

    with pytest.raises(SourceNotFound, match="no such file"):
        chunks_of(DataSettings(source="file", path=absent), 10)
    with pytest.raises(SourceError, match=r"file source .*broken.csv: not a readable CSV: ParserError"):
        chunks_of(DataSettings(source="file", path=broken), 10)
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        chunks_of(DataSettings(source="file", path=broken), 0)


def test_s3_source_in_chunks_streams_the_object(s3_object, s3_connection, published):
    chunks = chunks_of(DataSettings(source="s3", s3_uri=s3_object), 1000)

    assert_chunks_equal_whole(chunks, published, 1000)
    with pytest.raises(SourceNotFound, match=r"no such key 'incoming/absent\.csv'"):
        chunks_of(DataSettings(source="s3", s3_uri=f"s3://{BUCKET}/incoming/absent.csv"), 1000)


@pytest.mark.postgres
def test_postgres_source_in_chunks_reads_through_a_server_side_cursor(pg_tables, pg_connection, published):
    data = DataSettings(source="postgres", postgres_table=pg_tables["bigint"])

    chunks = chunks_of(data, 1200)

    assert_chunks_equal_whole(chunks, load_raw(data, READMISSION), 1200)
    pd.testing.assert_frame_equal(by_encounter(pd.concat(chunks, ignore_index=True)), by_encounter(published))
    with pytest.raises(SourceNotFound, match="no such table 'absent_table'"):
        chunks_of(DataSettings(source="postgres", postgres_table="absent_table"), 1200)
