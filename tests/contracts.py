"""The rows of the contract tables: everything registered, found by discovery.

Every table is generated from the registries (:meth:`devsim.params.Params.members`,
:func:`devsim.registry.preset_files`), so a device, estimator, optimizer, activation,
noise source, data source or preset added by a module of this repository or by an
installed plugin is covered with no edit here. ``conftest.py`` prints what each table
covered at the end of the run.
"""
from __future__ import annotations

import dataclasses
import typing
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from devsim.activations import ActivationParams
from devsim.config import from_data
from devsim.data import DataParams
from devsim.device import DeviceParams, NoiseSourceParams
from devsim.layers import Conv2DParams, DepthwiseConv2DParams, LayerParams, NetworkLayerParams
from devsim.params import Params
from devsim.registry import GROUPS, preset_files
from devsim.runconfig import RunConfig
from trainer.base import EstimatorParams
from trainer.optim import OptimizerParams

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {base.family: base for base in (DeviceParams, NoiseSourceParams, ActivationParams,
                                           EstimatorParams, OptimizerParams, DataParams,
                                           NetworkLayerParams)}
"""Every family base, by family name (the registry groups name the same families)."""
assert set(FAMILIES) == set(GROUPS)

COVERED: dict[str, list[str]] = {}
"""Table name -> the row ids it generated (printed by conftest's terminal summary)."""


def _record(table: str, ids: list[str]) -> None:
    COVERED.setdefault(table, [])
    COVERED[table] += [i for i in ids if i not in COVERED[table]]


def origin(cls: type) -> str:
    """Where a registered class comes from: devsim itself or a plugin distribution."""
    top = cls.__module__.split(".")[0]
    if top in ("devsim", "devices", "trainer"):
        return "devsim"
    for dist in metadata.distributions():
        if top in (dist.read_text("top_level.txt") or "").split() or any(
                ep.value.split(":")[0].split(".")[0] == top for ep in dist.entry_points):
            return f"plugin {dist.metadata['Name']}"
    return f"module {cls.__module__}"


def registered() -> list[tuple[str, str, type]]:
    """(family, kind, class) of every member of every family."""
    return [(family, kind, cls) for family, base in FAMILIES.items()
            for kind, cls in sorted(base.members().items())]


def schema_classes() -> list[type]:
    """Every parameter class a config can hold: the run config's sections, found by
    walking its fields, plus every registered member and the classes its fields hold."""
    seen: list[type] = []

    def walk(cls):
        if cls in seen:
            return
        seen.append(cls)
        for f in dataclasses.fields(cls):
            for tp in _params_types(typing.get_type_hints(cls)[f.name]):
                for member in (tp.members().values() if tp.is_family() else (tp,)):
                    walk(member)

    walk(RunConfig)
    for _, _, cls in registered():
        walk(cls)
    return seen


def _params_types(tp) -> list[type]:
    out = []
    for arg in typing.get_args(tp) or (tp,):
        arg = typing.get_args(arg)[0] if typing.get_origin(arg) is tuple else arg
        if isinstance(arg, type) and issubclass(arg, Params):
            out.append(arg)
    return out


def presets() -> list[tuple[str, Path, str, type]]:
    """(name, file, family, class) of every installed preset, its family found from the
    ``type`` it declares."""
    rows = []
    for name, path in sorted(preset_files().items()):
        kind = yaml.safe_load(path.read_text()).get("type")
        owners = [(family, base.members()[kind]) for family, base in FAMILIES.items()
                  if kind in base.members()]
        assert len(owners) == 1, f"preset {name} ({path}): type {kind!r} is in families " \
                                 f"{[f for f, _ in owners]}, expected exactly one"
        rows.append((name, path, *owners[0]))
    return rows


def load_preset(path: Path, family: str) -> Params:
    return from_data(FAMILIES[family], yaml.safe_load(path.read_text()), source=path.name)


def device_rows() -> list:
    """pytest params: the default configuration of every device model and every device
    preset (plugins included)."""
    rows = [(kind, cls()) for kind, cls in sorted(DeviceParams.members().items())]
    rows += [(name, load_preset(path, family)) for name, path, family, _ in presets()
             if family == "device"]
    _record("devices", [name for name, _ in rows])
    return [pytest.param(params, id=name) for name, params in rows]


WEIGHTED_LAYERS = {"dense": (LayerParams(units=6), (9,)),
                   "conv2d": (Conv2DParams(channels=6), (3, 3, 1)),
                   "depthwise_conv2d": (DepthwiseConv2DParams(depth_multiplier=3), (3, 3, 2))}
"""An instance of every layer kind with parameters whose parameter matrix is (6, 9), with
the input it takes."""


def layer_rows() -> list:
    """pytest params: every registered layer kind with parameters (a kind missing from
    :data:`WEIGHTED_LAYERS` fails here, so a new kind gets its row)."""
    kinds = sorted(k for k, cls in NetworkLayerParams.members().items() if cls.has_params)
    assert set(kinds) == set(WEIGHTED_LAYERS), \
        f"give every layer kind with parameters a row of WEIGHTED_LAYERS: {kinds}"
    return table("layer kinds on devices",
                 [pytest.param(WEIGHTED_LAYERS[kind], id=kind) for kind in kinds])


def table(name: str, rows: list) -> list:
    """Record the ids of a table's pytest params and return them."""
    _record(name, [p.id for p in rows])
    return rows
