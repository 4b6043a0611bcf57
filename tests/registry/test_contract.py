"""One owner per contract: alias names and tag keys live in airloop.registry, the log schema in airloop.monitoring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from airloop.registry.contract import AUDIT_PREFIX, Alias, Outcome, Tag

REPO = Path(__file__).resolve().parents[2]
PRODUCT = [REPO / "include" / "airloop", REPO / "serving", REPO / "dags", REPO / "plugins", REPO / "benchmarks"]
OWNER = REPO / "include" / "airloop" / "registry"
FORBIDDEN = {a.value for a in Alias} | {o.value for o in Outcome} | {t.value for t in Tag}


def product_files() -> list[Path]:
    return sorted(p for root in PRODUCT for p in root.rglob("*.py"))


def string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_the_scan_sees_the_product_code():
    files = product_files()

    assert len(files) > 30
    assert any(
        literal == Alias.CHAMPION
        for path in files
        if path.is_relative_to(OWNER)
        for _, literal in string_literals(path)
    )


def test_no_alias_outcome_or_tag_literal_outside_airloop_registry():
    found = [
        f"{path.relative_to(REPO)}:{line}: {literal!r}"
        for path in product_files()
        if not path.is_relative_to(OWNER)
        for line, literal in string_literals(path)
        if literal in FORBIDDEN or literal.startswith(AUDIT_PREFIX)
    ]

    assert not found, "use airloop.registry.contract instead of:\n" + "\n".join(found)


@pytest.mark.parametrize("path", sorted((REPO / "serving").glob("*.py")), ids=lambda p: p.name)
def test_serving_holds_no_log_schema_or_writer(path):
    source = path.read_text()
    imports = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }

    assert "pyarrow" not in imports, f"{path.name} writes or reads the log itself"
    assert "pa.schema(" not in source and "to_parquet" not in source
