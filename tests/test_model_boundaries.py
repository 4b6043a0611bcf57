"""Nothing in the platform knows a particular model: no module outside a use case's own folder imports it, and the
platform's packages never name a model. What is specific to a model lives in its spec and its own code."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USECASES = REPO / "include" / "airloop" / "usecases"
PRODUCT = [REPO / "include" / "airloop", REPO / "serving", REPO / "dags", REPO / "plugins"]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _product_modules() -> list[Path]:
    return [p for root in PRODUCT for p in sorted(root.rglob("*.py")) if USECASES not in p.parents]


def test_use_cases_exist_as_their_own_folders():
    assert (USECASES / "readmission" / "transform.py").is_file()
    assert (USECASES / "readmission" / "schema.py").is_file()


def test_no_product_module_outside_a_use_case_imports_one():
    offenders = {
        str(path.relative_to(REPO)): sorted(m for m in _imports(path) if m.startswith("airloop.usecases"))
        for path in _product_modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_a_use_case_imports_no_other_use_case():
    for case in (p for p in USECASES.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for path in case.rglob("*.py"):
            own = f"airloop.usecases.{case.name}"
            others = [m for m in _imports(path) if m.startswith("airloop.usecases.") and not m.startswith(own)]
            assert others == [], f"{path.relative_to(REPO)} imports {others}"


def test_the_platform_code_names_no_model_outside_comments_and_docs():
    """Model names appear in specs, use cases, tests and prose, never in the platform's code (strings included)."""
    from airloop.spec import catalog

    specs = catalog(REPO / "models").specs.values()
    names = {s.name for s in specs} | {s.data.target.name for s in specs} | {s.data.entity for s in specs}
    hits = []
    for path in _product_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and not _is_prose(node.value):
                hits += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in names if name in node.value]
    assert hits == []


def _is_prose(text: str) -> bool:
    """Docstrings, help texts and messages (several lines or a sentence's length), not identifiers or paths."""
    return "\n" in text or len(text) > 60
