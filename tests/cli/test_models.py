"""``python -m airloop models`` lists the specs (valid ones with their DAG ids, broken ones with their errors), and the
commands about one model act on the model ``--model`` names (``models.default`` without it) and refuse one no valid
spec has, naming the known ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airloop.__main__ import main

REPO = Path(__file__).resolve().parents[2]
SECOND, BROKEN = "churn", "broken"


@pytest.fixture
def two_models(tmp_path, monkeypatch) -> Iterator[Any]:
    """A fresh home and a models folder with readmission's spec, a copy of it named churn and a broken spec file."""
    from airloop.settings import get_settings

    folder = tmp_path / "models"
    folder.mkdir()
    text = (REPO / "models" / "readmission.yaml").read_text()
    (folder / "readmission.yaml").write_text(text)
    (folder / f"{SECOND}.yaml").write_text(text.replace("\nname: readmission\n", f"\nname: {SECOND}\n", 1))
    (folder / f"{BROKEN}.yaml").write_text(f"name: {BROKEN}\nwidgets: 3\n")
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path / "airloop"))
    monkeypatch.setenv("AIRLOOP_MODELS__FOLDER", str(folder))
    monkeypatch.delenv("AIRLOOP_MODEL", raising=False)
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


def test_models_lists_each_valid_spec_with_its_dag_ids_and_each_broken_file_with_its_errors(two_models, capsys):
    status = main(["models"])
    out = capsys.readouterr().out

    assert status == 1  # a broken spec file is a failure a CI step should see
    assert f"model specs in {two_models} (default: readmission)" in out
    assert "readmission (default) [healthcare]: 30-day hospital readmission risk" in out
    for stage in ("etl", "train", "drift", "retrain", "ab_evaluate", "registry", "batch_score"):
        assert f"{SECOND}_{stage}" in out and f"readmission_{stage}" in out
    broken = out[out.index("broken spec files:") :]
    assert str(two_models / f"{BROKEN}.yaml") in broken
    assert "- widgets: unknown key" in broken and "- data: required key is missing" in broken


def test_models_json_names_every_dag_and_exits_0_when_every_spec_is_valid(two_models, capsys):
    (two_models / f"{BROKEN}.yaml").unlink()

    status = main(["models", "--json"])
    found = json.loads(capsys.readouterr().out)

    assert status == 0 and found["broken"] == [] and found["default"] == "readmission"
    assert [m["name"] for m in found["models"]] == [SECOND, "readmission"]
    assert found["models"][0]["dags"]["registry"] == f"{SECOND}_registry"
    assert found["models"][0]["file"] == str(two_models / f"{SECOND}.yaml")


@pytest.mark.parametrize("command", [["registry", "show"], ["registry", "promote"], ["history"]])
def test_an_unknown_model_is_refused_naming_the_known_ones(two_models, capsys, command):
    status = main([*command, "--model", "nope"])
    err = capsys.readouterr().err

    assert status == 2
    assert err.startswith(f"error: unknown model 'nope' in {two_models}; known models: {SECOND}, readmission")
    assert f"broken spec files: {two_models / f'{BROKEN}.yaml'}" in err


def test_a_broken_model_is_refused_with_its_spec_files_errors(two_models, capsys):
    status = main(["registry", "show", "--model", BROKEN])
    err = capsys.readouterr().err

    assert status == 2
    assert f"error: model '{BROKEN}' cannot be used: model spec {two_models / f'{BROKEN}.yaml'}: " in err
    assert "widgets: unknown key" in err


def test_registry_and_history_act_on_the_model_named_and_leave_the_default_one_alone(two_models, capsys):
    from airloop.registry.client import connect
    from airloop.registry.contract import Tag
    from airloop.settings import get_settings

    for name in (SECOND, "readmission"):
        connect(get_settings(name)).create_registered_model(name)

    routed = main(["registry", "route", "--model", SECOND, "--weights", "champion=100,challenger=0", "--actor", "t"])
    shown = capsys.readouterr().out
    second_history = main(["history", "--model", SECOND, "--json"])
    second = json.loads(capsys.readouterr().out)
    default_history = main(["history", "--json"])
    default = json.loads(capsys.readouterr().out)

    assert (routed, second_history, default_history) == (0, 0, 0)
    assert "'weights': {'challenger': 0.0, 'champion': 100.0}" in shown
    assert [(d["kind"], d["decided_by"]) for d in second["decisions"]] == [("routing_changed", "t")]
    assert default["decisions"] == []  # readmission's history has nothing of churn's
    tags = {name: connect(get_settings(name)).get_registered_model(name).tags for name in (SECOND, "readmission")}
    assert json.loads(tags[SECOND][Tag.ROUTING])["weights"] == {"champion": 100.0, "challenger": 0.0}
    assert Tag.ROUTING not in tags["readmission"]
