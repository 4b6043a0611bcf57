"""``python -m airloop config-reference``: the Markdown reference of every setting, generated from the code.

Each leaf field of :class:`~airloop.settings.Settings` becomes one row: dotted name, environment variable, type, the
default shipped in ``config/airloop.yaml`` (else the built-in one) and the comment above its key in that file. The
rows are walked from the model, so a new field shows up here as soon as it is declared; ``docs/configuration.md`` is
this output, and a test fails when it is stale.
"""

from __future__ import annotations

import json
import re
import sys
import types
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from airloop.settings import CONFIG_FILE, Settings, packaged_config

COMMAND = "python -m airloop config-reference --output docs/configuration.md"
GENERAL = "general"
COLUMNS = ("setting", "environment variable", "type", "default", "description")
# A null default of a field named like this means "unset, supply it from a secret", not the literal value null.
SECRET_NAME = re.compile(r"(^|_)(key|secret|password|token|credentials?)$")
NO_DEFAULT = "—"
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*)\s*:(?P<rest>.*)$")
_COMMENT_LINE = re.compile(r"^(?P<indent> *)#(?P<text>.*)$")


@dataclass(frozen=True)
class Leaf:
    """One setting: a field that is not itself a section of settings."""

    path: tuple[str, ...]
    field: FieldInfo

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def section(self) -> str:
        return self.path[0] if len(self.path) > 1 else GENERAL


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[Leaf]:
    """Every setting of ``model`` in declaration order, descending into nested sections; dicts and lists are leaves."""
    found = []
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            found.extend(leaves(field.annotation, (*prefix, name)))
        else:
            found.append(Leaf((*prefix, name), field))
    return found


def env_var(path: tuple[str, ...], settings_cls: type[Settings] = Settings) -> str:
    """The environment variable that sets ``path``, e.g. ``("serving", "api_key")`` -> ``AIRLOOP_SERVING__API_KEY``."""
    config = settings_cls.model_config
    return (config.get("env_prefix") or "") + (config.get("env_nested_delimiter") or "__").join(path).upper()


def type_name(annotation: Any) -> str:
    """A readable type: ``int``, ``str | None``, ``ab | shadow`` for a Literal or an Enum, ``dict[str, float]``."""
    if annotation is type(None):
        return "None"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " | ".join(str(value) for value in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(arg) for arg in args)}]"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(str(member.value) for member in annotation)
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


@dataclass(frozen=True)
class YamlKey:
    """What the defaults file says about one key: its comment, or the commented sibling above it that names it."""

    comment: str
    covered_by: str | None


def _comment_text(lines: list[str]) -> str:
    # Comments wrap prose at 120 characters: rejoin it. An indented comment line is a row of a little table (the roles
    # in `security`): keep it on a line of its own.
    out = ""
    previous_indented = False
    for line in lines:
        indented = line.startswith("  ")
        text = " ".join(line.split())
        if not text:
            continue
        if out:
            out += "<br>" if indented or previous_indented else " "
        out += text
        previous_indented = indented
    return out


def _inline_comment(rest: str) -> str:
    """The ``# comment`` after a value on a key's line, ignoring ``#`` inside quotes."""
    quote = None
    for index, char in enumerate(rest):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or rest[index - 1].isspace()):
            return rest[index + 1 :]
    return ""


def yaml_comments(text: str) -> dict[str, YamlKey]:
    """The comment lines directly above each key of a YAML file (same indentation, no blank line between), by path.

    A key without a comment of its own is ``covered_by`` the nearest commented sibling above it in the same run of
    lines (no blank line between) whose comment names it: the defaults file describes some groups of keys with one
    comment. Mere adjacency is not enough, or a new key added without a comment would borrow its neighbour's.
    """
    found: dict[str, YamlKey] = {}
    stack: list[tuple[int, str]] = []
    pending: list[tuple[int, str]] = []
    commented: dict[tuple[str, ...], list[str]] = {}  # parent path -> its commented keys in this run of lines
    for line in text.splitlines():
        if not line.strip():
            pending, commented = [], {}
            continue
        if comment := _COMMENT_LINE.match(line):
            pending.append((len(comment["indent"]), comment["text"].removeprefix(" ")))
            continue
        key = _KEY_LINE.match(line)
        if key is None:  # a list item or a continuation: not a key of a mapping
            pending = []
            continue
        indent = len(key["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = tuple(name for _, name in stack)
        stack.append((indent, key["key"]))
        above = []
        for comment_indent, comment_text in reversed(pending):
            if comment_indent != indent:
                break
            above.insert(0, comment_text)
        pending = []
        own = _comment_text([*above, _inline_comment(key["rest"])])
        dotted = ".".join((*parent, key["key"]))
        siblings = commented.setdefault(parent, [])
        names = re.compile(rf"\b{re.escape(key['key'])}\b")
        covered_by = None if own else next((s for s in reversed(siblings) if names.search(found[s].comment)), None)
        found[dotted] = YamlKey(own, covered_by)
        if own:
            siblings.append(dotted)
    return found


def yaml_value(data: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    """``(True, value)`` when the loaded YAML has ``path`` (even as null), else ``(False, None)``."""
    for name in path:
        if not isinstance(data, dict) or name not in data:
            return False, None
        data = data[name]
    return True, data


def shipped_defaults() -> Path:
    """The defaults file as shipped: ``./config/airloop.yaml`` in a checkout, else the packaged copy.

    ``$AIRLOOP_CONFIG`` is ignored on purpose: the reference documents the shipped defaults, not one deployment's.
    """
    local = Path.cwd() / "config" / CONFIG_FILE
    return local if local.is_file() else packaged_config(CONFIG_FILE)


def _cell(text: str) -> str:
    return text.replace("|", r"\|")


def _prose(text: str) -> str:
    """Comment text as Markdown: ``<home>`` outside code spans would vanish as an HTML tag, so escape it there."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("<", "&lt;").replace(">", "&gt;").replace("&lt;br&gt;", "<br>")
    return _cell("`".join(parts))


def _default(leaf: Leaf, shipped: Any) -> str:
    present, value = yaml_value(shipped, leaf.path)
    if not present:
        value = leaf.field.get_default(call_default_factory=True)
        if value is PydanticUndefined:
            return ""
    if value is None and SECRET_NAME.search(leaf.path[-1]):
        return NO_DEFAULT
    return _cell(f"`{json.dumps(to_jsonable_python(value), ensure_ascii=False, default=str)}`")


def _description(leaf: Leaf, comments: dict[str, YamlKey]) -> str:
    key = comments.get(leaf.name)
    if key and key.comment:
        return _prose(key.comment)
    if leaf.field.description:
        return _prose(leaf.field.description)
    if key and key.covered_by:
        return f"See `{key.covered_by}`."
    return ""


def _header(settings_cls: type[Settings]) -> list[str]:
    example = env_var(("monitoring", "psi_overrides"), settings_cls)
    return [
        "# Configuration reference",
        "",
        f"Generated by `{COMMAND}` from `airloop.settings.Settings` and `config/airloop.yaml`; do not edit by hand.",
        "",
        "Precedence: environment variables > the config file (`$AIRLOOP_CONFIG`, else `./config/airloop.yaml`, else "
        "the packaged copy) > built-in defaults; the default column shows the value shipped in `config/airloop.yaml`.",
        "",
        f"Dict and list settings take JSON in the environment, e.g. `{example}='{{\"age\": 0.1}}'`; `—` is a secret "
        "with no default (set it through the environment).",
    ]


def reference(settings_cls: type[Settings] = Settings, defaults: Path | None = None) -> str:
    """The Markdown reference of every setting of ``settings_cls``, one table per section.

    Args:
        settings_cls: the settings model to walk.
        defaults: the YAML defaults file whose values and comments to show; :func:`shipped_defaults` when None.
    """
    text = (defaults or shipped_defaults()).read_text(encoding="utf-8")
    shipped = yaml.safe_load(text) or {}
    comments = yaml_comments(text)
    by_section: dict[str, list[Leaf]] = {GENERAL: []}
    for leaf in leaves(settings_cls):
        by_section.setdefault(leaf.section, []).append(leaf)
    lines = [*_header(settings_cls), "", "## Settings"]
    for section, rows in by_section.items():
        if not rows:
            continue
        lines += ["", f"### {section}", ""]
        if section != GENERAL and (doc := (settings_cls.model_fields[section].annotation.__doc__ or "").strip()):
            lines += [_prose(" ".join(doc.split("\n\n")[0].split())), ""]
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for leaf in rows:
            cells = (
                f"`{leaf.name}`",
                f"`{env_var(leaf.path, settings_cls)}`",
                _cell(f"`{type_name(leaf.field.annotation)}`"),
                _default(leaf, shipped),
                _description(leaf, comments),
            )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(output: Path | None = None) -> int:
    """Print the reference, or write it to ``output``."""
    text = reference()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    return 0
