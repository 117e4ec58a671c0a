"""Contract table of the configuration schema: every parameter class a config can hold
(the run config's sections and every registered member of every family, plugins
included) documents its fields, rejects every value its declared rules forbid with the
key path, and survives YAML and pickle round trips."""
from __future__ import annotations

import dataclasses
import math
import pickle
import typing

import pytest
import yaml

from contracts import schema_classes, table
from devsim.config import ConfigError, from_data
from devsim.docs import describe_field
from devsim.params import ParamError, format_path, invalid_values

CLASSES = schema_classes()
PHYSICAL = ("device", "noise", "activation")
"""Families of physical models: their real-valued fields state a unit ("1":
dimensionless)."""


def _id(cls):
    return f"{cls.family}:{cls.kind}" if cls.kind else cls.__name__


ROWS = table("schema classes", [pytest.param(cls, id=_id(cls)) for cls in CLASSES])
FIELD_ROWS = table("schema fields", [
    pytest.param(cls, f, id=f"{_id(cls)}.{f.name}")
    for cls in CLASSES for f in dataclasses.fields(cls)])


def _loader(cls):
    """(class to load through, extra keys): a family member is loaded through its
    family base with its ``type``, as configs do."""
    for klass in cls.__mro__[1:]:
        if getattr(klass, "is_family", None) and klass.is_family() and cls.kind:
            return klass, {"type": cls.kind}
    return cls, {}


@pytest.mark.parametrize("cls, f", FIELD_ROWS)
def test_every_field_is_documented_and_physical_numbers_state_a_unit(cls, f):
    assert describe_field(cls, f.name), f"{cls.__name__}.{f.name} has no docstring"
    tp = typing.get_type_hints(cls)[f.name]
    scalar = [a for a in (typing.get_args(tp) or (tp,)) if a is not type(None)][0]
    if typing.get_origin(scalar) is tuple:
        scalar = typing.get_args(scalar)[0]
    if scalar is float and cls.family in PHYSICAL:
        assert (f.metadata or {}).get("unit"), f"{cls.__name__}.{f.name} states no unit"


@pytest.mark.parametrize("cls, f", FIELD_ROWS)
def test_every_value_the_rules_forbid_is_refused_with_its_key_path(cls, f):
    loader, extra = _loader(cls)
    values = invalid_values(f, typing.get_type_hints(cls)[f.name])
    for value, why in values:
        with pytest.raises(ConfigError) as err:
            from_data(loader, {**extra, f.name: value}, source="contract.yaml")
        lines = err.value.messages
        assert all("\n" not in m for m in lines)
        path = format_path((f.name,))
        assert any(m.startswith("contract.yaml") and f": {path}" in m for m in lines), \
            f"{why}: {value!r} refused without the path {path}: {lines}"


def _defaults(cls):
    """The class with every default, or None where it has required keys (the shipped
    configs' round trips cover those: tests/test_contract_configs.py)."""
    try:
        return cls()
    except (TypeError, ParamError):
        return None


@pytest.mark.parametrize("cls", [p for p in ROWS if _defaults(p.values[0]) is not None])
def test_defaults_round_trip_through_yaml_and_pickle(cls):
    params = _defaults(cls)
    loader, _ = _loader(cls)
    text = yaml.safe_dump(params.to_dict())
    assert from_data(loader, yaml.safe_load(text)) == params
    assert pickle.loads(pickle.dumps(params)) == params


def test_nan_is_refused_for_every_real_field():
    """NaN is never a meaningful setting, bounded field or not."""
    seen = 0
    for cls in CLASSES:
        loader, extra = _loader(cls)
        for f in dataclasses.fields(cls):
            if typing.get_type_hints(cls)[f.name] in (float, float | None):
                seen += 1
                with pytest.raises(ConfigError, match=f"{f.name}: must be a number, got nan"):
                    from_data(loader, {**extra, f.name: math.nan})
    assert seen > 50
