"""docs/configuration.md is generated from Settings and config/airloop.yaml and cannot drift from them: every setting is
listed once with an environment variable that really sets it, and every key of the defaults file is a real setting."""

from __future__ import annotations

import difflib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from airloop.__main__ import main
from airloop.cli.config_reference import COMMAND, env_var, reference, yaml_comments
from airloop.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = REPO / "config" / "airloop.yaml"
DOC = REPO / "docs" / "configuration.md"


def settings_leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf field of ``model``, walked here independently of the module under test."""
    found = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found += settings_leaves(field.annotation, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every settings row (rows whose first cell is a code span)."""
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")] for line in markdown.splitlines() if line[:3] == "| `"
    ]


@pytest.fixture(scope="module")
def generated() -> str:
    return reference(Settings, DEFAULTS)


def test_docs_configuration_md_is_the_generated_reference(generated):
    committed = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
    diff = "".join(
        list(difflib.unified_diff(committed.splitlines(True), generated.splitlines(True), str(DOC), "generated"))[:40]
    )
    assert committed == generated, f"docs/configuration.md is stale: run `{COMMAND}`\n{diff}"


def test_cli_writes_the_same_reference(generated, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the command documents ./config/airloop.yaml of the checkout it runs in
    monkeypatch.setenv("AIRLOOP_CONFIG", str(tmp_path / "a-deployment.yaml"))  # ignored: the shipped defaults count

    assert main(["config-reference", "--output", str(tmp_path / "configuration.md")]) == 0

    assert (tmp_path / "configuration.md").read_text(encoding="utf-8") == generated


def test_every_setting_is_listed_once_with_its_environment_variable(generated):
    rows = table_rows(generated)
    listed = Counter(row[0].strip("`") for row in rows)
    expected = {".".join(path): "AIRLOOP_" + "__".join(path).upper() for path in settings_leaves(Settings)}

    assert [name for name, count in listed.items() if count > 1] == []
    assert set(listed) == set(expected)
    assert {row[0].strip("`"): row[1].strip("`") for row in rows} == expected
    assert expected["serving.api_key"] == "AIRLOOP_SERVING__API_KEY"


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("home", "/srv/airloop-state", Path("/srv/airloop-state")),
        ("storage.url", "s3://bucket/prefix", "s3://bucket/prefix"),
        ("data.synthetic_rows", "1234", 1234),
        ("data.drift.covariate", "1.5", 1.5),
        ("mlflow.experiment", "other-experiment", "other-experiment"),
        ("serving.port", "9123", 9123),
        ("serving.api_key", "s3cret", "s3cret"),
        ("monitoring.psi", "0.35", 0.35),
        ("monitoring.psi_overrides", '{"age": 0.1}', {"age": 0.1}),
        ("monitoring.email_to", '["ops@example.com"]', ["ops@example.com"]),
        ("loop.min_rows", "321", 321),
        ("loop.mode", "shadow", "shadow"),
        ("loop.require_approval", "true", True),
    ],
)
def test_the_documented_environment_variable_sets_the_setting(setting, value, expected, monkeypatch):
    monkeypatch.setenv("AIRLOOP_CONFIG", str(DEFAULTS))
    path = tuple(setting.split("."))
    monkeypatch.delenv(env_var(path), raising=False)
    before = read(Settings(), path)

    monkeypatch.setenv(env_var(path), value)
    after = read(Settings(), path)

    assert before != expected
    assert after == expected
    assert type(after) is type(expected)


def read(settings: BaseModel, path: tuple[str, ...]) -> Any:
    value: Any = settings
    for name in path:
        value = getattr(value, name)
    return value


def test_every_key_of_the_defaults_file_is_a_setting():
    def stale(data: dict, model: type[BaseModel], prefix: str) -> list[str]:
        found = []
        for key, value in data.items():
            field = model.model_fields.get(key)
            if field is None:
                found.append(prefix + key)
            elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                found += stale(value or {}, field.annotation, f"{prefix}{key}.")
        return found

    assert stale(yaml.safe_load(DEFAULTS.read_text(encoding="utf-8")), Settings, "") == []


def test_a_key_without_a_comment_does_not_borrow_its_neighbours():
    comments = yaml_comments(
        "# header, not about a key\n"
        "\n"
        "serving:\n"
        "  # Where the service listens.\n"
        "  host: 127.0.0.1\n"
        "  port: 8000  # TCP port\n"
        "  # Request limits: `max_body_bytes` and records per call.\n"
        "  max_batch_records: 256\n"
        "  max_body_bytes: 1048576\n"
        "  new_setting: 1\n"
    )

    assert comments["serving"].comment == ""
    assert comments["serving.host"].comment == "Where the service listens."
    assert comments["serving.port"].comment == "TCP port"
    assert comments["serving.max_body_bytes"].covered_by == "serving.max_batch_records"
    assert comments["serving.new_setting"] == comments["serving"]
