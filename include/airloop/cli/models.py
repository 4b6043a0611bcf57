"""``python -m airloop models``: the model specs (each valid one with its DAG ids, each broken file with its error), and
the settings of the model a command names with ``--model`` (``models.default`` without one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airloop.settings import Settings, get_settings
from airloop.spec import Catalog, SpecError
from airloop.spec.schema import STAGES as DAG_STAGES  # the DAGs every model gets, <model>_<stage>


class UnknownModel(SpecError):
    """A command named a model no valid spec has: the message names it and the models there are."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(path, [problem])
        self.args = (problem,)  # the problem alone: it names the model, and the folder or file where it looked


def _known(found: Catalog) -> str:
    known = ", ".join(sorted(found.specs)) or "none"
    broken = ", ".join(str(path) for path in sorted(found.errors))
    return f"known models: {known}" + (f"; broken spec files: {broken}" if broken else "")


def settings_of(model: str | None) -> Settings:
    """The settings of ``model`` (``models.default`` when None).

    Raises:
        UnknownModel: no valid spec has that name (or no model is named and there is no default); the message lists
            the known models, or gives the spec file's own error when that file is broken.
    """
    base = get_settings()
    name = model or base.models.default
    found = base.catalog
    if name and name in found.specs:
        return get_settings(name) if model else base
    if not name:
        raise UnknownModel(found.folder, f"no model named and no models.default in {found.folder}; {_known(found)}")
    for path, error in found.errors.items():
        if name in (path.stem, path.parent.name):
            raise UnknownModel(path, f"model {name!r} cannot be used: {error}")
    raise UnknownModel(found.folder, f"unknown model {name!r} in {found.folder}; {_known(found)}")


def listing(settings: Settings) -> dict[str, Any]:
    """Every spec of ``models.folder``: the valid ones with description, owner, tags and DAG ids; the broken ones with
    their errors."""
    found = settings.catalog
    return {
        "folder": str(found.folder),
        "default": settings.models.default,
        "models": [
            {
                "name": name,
                "file": str(found.paths[name]),
                "description": spec.description,
                "owner": spec.owner,
                "tags": list(spec.tags),
                "default": name == settings.models.default,
                "dags": {stage: spec.dag_id(stage) for stage in DAG_STAGES},
            }
            for name, spec in sorted(found.specs.items())
        ],
        "broken": [
            {"file": str(path), "problems": list(error.problems), "error": str(error)}
            for path, error in sorted(found.errors.items())
        ],
    }


def format_listing(found: dict[str, Any]) -> str:
    """The listing as a person reads it."""
    lines = [f"model specs in {found['folder']} (default: {found['default'] or 'none'})"]
    for model in found["models"]:
        tags = f" [{', '.join(model['tags'])}]" if model["tags"] else ""
        lines.append(f"\n{model['name']}{' (default)' if model['default'] else ''}{tags}: {model['description']}")
        lines.append(f"  DAGs: {', '.join(model['dags'].values())}")
    if not found["models"]:
        lines.append("\nno valid model spec")
    if found["broken"]:
        lines.append("\nbroken spec files:")
        lines += [f"  {b['file']}:\n" + "\n".join(f"    - {p}" for p in b["problems"]) for b in found["broken"]]
    return "\n".join(lines)


def main(as_json: bool = False) -> int:
    """Print the model specs; exit status 1 when a spec file is broken (it is listed with its errors)."""
    found = listing(get_settings())
    print(json.dumps(found, indent=2) if as_json else format_listing(found))
    return 1 if found["broken"] else 0
