"""Parameter schemas: frozen dataclasses whose fields declare their own constraints.

Every configurable object in devsim (devices, activations, datasets, estimators,
optimizers, the run itself) is a frozen dataclass deriving from :class:`Params`.
A field states its rule as data with :func:`param` (``ge``, ``gt``, ``le``, ``lt``,
``choices``, ``unit``), and a short docstring right below the field says what it
means. The rules are checked when the object is constructed, from YAML or from
Python alike, and the same declarations drive the YAML loader and the generated
config reference, so there is one schema and no second copy of it.

Families of interchangeable parameter classes (all devices, all optimizers, ...)
derive from a family base declared with ``family="..."``; each member registers
itself with ``kind="..."`` and is selected in YAML by its ``type`` key. The members of
a family, plugins included, are :meth:`Params.members` (found through
:mod:`devsim.registry` on first use).

This module belongs to the foundation: it imports nothing of devsim but the registry,
so ``devices/`` and ``trainer/`` can declare their parameters with it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from devsim import registry as _plugins

__all__ = ["Params", "ParamError", "param", "format_path", "check_field", "field_violation"]


class ParamError(ValueError):
    """A value that breaks a declared rule, with the key path where it was found."""

    def __init__(self, path: tuple, message: str, line: int | None = None):
        self.path = tuple(path)
        self.message = message
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = format_path(self.path)
        return f"{where}: {self.message}" if where else self.message

    def under(self, prefix: tuple) -> "ParamError":
        """The same error seen from an enclosing object at ``prefix``."""
        return ParamError(tuple(prefix) + self.path, self.message, self.line)


def format_path(path: tuple) -> str:
    """``("network", "layers", 1, "units")`` -> ``network.layers[1].units``."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += ("." if out else "") + str(key)
    return out


def param(default: Any = MISSING, *, ge=None, gt=None, le=None, lt=None,
          choices=None, unit: str | None = None, default_factory: Any = MISSING):
    """A dataclass field with declared constraints (and a unit for the docs)."""
    rules = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices).items()
             if v is not None}
    metadata = {"rules": rules, "unit": unit}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


_RULE_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _check_scalar(value, rules: dict) -> str | None:
    """The message for the first rule ``value`` breaks, or None."""
    if "choices" in rules and value not in rules["choices"]:
        options = ", ".join(repr(c) for c in rules["choices"])
        return f"must be one of {options}, got {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            return "must be a number, got nan"
        if isinstance(value, float) and not math.isfinite(value):
            if any(k in rules for k in _RULE_TEXT):
                return f"must be a finite number, got {value!r}"
        ops = {"ge": value >= rules.get("ge", 0), "gt": value > rules.get("gt", 0),
               "le": value <= rules.get("le", 0), "lt": value < rules.get("lt", 0)}
        for key, symbol in _RULE_TEXT.items():
            if key in rules and not ops[key]:
                return f"must be {symbol} {rules[key]}, got {value!r}"
    return None


def field_violation(f: dataclasses.Field, value) -> ParamError | None:
    """The error for the first declared rule of field ``f`` that ``value`` breaks (NaN
    breaks every number's)."""
    rules = (f.metadata.get("rules") if f.metadata else None) or {}
    values = value if isinstance(value, tuple) else (value,)
    for i, v in enumerate(values):
        message = _check_scalar(v, rules)
        if message:
            path = (f.name, i) if isinstance(value, tuple) else (f.name,)
            return ParamError(path, message)
    return None


def invalid_values(f: dataclasses.Field, tp) -> list[tuple[Any, str]]:
    """Values of field ``f`` (of type ``tp``) that its declared rules or its type
    forbid, each with the rule it breaks: just below a minimum, just above a maximum,
    a value outside its choices, NaN for a number, a value of another type. Generated
    from the declarations (as scikit-learn generates invalid parameters from its
    constraints), for tests that every one is refused with the field's key path."""
    import typing
    rules = (f.metadata.get("rules") if f.metadata else None) or {}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is not None and type(None) in args:  # X | None: X's invalid values
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    out: list[tuple[Any, str]] = []
    scalar = args[0] if origin is tuple else tp
    numeric = scalar in (int, float)
    if numeric:
        step = 1 if scalar is int else 1e-9
        for key, rule in (("ge", "below minimum"), ("gt", "at exclusive minimum")):
            if key in rules:
                out.append((rules[key] - (step if key == "ge" else 0), rule))
        for key, rule in (("le", "above maximum"), ("lt", "at exclusive maximum")):
            if key in rules:
                out.append((rules[key] + (step if key == "le" else 0), rule))
        out.append((float("nan"), "not a number") if scalar is float
                   else (2.5, "not an integer"))
    if "choices" in rules and scalar is not bool:
        out.append(("not-a-choice" if scalar is str else -12345, "not one of the choices"))
    wrong = {bool: ("yes please", "not a boolean"), str: (12, "not a string"),
             int: ("twelve", "not a number"), float: ("twelve", "not a number")}
    if scalar in wrong:
        out.append(wrong[scalar])
    if origin is tuple:
        out = [([v], why) for v, why in out] + [(3, "not a list")]
    elif isinstance(tp, type) and issubclass(tp, Params):
        out.append((7, "not a mapping"))
    return out


def check_field(obj, f: dataclasses.Field) -> None:
    """Raise :class:`ParamError` if ``obj``'s field ``f`` breaks its declared rules."""
    error = field_violation(f, getattr(obj, f.name))
    if error:
        raise error


@dataclass(frozen=True)
class Params:
    """Base of every parameter dataclass: checks the declared rules at construction.

    Subclasses may add cross-field checks in ``validate()``, raising
    :class:`ParamError` with the offending field's name as its path.
    """

    family: ClassVar[str | None] = None
    kind: ClassVar[str | None] = None
    default_kind: ClassVar[str | None] = None
    """The member of a family that a mapping without ``type`` selects (None: ``type`` is
    required)."""
    _registry: ClassVar[dict[str, type] | None] = None

    def __init_subclass__(cls, family: str | None = None, kind: str | None = None, **kw):
        super().__init_subclass__(**kw)
        if family is not None:
            cls.family = family
            cls._registry = {}
        if kind is not None:
            if cls._registry is None:
                raise TypeError(f"{cls.__name__}: kind={kind!r} given outside a family")
            if kind in cls._registry:
                raise TypeError(f"{cls.family} kind {kind!r} registered twice "
                                f"({cls._registry[kind].__qualname__} and {cls.__qualname__})")
            cls.kind = kind
            cls._registry[kind] = cls

    @classmethod
    def is_family(cls) -> bool:
        """Whether this is a family base (a member is picked by ``type``)."""
        return cls._registry is not None and cls.kind is None

    @classmethod
    def members(cls) -> dict[str, type]:
        """``{type: class}`` of every member of this class's family, plugins included."""
        if cls._registry is None:
            raise TypeError(f"{cls.__name__} belongs to no family")
        base = next(k for k in cls.__mro__ if k.__dict__.get("family") == cls.family)
        _plugins.discover(cls.family, base)
        return dict(cls._registry)

    def __post_init__(self):
        for f in fields(self):
            check_field(self, f)
        self.validate()

    def validate(self) -> None:
        """Cross-field rules; override where a class has any."""

    def replace(self, **changes) -> "Params":
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain data (YAML-ready), with ``type`` for family members."""
        out = {"type": self.kind} if self.kind else {}
        for f in fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out


def _plain(value):
    if isinstance(value, Params):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
