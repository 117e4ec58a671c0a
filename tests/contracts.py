"""The rows of the contract tables: everything registered, found by discovery.

Every table is generated from the registries (:meth:`devsim.params.Params.members`,
:func:`devsim.registry.preset_files`), so a device, estimator, optimizer, activation,
noise source, data source or preset added by a module of this repository or by an
installed plugin is covered with no edit here. ``conftest.py`` prints what each table
covered at the end of the run.
"""
from __future__ import annotations

import dataclasses
import itertools
import typing
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml

from devsim.activations import ActivationParams
from devsim.bench import Bench
from devsim.config import from_data
from devsim.data import DataParams
from devsim.device import DeviceParams, NoiseSourceParams
from devsim.layers import Conv2DParams, DepthwiseConv2DParams, LayerParams, NetworkLayerParams
from devsim.network import Network, NetworkParams
from devsim.params import ParamError, Params
from devsim.registry import GROUPS, preset_files
from devsim.runconfig import RunConfig
from trainer.base import EstimatorParams, Setup, Timescales, Window
from trainer.optim import OptimizerParams

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {base.family: base for base in (DeviceParams, NoiseSourceParams, ActivationParams,
                                           EstimatorParams, OptimizerParams, DataParams,
                                           NetworkLayerParams)}
"""Every family base, by family name (the registry groups name the same families)."""
assert set(FAMILIES) == set(GROUPS)

COVERED: dict[str, list[str]] = {}
"""Table name -> the row ids it generated (printed by conftest's terminal summary)."""


def record(table: str, ids: list[str]) -> None:
    """Add row ids to a table's record (rows found while the tests run: refusals)."""
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
    record("devices", [name for name, _ in rows])
    return [pytest.param(params, id=name) for name, params in rows]


def activation_rows() -> list:
    """pytest params: the default configuration of every activation (stateful neurons
    included) and every activation preset (plugins included)."""
    return _family_rows("activations", ActivationParams)


def noise_rows() -> list:
    """pytest params: the default configuration of every intrinsic node-noise source and
    every noise preset (plugins included)."""
    return _family_rows("noise sources", NoiseSourceParams)


def _family_rows(table_name: str, base: type) -> list:
    rows = [(kind, cls()) for kind, cls in sorted(base.members().items())]
    rows += [(name, load_preset(path, family)) for name, path, family, _ in presets()
             if family == base.family]
    record(table_name, [name for name, _ in rows])
    return [pytest.param(params, id=name) for name, params in rows]


ESTIMATOR_PRODUCTS = {"mgd": ("target", "mode", "perturbation"),
                      "np": ("perturbation", "passes"), "anp": ("perturbation", "passes"),
                      "inp": ("perturbation", "passes"),
                      "qzo": ("difference", "scale_correction")}
"""Choice fields of built-in estimators whose every combination is a variant."""
ESTIMATOR_EXTRAS = {"mgd": ({"target": "weights", "integrator": "lowpass"},
                            {"mode": "analog", "integrator": "lowpass"}),
                    "np": ({"draws": 2},), "anp": ({"draws": 2, "passes": "noisy_noisy"},),
                    "inp": ({"draws": 2},),
                    "qzo": ({"node_from": 0, "difference": "central"},)}
"""Further combinations of built-in estimators worth a row of their own."""
SWITCH_ON = {"decorrelation_lr": 0.01, "cost_noise": 1e-3, "cost_change_clip": 0.05}
"""Values that switch on a feature whose default 0 means off (others: 0.1)."""


def estimator_variants() -> list[tuple[str, Params | ParamError]]:
    """(id, params) of every registered estimator (plugins included): its defaults, each
    value of every choice or flag on its own, every feature whose default switches it
    off (a float of default 0, an optional of default None) switched on, and for
    built-in kinds the combinations listed above. A combination the schema refuses
    comes with its :class:`~devsim.params.ParamError` in place of the params."""
    rows: dict[str, Params | ParamError] = {}
    for kind, cls in sorted(EstimatorParams.members().items()):
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        hints = typing.get_type_hints(cls)
        overrides: list[dict] = [{}]
        for name, f in fields.items():
            rules = f.metadata.get("rules", {})
            choices = rules.get("choices") or ((True, False) if hints[name] is bool else ())
            overrides += [{name: v} for v in choices if v != f.default]
            if f.default == 0.0 and hints[name] is float and "ge" in rules:
                overrides.append({name: SWITCH_ON.get(name, 0.1)})
            elif f.default is None and "ge" in rules:
                overrides.append({name: rules["ge"]})
        product = ESTIMATOR_PRODUCTS.get(kind, ())
        overrides += [dict(zip(product, values)) for values in itertools.product(
            *(fields[name].metadata["rules"]["choices"] for name in product))]
        overrides += list(ESTIMATOR_EXTRAS.get(kind, ()))
        for over in overrides:
            over = {k: v for k, v in over.items() if v != fields[k].default}
            key = kind + ("[" + ",".join(f"{k}={v}" for k, v in sorted(over.items())) + "]"
                          if over else "")
            if key not in rows:
                try:
                    rows[key] = cls(**over)
                except ParamError as error:
                    rows[key] = error
    return list(rows.items())


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
    record(name, [p.id for p in rows])
    return rows


def bench(device: DeviceParams | None = None, widths=(4, 5, 3), activations=None,
          seed: int = 0, loss: str = "mse", **network) -> Bench:
    """A network of layer ``widths`` (n_in, ..., n_out) on ``device`` (the ideal one if
    None) on the lab bench. The initial weights come from a stream of their own, the
    same for every ``seed``; devices, neurons and node noise draw from ``seed``.
    ``activations`` default to ReLU on hidden layers and identity on the output (what
    integer devices accept)."""
    acts = activations or ([ActivationParams.members()["relu"]()] * (len(widths) - 2)
                           + [ActivationParams.members()["identity"]()])
    layers = tuple(LayerParams(units=w, activation=a) for w, a in zip(widths[1:], acts))
    params = NetworkParams(layers=layers, loss=loss, **network,
                           **({"device": device} if device is not None else {}))
    net = Network(params, widths[0], np.random.default_rng(12345),
                  np.random.default_rng(seed))
    return Bench(net, loss)


# ---------------------------------------------------------------- estimator chips
FEATURES = ((), ("node_noise",), ("decorrelation",), ("node_noise", "decorrelation"))
"""Chip options an estimator may need, fewest first: intrinsic node noise (the registry's
``gaussian`` source), decorrelation matrices."""


def chip_bench(device, features=(), widths=(4, 5, 3), activations=None, seed=0):
    """A chip of ``device`` with the options named in ``features``, on its bench."""
    options = {}
    if "node_noise" in features:
        options["node_noise"] = NoiseSourceParams.members()["gaussian"]()
    if "decorrelation" in features:
        options["decorrelation"] = True
    return bench(device, widths, activations, seed, **options)


def build(params, lab, seed):
    """``params.build`` for the chip on bench ``lab``, the estimator's stream from
    ``seed`` (the bench handed over only to baselines outside the rule)."""
    setup = Setup(lab.chip, np.random.default_rng(seed), Timescales(),
                  lab if params.outside_the_rule else None)
    return params.build(setup)


def check_refusal(error: ParamError, params) -> None:
    """A refusal is one line naming a key of the estimator's configuration."""
    keys = {f.name for f in dataclasses.fields(params)} | {"type"}
    assert "\n" not in str(error) and error.message, repr(error)
    assert error.path and error.path[0] in keys, \
        f"{params.kind}: refusal {str(error)!r} names no key of the estimator ({error.path})"


def windows(chip, count, rows=12, hold=3, seed=7):
    """``count`` windows of ``rows`` steps, each sample held ``hold`` steps."""
    rng = np.random.default_rng(seed)
    n_in, n_out = chip.layer_shapes[0][1], chip.layer_shapes[-1][0]
    out = []
    for _ in range(count):
        x = np.repeat(rng.uniform(-1.0, 1.0, (rows // hold, n_in)), hold, axis=0)
        y = np.repeat(rng.uniform(0.0, 1.0, (rows // hold, n_out)), hold, axis=0)
        out.append(Window(x, y, np.arange(rows) % hold == 0))
    return out
