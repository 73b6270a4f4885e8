"""``docs/configuration.md``, generated from the typed models of ``edgeops.yaml`` so it cannot drift.

    edgeops config reference > docs/configuration.md     # tests/test_configref.py keeps the file current

Every key, its type, default, constraints and description come from :mod:`tools.core.config` (a field
without a
description is an error here, so a new key cannot land undocumented).
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tools.core.config import EdgeopsConfig, RingConfig

__all__ = ["render_reference"]

_HEADER = """\
# Configuration reference: `edgeops.yaml`

Generated from the typed models in `tools/core/config.py` by `edgeops config reference`; do not edit by hand
(`tests/test_configref.py` fails when this file is not current). The committed `edgeops.yaml` is the
annotated example; `edgeops config check` prints the effective configuration with every default filled in.

Unknown keys and wrong types are errors that name the file, the line and the key path. Secrets never go in
this file: S3 credentials come from `AWS_*` variables (or OIDC in CI), the PostgreSQL DSN from
`EDGEOPS_PG_DSN` or `--pg`, the signing key from `EDGEOPS_SIGNING_KEY`, the GitHub token from `GITHUB_TOKEN`
(or minted from `EDGEOPS_GITHUB_APP_ID` and `EDGEOPS_GITHUB_APP_PRIVATE_KEY`).
"""


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"map of {_type(args[0])} → {_type(args[1])}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping (below)"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(below)"
    return f"`{json.dumps(value)}`"


def _constraints(info: FieldInfo) -> str:
    found = []
    for item in info.metadata:
        for name, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, name, None)
            if value is not None:
                found.append(f"{symbol} {value}")
    return ", ".join(found)


def _section(
    title: str, model: type[BaseModel], out: list[str], nested: list[tuple[str, type[BaseModel]]]
) -> None:
    out += [f"## `{title}`" if title else "## Top level", ""]
    if model.__doc__ and title:
        out += [" ".join(model.__doc__.split()), ""]
    out += ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
    for name, info in model.model_fields.items():
        if not info.description:
            raise ValueError(f"{model.__name__}.{name} has no description: add one in tools/core/config.py")
        path = f"{title}.{name}" if title else name
        out.append(
            f"| `{path}` | {_type(info.annotation)} | {_default(info)} | {_constraints(info)} | "
            f"{info.description} |"
        )
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((path, annotation))
        elif typing.get_origin(annotation) is dict and typing.get_args(annotation)[1] is RingConfig:
            nested.append((f"{path}.<ring>", RingConfig))
    out.append("")


def render_reference() -> str:
    out = [_HEADER]
    queue: list[tuple[str, type[BaseModel]]] = [("", EdgeopsConfig)]
    while queue:
        title, model = queue.pop(0)
        nested: list[tuple[str, type[BaseModel]]] = []
        _section(title, model, out, nested)
        queue[0:0] = nested
    return "\n".join(out).rstrip("\n") + "\n"
