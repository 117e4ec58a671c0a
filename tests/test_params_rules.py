"""The parameter schema's rules by hand on a small class of its own: checked at
construction from Python, infinite numbers against numeric rules, the invalid values
generated from the declarations, and what a ParamError carries (devsim/params.py)."""
import dataclasses
import math

import pytest

from devsim.params import Params, ParamError, invalid_values, param


@dataclasses.dataclass(frozen=True)
class Inner(Params):
    """A nested schema."""

    k: int = param(1, ge=1)
    """Something positive."""


@dataclasses.dataclass(frozen=True)
class Sample(Params):
    """A schema of one field of each kind of rule."""

    rate: float = param(0.5, gt=0.0, le=1.0)
    """Between 0 (excluded) and 1."""
    count: int = param(3, ge=1, lt=10)
    """From 1 to 9."""
    mode: str = param("a", choices=("a", "b"))
    """One of two modes."""
    level: int = param(0, choices=(0, 1, 2))
    """A numbered choice."""
    sizes: tuple[int, ...] = param((1,), ge=0)
    """Non-negative sizes."""
    free: float = 0.0
    """A number without rules."""
    inner: Inner = dataclasses.field(default_factory=Inner)
    """A nested schema."""


def fields_by_name():
    return {f.name: f for f in dataclasses.fields(Sample)}


@pytest.mark.parametrize("changes, message", [
    (dict(rate=0.0), "rate: must be > 0.0, got 0.0"),
    (dict(rate=1.5), "rate: must be <= 1.0, got 1.5"),
    (dict(count=10), "count: must be < 10, got 10"),
    (dict(count=0), "count: must be >= 1, got 0"),
    (dict(mode="c"), "mode: must be one of 'a', 'b', got 'c'"),
    (dict(sizes=(2, -1)), "sizes[1]: must be >= 0, got -1"),
    (dict(rate=math.inf), "rate: must be a finite number, got inf"),
    (dict(count=-math.inf), "count: must be a finite number, got -inf"),
    (dict(free=math.nan), "free: must be a number, got nan"),
])
def test_rules_are_checked_when_built_from_python(changes, message):
    with pytest.raises(ParamError) as caught:
        Sample(**changes)
    assert str(caught.value) == message
    assert caught.value.args == (message,) and message in repr(caught.value)


def test_a_number_without_rules_may_be_infinite_and_a_ge_rule_is_not_enough():
    assert Sample(free=math.inf).free == math.inf
    with pytest.raises(ParamError, match="sizes\\[0\\]: must be a finite number"):
        Sample(sizes=(math.inf,))
    with pytest.raises(ParamError, match="inner.k: must be >= 1|k: must be >= 1"):
        Sample(inner=Inner(k=0))


def test_invalid_values_are_generated_from_every_rule():
    f = fields_by_name()
    rate = invalid_values(f["rate"], float)
    assert rate[:2] == [(0.0, "at exclusive minimum"), (1.0 + 1e-9, "above maximum")]
    assert math.isnan(rate[2][0]) and rate[2][1] == "not a number"
    assert invalid_values(f["count"], int)[:3] == [(0, "below minimum"),
                                                   (10, "at exclusive maximum"),
                                                   (2.5, "not an integer")]
    for name, tp, choices in (("mode", str, ("a", "b")), ("level", int, (0, 1, 2))):
        outside = [v for v, why in invalid_values(f[name], tp) if why == "not one of the choices"]
        assert len(outside) == 1 and isinstance(outside[0], tp) and outside[0] not in choices
    sizes = invalid_values(f["sizes"], tuple[int, ...])
    assert ([-1], "below minimum") in sizes and (3, "not a list") in sizes
    nested = [v for v, why in invalid_values(f["inner"], Inner) if why == "not a mapping"]
    assert len(nested) == 1 and not isinstance(nested[0], dict)
    for name, tp in (("rate", float), ("count", int), ("mode", str), ("level", int)):
        for value, why in invalid_values(f[name], tp):
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and why not in ("not an integer",):
                with pytest.raises(ParamError):
                    Sample(**{name: value})
