"""``rnnstudy config``: the resolved configuration as YAML, each key with its default, type, allowed values and meaning.

Generated from the config models themselves (field types, constraints, docstrings), so it cannot
drift from what the harness accepts.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel

from rnnstudy.model import inits
from rnnstudy.model.tasks import TASKS

#: Keys whose allowed values come from a registry rather than the type.
REGISTRIES = {
    ("InitConfig", "recurrent"): inits.RECURRENT,
    ("InitConfig", "input"): inits.INPUT,
    ("InitConfig", "bias"): inits.BIAS,
    ("TaskConfig", "name"): TASKS,
}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice"
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(annotation)]
        return " or ".join("null" if p == "NoneType" else p for p in parts)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _allowed(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    registry = REGISTRIES.get((model.__name__, name))
    if registry is not None:
        return ", ".join(registry)
    literals = [a for a in _walk(field.annotation) if typing.get_origin(a) is Literal]
    if literals:
        return ", ".join(str(v) for lit in literals for v in typing.get_args(lit))
    bounds = []
    metas = [*field.metadata, *(m for a in _walk(field.annotation) for m in getattr(a, "__metadata__", ()))]
    metas += [m for meta in metas for m in getattr(meta, "metadata", ())]  # constraints held by a nested Field(...)
    for meta in metas:
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{symbol} {value}")
    return ", ".join(dict.fromkeys(bounds)) or "any"


def _walk(annotation: Any) -> list[Any]:
    out = [annotation]
    for arg in typing.get_args(annotation):
        out += _walk(arg)
    return out


def _scalar(value: Any) -> str:
    return json.dumps(value.model_dump(mode="json") if isinstance(value, BaseModel) else value, default=str)


def describe(config: BaseModel, indent: int = 0) -> list[str]:
    """YAML lines of a config: ``key: value  # type; default ...; allowed ...; description``."""
    lines = []
    model = type(config)
    for name, field in model.model_fields.items():
        value = getattr(config, name)
        pad = "  " * indent
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:  # {(type(value).__doc__ or '').strip().splitlines()[0]}")
            lines += describe(value, indent + 1)
            continue
        default = "required" if field.is_required() else f"default {_scalar(field.get_default(call_default_factory=True))}"
        note = f"{_type_name(field.annotation)}; {default}; allowed: {_allowed(model, name)}"
        if field.description:
            note += f"; {field.description}"
        lines.append(f"{pad}{name}: {_scalar(value)}  # {note}")
    return lines
