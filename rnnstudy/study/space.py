"""The search space of an experiment: float, int and categorical dimensions, when each is sampled, and sampling it.

A parameter is sampled only where its ``when`` holds and, for an ``init.*`` parameter, where a
chosen initialisation scheme reads it (each scheme declares its parameters in `rnnstudy.model.inits`):
the experiment's validation and the sweep's trials apply the same rule, :func:`param_applies`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from rnnstudy.model import inits
from rnnstudy.run.config import RunConfig, Strict
from rnnstudy.run.overrides import check_path, try_override

if TYPE_CHECKING:
    import optuna


class FloatParam(Strict):
    """A float search dimension; ``log`` samples on a log scale."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    when: dict[str, Any] = {}

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"low = {self.low} must be below high = {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low = {self.low}")
        return self


class IntParam(FloatParam):
    """An integer search dimension."""

    type: Literal["int"]  # type: ignore[assignment]
    low: int
    high: int


class CategoricalParam(Strict):
    """A categorical search dimension."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool | None] = Field(min_length=1)
    when: dict[str, Any] = {}


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def param_path(key: str) -> str:
    """The config path of a search key: ``init.bias@lstm`` -> ``init.bias``.

    A suffix lets one experiment give a parameter different choices per cell (with ``when``).
    """
    return key.split("@", 1)[0]


#: Stands for a value the search has not chosen yet: it may match anything.
ANY = object()


def current(cfg: RunConfig, dotted: str) -> Any:
    """The value at a dotted key of a run config."""
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _matches(value: Any, wanted: Any) -> bool:
    return value is ANY or (value in wanted if isinstance(wanted, list) else value == wanted)


def param_applies(key: str, spec: FloatParam | CategoricalParam, value_of: Callable[[str], Any]) -> bool:
    """Whether a search parameter is sampled: its ``when`` holds and, for an ``init.*`` parameter, a chosen scheme reads it.

    ``value_of(dotted)`` gives the value so far (the trial's choice or the study's config, or ``ANY``).
    """
    if not all(_matches(value_of(k), wanted) for k, wanted in spec.when.items()):
        return False
    name = param_path(key).removeprefix("init.")
    if not param_path(key).startswith("init.") or name not in inits.tunable_params():
        return True
    schemes = {kind: value_of(f"init.{kind}") for kind in inits.KINDS}
    return any(s is ANY or name in registry[s].params for s, registry in zip(schemes.values(), inits.KINDS.values()))


def check_when(where: str, key: str, wanted: Any, searched: FloatParam | CategoricalParam | None) -> None:
    """Raise ValueError unless a ``when`` condition names a key and a value that can occur."""
    try:
        check_path(key)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    values = wanted if isinstance(wanted, list) else [wanted]
    if isinstance(searched, CategoricalParam):
        unknown = [v for v in values if v not in searched.choices]
        if unknown:
            allowed = ", ".join(map(str, searched.choices))
            raise ValueError(f"{where} = {unknown[0]!r}: never sampled; allowed: {allowed}")
        return
    for value in values:
        try_override(RunConfig(), {key: value}, where)


def suggest(trial: optuna.Trial, space: dict[str, Param], cfg: RunConfig) -> dict[str, Any]:
    """Sample the search space for one trial: a parameter only where :func:`param_applies` holds."""
    chosen: dict[str, Any] = {}
    for key, spec in space.items():
        path = param_path(key)
        if not param_applies(key, spec, lambda k: chosen[k] if k in chosen else current(cfg, k)):
            continue
        if isinstance(spec, CategoricalParam):
            chosen[path] = trial.suggest_categorical(path, spec.choices)
        elif isinstance(spec, IntParam):
            chosen[path] = trial.suggest_int(path, spec.low, spec.high, log=spec.log)
        else:
            chosen[path] = trial.suggest_float(path, spec.low, spec.high, log=spec.log)
    return chosen
