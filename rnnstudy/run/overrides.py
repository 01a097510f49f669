"""Dotted overrides (``model.hidden_size=64``), YAML 1.2 loading, and one-line messages for validation errors."""

from __future__ import annotations

import re
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from rnnstudy.errors import ConfigError
from rnnstudy.model.tasks import fixed_T
from rnnstudy.run.config import RunConfig


def check_path(dotted: str, root: type[BaseModel] | None = None, leaf: bool = True) -> None:
    """Raise ValueError unless ``dotted`` names a key of ``root`` (default: a run config); ``leaf``: not a whole section."""
    model: type[BaseModel] = root or RunConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part not in model.model_fields:
            allowed = ", ".join(model.model_fields)
            raise ValueError(f"unknown key {dotted!r}; allowed at this level: {allowed}")
        section = _model_of(model.model_fields[part].annotation)
        if i < len(parts) - 1:
            if section is None:
                raise ValueError(f"unknown key {dotted!r}: {'.'.join(parts[: i + 1])} has no sub-keys")
            model = section
        elif section is not None and leaf:
            raise ValueError(
                f"{dotted!r} is a section, not a key; allowed: {', '.join(f'{dotted}.{k}' for k in section.model_fields)}"
            )


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The section a key's annotation names, also where it is optional (``TSearch | None``); None for a plain key."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def try_override(cfg: RunConfig, overrides: dict[str, Any], where: str) -> RunConfig:
    """``apply_overrides`` whose error names ``where`` (a key of the experiment file) first."""
    try:
        return apply_overrides(cfg, overrides)
    except ConfigError as err:
        raise ValueError(f"{where}: {err}") from None


def nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys to nested mappings."""
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {part} is not a section")
        node[leaf] = value
    return nested


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, section by section."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: dotted key, the bad value, and what is allowed."""
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc) or "(config)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent = _section(root, loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "?"
            msg = f"unknown key; allowed: {allowed}"
        value = e.get("input")
        shown = "" if isinstance(value, dict) or e["type"] == "missing" else f" = {value!r}"
        lines.append(f"{key}{shown}: {msg}" if loc else msg)
    return "\n".join(lines)


def _section(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field is not None else None
        if model is None:
            return None
    return model


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """A new validated config with dotted overrides applied (a new task of fixed length without a T takes its length)."""
    given = nest(overrides)
    data = cfg.model_dump()
    task = given.get("task", {})
    if fixed_T(task) is not None:
        del data["task"]["T"]
    data = merge(data, given)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, RunConfig)) from None


class YamlLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2's numbers and booleans: ``1e-3`` is a float, ``off`` and ``yes`` stay strings."""


YamlLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """Parse YAML text with :class:`YamlLoader`."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def parse_overrides(items: list[str], root: type[BaseModel] | None = None) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``1e-3``, ``true``, ``[1,2]``)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item!r}: overrides are key=value, e.g. model.hidden_size=64")
        try:
            check_path(key, root, leaf=False)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        out[key] = _yaml_scalar(raw)
    return out


def _yaml_scalar(raw: str) -> Any:
    try:
        return read_yaml(raw) if raw else ""
    except yaml.YAMLError:
        return raw
