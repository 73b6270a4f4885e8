"""Load YAML into typed pydantic models with errors that name the file, line and key path.

Used for ``edgeops.yaml`` and the training configs. Models derive from :class:`Strict`, which rejects
unknown keys and refuses to coerce types (``"5"`` is not an int, ``1`` is not a bool).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from tools.core.errors import ConfigError
from tools.core.safeyaml import SafeYAML, YAMLLimitError, not_utf8, read_text

__all__ = [
    "Loc",
    "Strict",
    "dump_model",
    "load_model",
    "parse_mapping",
    "parse_model",
    "plain",
    "read_mapping",
]

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class Strict(BaseModel):
    """Base for every config model: unknown keys and wrong types fail loudly."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def plain(node: Any, loc: Loc = (), lines: dict[Loc, int] | None = None) -> Any:
    """Turn ruamel's round-trip tree into plain Python values, recording each key's line number."""
    return _plain(node, loc, {} if lines is None else lines)


def _plain(node: Any, loc: Loc, lines: dict[Loc, int]) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            child = (*loc, str(key))
            try:
                lines[child] = node.lc.key(key)[0] + 1
            except (KeyError, TypeError):  # merged keys (<<) carry no position of their own
                lines[child] = lines.get(loc, 0)
            out[str(key) if not isinstance(key, str) else key] = _plain(value, child, lines)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, value in enumerate(node):
            child = (*loc, i)
            try:
                lines[child] = node.lc.item(i)[0] + 1
            except (KeyError, TypeError):
                lines[child] = lines.get(loc, 0)
            items.append(_plain(value, child, lines))
        return items
    # ruamel's scalar subclasses (ScalarFloat, ScalarInt, *ScalarString) become the builtin types.
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str] | None:
    """The field names allowed at ``loc`` (a path into ``model``), or None when it cannot be resolved."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap_optional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not isinstance(part, str) or part not in annotation.model_fields:
                return None
            annotation = annotation.model_fields[part].annotation
            continue
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is dict and len(args) == 2:
            annotation = args[1]
        elif origin in (list, tuple) and args:
            annotation = args[0]
        else:
            return None
    annotation = _unwrap_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return None


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _describe(err: Any, model: type[BaseModel]) -> str:
    loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1]) or []
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        msg = "unknown key"
        if hint:
            msg += f" (did you mean '{hint[0]}'?)"
        if allowed:
            msg += f"; allowed keys here: {', '.join(allowed)}"
        return msg
    if kind == "missing":
        return "required key is missing"
    value = err.get("input")
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    msg = str(err["msg"])
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ")
    return f"{msg[0].lower()}{msg[1:]} (got {type(value).__name__} {shown})"


def parse_model(
    data: Any,
    model: type[M],
    *,
    source: str,
    lines: dict[Loc, int] | None = None,
    where: Mapping[Loc, str] | None = None,
) -> M:
    """Validate already-loaded data; errors name ``source`` and, when known, the line.

    ``where`` says where a value came from when ``data`` was put together from several places (a config
    and its ``base:``, ``--set`` overrides): a location text per key path (``"base.yaml:12"``,
    ``"--set epochs=five"``); the longest path that is a prefix of a problem's path names it. It takes
    precedence over ``source``:``lines``, which fits data read from one file.
    """
    origins: dict[Loc, str] = {loc: f"{source}:{line}" for loc, line in (lines or {}).items() if line}
    origins.update(where or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            at = next((origins[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in origins), source)
            problems.append(f"{at}: {_format_loc(loc)}: {_describe(err, model)}")
        n = len(problems)
        head = f"{source}: {n} problem{'s' if n > 1 else ''}:\n  " if n > 1 else ""
        raise ConfigError(head + "\n  ".join(problems)) from None


def read_mapping(path: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    """Read ``path`` (YAML, a mapping at the top) into plain values and the line of every key path."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {not_utf8(exc)}") from None
    except YAMLLimitError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse_mapping(text, source=str(path))


def parse_mapping(text: str, *, source: str) -> tuple[dict[str, Any], dict[Loc, int]]:
    """:func:`read_mapping` of a text already read (e.g. a file at a git commit); errors name ``source``."""
    try:
        tree = SafeYAML(typ="rt").load(text)  # configs come through pull requests: no aliases, bounded
    except YAMLLimitError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, CommentedMap):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(tree).__name__}")
    lines: dict[Loc, int] = {}
    data: dict[str, Any] = _plain(tree, (), lines)
    return data, lines


def load_model(path: Path, model: type[M]) -> M:
    """Read ``path`` (YAML) into ``model``; every failure is a :class:`ConfigError` naming the file."""
    data, lines = read_mapping(path)
    return parse_model(data, model, source=str(path), lines=lines)


def dump_model(model: BaseModel) -> str:
    """The model as YAML, defaults filled in: what ``edgeops config check`` prints."""
    import io

    buf = io.StringIO()
    yaml = YAML(typ="rt")  # the round-trip dumper keeps the models' key order; "safe" sorts keys
    yaml.default_flow_style = False
    yaml.dump(model.model_dump(mode="json"), buf)
    return buf.getvalue()
