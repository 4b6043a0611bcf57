"""Reading model specs: one YAML file per model (``<folder>/<name>.yaml``, or ``<folder>/<name>/spec.yaml`` for a model
that brings code), validated with file, key and what was expected in every error. Cheap: PyYAML and pydantic only,
so the DAG factory can read every spec while Airflow parses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from airloop.spec.schema import ModelSpec

SPEC_SUFFIXES = (".yaml", ".yml")
FOLDER_SPEC = "spec.yaml"


class SpecError(ValueError):
    """A model spec that cannot be used: the file, the key and what was expected."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        super().__init__(f"model spec {self.path}: " + "; ".join(problems))


def spec_files(folder: Path) -> list[Path]:
    """The spec files in ``folder``, sorted: ``<name>.yaml`` and ``<name>/spec.yaml``."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix in SPEC_SUFFIXES and not p.name.startswith(".")]
    found += [p / FOLDER_SPEC for p in folder.iterdir() if p.is_dir() and (p / FOLDER_SPEC).is_file()]
    return sorted(found)


def _key(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def _problems(error: ValidationError, document: Any) -> list[str]:
    out = []
    for item in error.errors():
        location = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (a typo? see docs/models.md for the keys a spec takes)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("model_type",):
            message = f"{message} (got {item['input']!r:.80})"
        out.append(f"{_key(location)}: {message}")
    return out


def _check_overrides(spec: ModelSpec, sections: Mapping[str, type[BaseModel]]) -> list[str]:
    """Per-model overrides name keys of the platform's sections, with values those sections accept."""
    problems = []
    for section, model in sections.items():
        overrides = getattr(spec, section)
        unknown = sorted(set(overrides) - set(model.model_fields))
        if unknown:
            expected = ", ".join(sorted(model.model_fields))
            problems += [f"{section}.{key}: unknown key (expected one of: {expected})" for key in unknown]
            continue
        try:
            model.model_validate(overrides)
        except ValidationError as error:
            problems += [
                f"{section}.{_key(tuple(item['loc']))}: {item['msg']} (got {item.get('input')!r:.80})"
                for item in error.errors()
            ]
    return problems


def parse_spec(path: Path, text: str) -> ModelSpec:
    """Validate the YAML ``text`` of the spec at ``path``; raises SpecError naming each bad key."""
    from airloop.settings import parse_yaml

    try:
        document = parse_yaml(text)
    except yaml.YAMLError as error:
        raise SpecError(path, [f"not valid YAML: {error}"]) from error
    if not isinstance(document, dict):
        raise SpecError(path, [f"(top level): expected a mapping of keys, got {type(document).__name__}"])
    expected_name = path.parent.name if path.name == FOLDER_SPEC else path.stem
    if document.get("name") != expected_name:
        raise SpecError(path, [f"name: must be the file's name {expected_name!r} (got {document.get('name')!r})"])
    try:
        spec = ModelSpec.model_validate(document)
    except ValidationError as error:
        raise SpecError(path, _problems(error, document)) from error
    from airloop.settings import BatchSettings, LoopSettings, MonitoringSettings, ServingSettings

    sections = {"monitoring": MonitoringSettings, "loop": LoopSettings, "serving": ServingSettings}
    problems = _check_overrides(spec, {**sections, "batch": BatchSettings})
    if problems:
        raise SpecError(path, problems)
    return spec


def load_spec(path: Path) -> ModelSpec:
    """The validated spec in the file ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(path, [f"cannot be read: {error.strerror}"]) from error
    return _cached(path.resolve(), text)


@lru_cache(maxsize=256)
def _cached(path: Path, text: str) -> ModelSpec:
    return parse_spec(path, text)


@dataclass(frozen=True)
class Catalog:
    """Every spec of a folder: the valid ones by name, the broken ones by file with their errors."""

    folder: Path
    specs: dict[str, ModelSpec]
    paths: dict[str, Path]
    errors: dict[Path, SpecError]

    def get(self, name: str) -> ModelSpec:
        """The spec of model ``name``; a clear error when it is broken or absent."""
        if name in self.specs:
            return self.specs[name]
        for path, error in self.errors.items():
            if path.stem == name or path.parent.name == name:
                raise error
        known = ", ".join(sorted(self.specs)) or "none"
        raise SpecError(self.folder / f"{name}.yaml", [f"no such model spec in {self.folder} (models: {known})"])


def catalog(folder: Path) -> Catalog:
    """Read every spec in ``folder``: one broken spec is reported with its file and never hides the others."""
    specs: dict[str, ModelSpec] = {}
    paths: dict[str, Path] = {}
    errors: dict[Path, SpecError] = {}
    for path in spec_files(folder):
        try:
            spec = load_spec(path)
        except SpecError as error:
            errors[path] = error
            continue
        specs[spec.name] = spec
        paths[spec.name] = path
    return Catalog(folder, specs, paths, errors)


def find(folder: Path, name: str) -> ModelSpec:
    """The valid spec of model ``name`` in ``folder``, reading its own file only (``<name>.yaml`` or
    ``<name>/spec.yaml``); when there is none, the whole folder is read for an error that lists what is there."""
    for path in (folder / f"{name}.yaml", folder / f"{name}.yml", folder / name / FOLDER_SPEC):
        if path.is_file():
            return load_spec(path)
    return catalog(folder).get(name)


def resolve(entry_point: str) -> Any:
    """The object an entry point ``package.module:attribute`` names (a model's own code)."""
    module_name, _, attribute = entry_point.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise SpecError(Path(module_name), [f"entry point {entry_point!r} cannot be imported: {error}"]) from error
    return target
