"""Every numeric param has a valid range, checked when the command starts (pipeline/core/params.py): a
value outside it is one ConfigError naming the param, the value, where it came from and the rule,
before any work. This walks every numeric field of every stage, so a new field without a range fails."""

from __future__ import annotations

import math
import typing

import annotated_types as at
import pytest

from pipeline.core.config import load_config
from pipeline.core.errors import ConfigError
from pipeline.core.params import STAGES


def _numeric(annotation) -> tuple[type, bool] | None:
    """(int or float, whether the param is a list of them) for a numeric field, else None."""
    union = typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType)
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    for a in args:
        if typing.get_origin(a) is list:
            inner = typing.get_args(a)[0]
            base = typing.get_args(inner)[0] if typing.get_origin(inner) is typing.Annotated else inner
            return (base, True) if base in (int, float) else None
        if a in (int, float):
            return a, False
    return None


def _bounds(stage: str, field: str) -> list:
    info = STAGES[stage].model_fields[field]
    found = list(info.metadata)
    for a in typing.get_args(info.annotation):  # list[Annotated[int, Field(ge=..)]]: the item's metadata
        if typing.get_origin(a) is typing.Annotated:
            found += list(typing.get_args(a)[1:])
    flat = []
    for m in found:
        flat += list(getattr(m, "metadata", [m]))
    return [m for m in flat if isinstance(m, at.Ge | at.Gt | at.Le | at.Lt)]


FIELDS = [
    (s, f) for s, model in STAGES.items() for f, i in model.model_fields.items() if _numeric(i.annotation)
]


def _outside(bound, kind: type) -> float:
    step = 1 if kind is int else 1e-9
    if isinstance(bound, at.Ge):
        return bound.ge - step
    if isinstance(bound, at.Gt):
        return bound.gt
    if isinstance(bound, at.Le):
        return bound.le + step
    return bound.lt


def _set(stage: str, field: str, value, as_list: bool) -> str:
    text = f"[{value}]" if as_list else str(value)
    return f"{stage}.{field}={text}"


@pytest.mark.parametrize(("stage", "field"), FIELDS, ids=[f"{s}.{f}" for s, f in FIELDS])
def test_every_numeric_param_refuses_values_outside_its_range(stage, field):
    kind, as_list = _numeric(STAGES[stage].model_fields[field].annotation)
    bounds = _bounds(stage, field)
    assert any(isinstance(b, at.Ge | at.Gt) for b in bounds), f"{stage}.{field} has no lower bound"
    for bound in bounds:
        value = _outside(bound, kind)
        override = _set(stage, field, value, as_list)
        with pytest.raises(ConfigError) as err:
            load_config(None, [override])
        message = err.value.message
        assert f"invalid value for {stage}.{field}" in message and f"--set {override}" in message, message
        assert str(value) in message and ("greater" in message or "less" in message), message
    if kind is float:
        for bad in (math.nan, math.inf):
            with pytest.raises(ConfigError, match=f"invalid value for {stage}.{field}"):
                load_config(None, [_set(stage, field, bad, as_list)])


def test_the_shipped_defaults_lie_inside_every_range():
    config = load_config()
    for stage in STAGES:
        assert config.params(stage) is not None
