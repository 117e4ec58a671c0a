"""Invalid configs built from the schema's own declarations: every field of every
registered class (plugins included), wherever the run config puts it, gets values its
rules or type forbid; the CLI must answer each with exit status 2 and one line naming
the file, line and key path, never a traceback."""
import copy
import math
import re
import subprocess
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devsim.cli import main
from devsim.params import Params, format_path, invalid_values
from devsim.runconfig import RunConfig
from devsim.trace import TraceWriter

ROOT = Path(__file__).parents[1]
BASE = {"network": {"layers": [{"units": 10}]}}
"""The smallest valid run config: every other key takes its default."""
TUNE = {"objectives": [{"metric": "final_test_accuracy"}],
        "space": [{"key": "train.optimizer.lr", "type": "float", "low": 0.1, "high": 1.0}],
        "constraints": [{"metric": "sram_bytes", "max": 65536}]}
"""A valid ``tune`` section (its lists need a valid first entry to put a field into)."""


class Case(NamedTuple):
    """One field of one schema class at one place in the run config."""

    slot: tuple
    """Key path of the class in the run config."""
    cls: type
    """The class: a section, or the member of a family chosen there with ``type``."""
    field: object
    hint: object


def _unwrap(tp):
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _slots(cls, path=()):
    """(key path, class) of every section and family member the run config reaches."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp, sub = _unwrap(hints[f.name]), path + (f.name,)
        if typing.get_origin(tp) is tuple and issubclass_params(typing.get_args(tp)[0]):
            tp, sub = typing.get_args(tp)[0], sub + (0,)
        if issubclass_params(tp):
            for member in (tp.members().values() if tp.is_family() else [tp]):
                yield sub, member
                yield from _slots(member, sub)


def issubclass_params(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, Params)


SLOTS = [((), RunConfig)] + list(_slots(RunConfig))
CASES = [Case(slot, cls, f, typing.get_type_hints(cls)[f.name])
         for slot, cls in SLOTS for f in fields(cls)]
FAMILY_SLOTS = sorted({slot for slot, cls in SLOTS if cls.kind is not None})


def _config(slot: tuple, kind: str | None, key: str, value) -> dict:
    """The base config with ``value`` at ``slot.key``; ``kind``: the family member chosen
    at ``slot`` by ``type`` (None for a section)."""
    data = copy.deepcopy(BASE)
    if slot[:1] == ("tune",):
        data["tune"] = copy.deepcopy(TUNE)
    node = data
    for part, following in zip(slot, slot[1:] + (None,)):
        if isinstance(part, int):
            while len(node) <= part:
                node.append({})
            node = node[part]
        else:
            if not isinstance(node.get(part), (dict, list)):
                node[part] = [] if isinstance(following, int) else {}
            node = node[part]
    if kind is not None and node.get("type") != kind:
        node.clear()
        node["type"] = kind
        node.update(_required(next(cls for s, cls in SLOTS if s == slot and cls.kind == kind)))
    node[key] = value
    return data


def _required(cls) -> dict:
    """Valid values of the fields of ``cls`` that have no default (a layer's width, say):
    the least its rules allow."""
    out = {}
    for f in fields(cls):
        if f.default is MISSING and f.default_factory is MISSING:
            rules = (f.metadata or {}).get("rules") or {}
            assert typing.get_type_hints(cls)[f.name] is int, (cls, f.name)
            out[f.name] = rules.get("ge", rules.get("gt", 0) + 1)
    return out


def _case_config(case: Case, value) -> dict:
    return _config(case.slot, case.cls.kind, case.field.name, value)


def _validate(tmp_dir: Path, data: dict, capsys) -> tuple[int, str]:
    path = tmp_dir / "case.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err


def _assert_one_line_at(code: int, err: str, key: tuple):
    pattern = rf"devsim: error: case\.yaml:\d+: {re.escape(format_path(key))}(\[\d+\]|\.type)?: \S"
    assert code == 2, err
    assert err.count("\n") == 1 and re.match(pattern, err), (key, err)
    assert "Traceback" not in err


def test_the_schema_walk_reaches_every_registered_class():
    """Every member of every family (plugins included) and every section has a slot."""
    from devsim.activations import ActivationParams
    from devsim.data import DataParams
    from devsim.device import DeviceParams, NoiseSourceParams
    from devsim.layers import NetworkLayerParams
    from trainer.base import EstimatorParams
    from trainer.optim import OptimizerParams
    reached = {cls for _, cls in SLOTS}
    for family in (DeviceParams, NoiseSourceParams, ActivationParams, EstimatorParams,
                   OptimizerParams, DataParams, NetworkLayerParams):
        assert set(family.members().values()) <= reached, family.family
    assert len(CASES) > 250


def test_every_declared_invalid_value_of_every_field_is_one_line_at_its_key(tmp_path, capsys):
    count = 0
    for case in CASES:
        for value, why in invalid_values(case.field, case.hint):
            code, err = _validate(tmp_path, _case_config(case, value), capsys)
            _assert_one_line_at(code, err, case.slot + (case.field.name,))
            count += 1
    assert count > 600


# ------------------------------------------------------------------ hypothesis
def _float_like(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x24F), max_size=8)
_OTHER = {  # values of other types than the field's
    bool: st.integers() | _TEXT | st.floats(allow_nan=False),
    int: _TEXT | st.booleans() | st.floats(allow_nan=False).filter(lambda x: not x.is_integer()),
    float: _TEXT.filter(lambda s: not _float_like(s)) | st.booleans(),
    str: st.integers() | st.booleans() | st.floats(allow_nan=False),
}
_CONTAINERS = st.lists(st.integers(), min_size=1, max_size=2) | st.dictionaries(
    st.sampled_from("abc"), st.integers(), min_size=1, max_size=2)


def _out_of_range(scalar, rules) -> list:
    """Strategies for numbers the field's ``ge``/``gt``/``le``/``lt`` rules forbid."""
    out = []
    if scalar is int:
        if "ge" in rules:
            out.append(st.integers(max_value=math.ceil(rules["ge"]) - 1))
        if "gt" in rules:
            out.append(st.integers(max_value=math.floor(rules["gt"])))
        if "le" in rules:
            out.append(st.integers(min_value=math.floor(rules["le"]) + 1))
        if "lt" in rules:
            out.append(st.integers(min_value=math.ceil(rules["lt"])))
    elif scalar is float:
        if "ge" in rules:
            out.append(st.floats(max_value=rules["ge"], exclude_max=True, allow_nan=False))
        if "gt" in rules:
            out.append(st.floats(max_value=rules["gt"], allow_nan=False))
        if "le" in rules:
            out.append(st.floats(min_value=rules["le"], exclude_min=True, allow_nan=False))
        if "lt" in rules:
            out.append(st.floats(min_value=rules["lt"], allow_nan=False))
    return out


def invalid(case: Case):
    """Values the case's field forbids: its declared invalid values, and numbers outside
    its range, strings outside its choices and values of other types drawn at random."""
    rules = (case.field.metadata or {}).get("rules") or {}
    tp = _unwrap(case.hint)
    is_tuple = typing.get_origin(tp) is tuple
    scalar = typing.get_args(tp)[0] if is_tuple else tp
    options = [st.sampled_from([v for v, _ in invalid_values(case.field, case.hint)])]
    drawn = _out_of_range(scalar, rules)
    if "choices" in rules and scalar is str:
        drawn.append(_TEXT.filter(lambda s: s not in rules["choices"]))
    if scalar in _OTHER:
        drawn.append(_OTHER[scalar] | _CONTAINERS)
    elif issubclass_params(scalar):
        names = set(scalar.members()) if scalar.is_family() else set()
        drawn.append(st.integers() | st.booleans() | st.lists(st.integers(), min_size=1)
                     | _TEXT.filter(lambda s: s not in names))
    if is_tuple:
        drawn = [d.map(lambda v: [v]) for d in drawn]
    return st.one_of(options + drawn)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_invalid_values_of_any_field_are_one_line_at_its_key(data, tmp_path, capsys):
    case = data.draw(st.sampled_from(CASES), label="case")
    value = data.draw(invalid(case), label="value")
    code, err = _validate(tmp_path, _case_config(case, value), capsys)
    _assert_one_line_at(code, err, case.slot + (case.field.name,))


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(slot=st.sampled_from(FAMILY_SLOTS),
       name=_CONTAINERS | st.lists(_TEXT, min_size=1, max_size=2) | st.integers() | st.booleans())
def test_a_mapping_or_list_where_a_type_name_belongs_is_one_line(slot, name, tmp_path, capsys):
    """``data.type``, ``network.device.type``, ``train.optimizer.type``, ...: a mapping,
    list, number or boolean in place of the name (once a TypeError traceback)."""
    code, err = _validate(tmp_path, _config(slot, None, "type", name), capsys)
    _assert_one_line_at(code, err, slot + ("type",))


@pytest.fixture
def existing(tmp_path):
    """A trace at the output path of the run under test."""
    path = tmp_path / "keep.h5"
    writer = TraceWriter(path, "name: keep\n", seed=0, scalars=["cost"], evals=[], snapshots={})
    writer.scalar(100, cost=0.5)
    writer.close({"steps": 100})
    return path


@pytest.mark.parametrize("slot", [("data",), ("network", "device"), ("network", "node_noise"),
                                  ("train", "estimator"), ("train", "optimizer")])
def test_the_issue_type_slots_refuse_a_mapping_given_with_set(slot, existing, capsys):
    """The cases of the issue, as ``--set KEY.type={a: 1}`` on a bundled config, run over
    an existing trace with ``--overwrite``: one line, and the trace is untouched."""
    key = format_path(slot + ("type",))
    before = existing.read_bytes()
    code = main(["run", str(ROOT / "configs/quickstart.yaml"), "--out", str(existing),
                 "--overwrite", "--set", f"{key}={{a: 1}}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert re.match(rf"devsim: error: quickstart\.yaml:\d+: {re.escape(key)}: must name an? ", err), err
    assert existing.read_bytes() == before


def test_generated_invalid_values_as_a_subprocess(tmp_path):
    """End to end through the interpreter: a mapping as a type name, and a generated
    invalid value of a device field, each one line and no traceback."""
    crossbar = next(c for c in CASES if c.cls.kind == "crossbar" and c.field.metadata.get("rules"))
    value, _ = invalid_values(crossbar.field, crossbar.hint)[0]
    for data, key in ((_config(("data",), None, "type", {"a": 1}), "data.type"),
                      (_case_config(crossbar, value), format_path(crossbar.slot + (crossbar.field.name,)))):
        path = tmp_path / "case.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        proc = subprocess.run([sys.executable, "-m", "devsim", "validate", str(path)],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert re.match(rf"devsim: error: case\.yaml:\d+: {re.escape(key)}(\[0\])?: ", proc.stderr)
        assert "Traceback" not in proc.stderr
