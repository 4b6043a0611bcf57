"""Test-wide setup: every test session gets its own AIRFLOW_HOME and airloop home, so nothing touches .airloop/."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_SAMPLE = SHARED_DATA / "diabetic_data_sample.csv"

# Set before anything imports Airflow: Airflow reads its configuration once, at import.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="airloop-tests-"))
os.environ["AIRFLOW_HOME"] = str(_SESSION_HOME / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_SESSION_HOME / 'airflow' / 'airflow.db'}"
os.environ["AIRLOOP_HOME"] = str(_SESSION_HOME / "airloop")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# The service refuses to start without a request-id key (airloop.security.check_serving); every test app shares one.
os.environ["AIRLOOP_SERVING__REQUEST_ID_KEY"] = "airloop-tests-request-id-key"
(_SESSION_HOME / "airflow").mkdir(parents=True, exist_ok=True)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Fresh settings whose runtime home is this test's tmp_path."""
    from airloop.settings import get_settings

    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path / "airloop"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def real_sample() -> Path:
    """The first 3,000 rows of the published diabetic_data.csv, read in place from ../shared/data/."""
    if not REAL_SAMPLE.is_file():
        pytest.skip(f"real data sample not found at {REAL_SAMPLE} (only present beside the repo in CI/dev checkouts)")
    return REAL_SAMPLE


# The slowest kinds of test file first: with `--dist loadfile` each file goes whole to the next free worker, so the
# long ones start at once and the many short files fill in around them instead of waiting at the end.
_HEAVY_FIRST = ("integration", "dag", "browser", "postgres", "fuzz")


def pytest_collection_modifyitems(config, items) -> None:
    def weight(item) -> int:
        marks = {m.name for m in item.iter_markers()}
        return next((i for i, name in enumerate(_HEAVY_FIRST) if name in marks), len(_HEAVY_FIRST))

    files: dict[str, int] = {}
    for item in items:
        files[item.fspath.strpath] = min(files.get(item.fspath.strpath, len(_HEAVY_FIRST)), weight(item))
    items.sort(key=lambda item: files[item.fspath.strpath])  # stable: files stay whole, their tests in order
