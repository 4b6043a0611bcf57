"""The DAG factory: every spec's seven DAGs import cleanly, declare owner/retries/tags, keep heavy libraries out of
parse time, and follow the spec files (added, removed, broken) without one spec affecting another's DAGs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
MODELS = REPO / "models"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
HEAVY = ("pandas", "sklearn", "mlflow", "great_expectations")
STAGES = ("etl", "train", "drift", "retrain", "ab_evaluate", "registry", "batch_score")


def _bag(folder: Path | None = None, monkeypatch=None):
    from airflow.dag_processing.dagbag import DagBag

    from airloop.settings import get_settings

    if folder is not None:
        monkeypatch.setenv("AIRLOOP_MODELS__FOLDER", str(folder))
    get_settings.cache_clear()
    try:
        return DagBag(dag_folder=str(DAGS))
    finally:
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def dagbag():
    return _bag()


def _spec_names() -> list[str]:
    from airloop.spec import catalog

    return sorted(catalog(MODELS).specs)


def test_there_is_one_factory_file_and_a_spec_per_model():
    assert [p.name for p in DAG_FILES] == ["airloop_models.py"]
    assert "readmission" in _spec_names()


def test_every_spec_gets_its_seven_dags_tagged_with_its_name(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors
    expected = {f"{name}_{stage}" for name in _spec_names() for stage in STAGES}
    assert set(dagbag.dags) == expected
    for name in _spec_names():
        for stage in STAGES:
            dag = dagbag.dags[f"{name}_{stage}"]
            assert name in dag.tags and "airloop" in dag.tags
            assert Path(dag.fileloc).name == "airloop_models.py"


def test_every_dag_has_owner_retries_tags_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and dag.doc_md.startswith(f"### {dag_id}"), f"{dag_id} has no doc_md of its own"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 2, f"{dag_id}.{task.task_id} has retries={task.retries}"


def test_each_models_hand_offs_target_its_own_dags(dagbag):
    for name in _spec_names():
        etl = dagbag.dags[f"{name}_etl"].get_task("trigger_training")
        drift = dagbag.dags[f"{name}_drift"].get_task("trigger_retrain")
        assert etl.trigger_dag_id == f"{name}_train"
        assert drift.trigger_dag_id == f"{name}_retrain"


def test_a_new_spec_adds_its_dags_and_a_removed_one_removes_them(tmp_path, monkeypatch):
    shutil.copy(MODELS / "readmission.yaml", tmp_path / "readmission.yaml")
    text = (MODELS / "readmission.yaml").read_text().replace("name: readmission", "name: wards", 1)
    (tmp_path / "wards.yaml").write_text(text)

    both = _bag(tmp_path, monkeypatch)
    (tmp_path / "wards.yaml").unlink()
    one = _bag(tmp_path, monkeypatch)

    assert both.import_errors == {} and one.import_errors == {}
    assert {d for d in both.dags if d.startswith("wards_")} == {f"wards_{s}" for s in STAGES}
    assert not [d for d in one.dags if d.startswith("wards_")]
    assert {d for d in one.dags if d.startswith("readmission_")} == {f"readmission_{s}" for s in STAGES}


def test_a_broken_spec_is_shown_naming_its_file_and_the_others_still_parse_and_stay_schedulable(tmp_path, monkeypatch):
    from airloop.dag_factory import BrokenSpecs

    shutil.copy(MODELS / "readmission.yaml", tmp_path / "readmission.yaml")
    (tmp_path / "broken.yaml").write_text((MODELS / "readmission.yaml").read_text().replace(
        "name: readmission", "name: broken", 1).replace("metric: roc_auc", "metric: accuracy", 1)
    )  # fmt: skip

    bag = _bag(tmp_path, monkeypatch)

    # No import error: Airflow would mark every DAG of the factory file stale, the healthy models' too.
    assert bag.import_errors == {}
    assert {d for d in bag.dags if d.startswith("readmission_")} == {f"readmission_{s}" for s in STAGES}
    assert not [d for d in bag.dags if d.startswith("broken")]
    shown = bag.dags["airloop_broken_specs"]
    assert "broken-spec" in shown.tags
    assert "broken.yaml" in shown.doc_md and "training.metric" in shown.doc_md and "'roc_auc'" in shown.doc_md
    with pytest.raises(BrokenSpecs, match=r"broken\.yaml.*training\.metric"):
        shown.get_task("report").python_callable()


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_without_heavy_libraries_or_metadata_db(dag_file):
    """A fresh interpreter imports the file with the metadata DB unreachable: no query, no connection lookup."""
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('probe', {str(dag_file)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    env = os.environ | {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent-airloop-dir/airflow.db"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{dag_file.name} imports {loaded} at module level"


def test_dag_params_are_the_dags_and_every_task_resolves_them_with_the_runs_conf(dagbag):
    """The factory sets a DAG's params once its tasks exist (Airflow would deep-copy them into each operator): the
    trigger form's params are the DAG's, and a task resolves them with the run's conf, validated, as with
    ``@dag(params=...)``."""
    from airflow.sdk.definitions.param import ParamValidationError, process_params

    etl = dagbag.dags["readmission_etl"]
    assert {"source", "path", "rows", "covariate_drift"} <= set(etl.params)
    extract = etl.get_task("extract")
    resolved = process_params(etl, extract, {"source": "synthetic", "rows": 500}, suppress_exception=False)
    assert resolved["source"] == "synthetic" and resolved["rows"] == 500 and resolved["path"] is None
    with pytest.raises(ParamValidationError):
        process_params(etl, extract, {"rows": 0}, suppress_exception=False)
    for dag_id, dag in dagbag.dags.items():  # what Airflow would check at every parse of a scheduled DAG
        assert dag.params.validate() is not None, dag_id
    registry = dagbag.dags["readmission_registry"]
    assert registry.params["action"] == "show"
    assert process_params(registry, registry.get_task("apply"), {}, suppress_exception=False)["action"] == "show"


def test_a_worker_parsing_for_one_task_builds_that_dag_alone(monkeypatch):
    """Airflow's parsing context names the DAG a worker runs a task of: the factory builds it and no other."""
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "churn_train")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "train")
    bag = _bag()
    assert bag.import_errors == {}
    assert set(bag.dags) == {"churn_train"}
    assert bag.dags["churn_train"].get_task("train")
