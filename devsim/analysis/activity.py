"""Recording node activity of a trained network under a condition: the bridge from
devsim's machine to the joint graphical lasso.

A recording rebuilds the chip a run trace describes (its resolved config), programs
the trained parameters of the trace's last snapshot into it through the devices'
write physics, optionally makes some neurons' devices faulty (a *condition*), runs
the data set's inputs through it and keeps every neuron's pre-activation per input:
the local node activity the hardware interface offers (``Hardware.probe``). Two
recordings, one per condition, go to :func:`devsim.analysis.compare.compare`.

Every call into the machine (building, programming, probing) is in this module.

A condition is a small YAML file::

    name: three_faulty
    seed: 0                 # which devices of a neuron get stuck
    faults:
      - {effect: drift, layer: 0, neurons: [3, 17], factor: 0.5}
      - {effect: stuck, layer: 0, neurons: [8], fraction: 0.5, value: 0.0}
      - {effect: bias, layer: 1, neurons: [2], offset: 0.3}

Each fault acts on the devices of the named neurons (the neuron's row of weights
and its bias) by a parameter write: ``drift`` scales what they hold by ``factor``,
``bias`` adds ``offset`` to each, ``stuck`` sets a random ``fraction`` of them to
``value``. What lands is what the device's write physics make of the request.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devsim.analysis.records import ActivityRecord
from devsim.params import Params, param

__all__ = ["FaultParams", "ConditionParams", "FRESH", "load_condition", "fault_delta",
           "record_activity"]

INPUTS = ("all", "train", "test")


@dataclass(frozen=True)
class FaultParams(Params):
    """Faulty devices of some neurons of one layer."""

    effect: str = param("drift", choices=("drift", "bias", "stuck"))
    """``drift``: the devices hold ``factor`` times their value; ``bias``: each holds
    ``offset`` more; ``stuck``: a ``fraction`` of them hold ``value``."""
    layer: int = param(0, ge=0)
    """Layer of the neurons (0: the first hidden layer)."""
    neurons: tuple[int, ...] = param(default_factory=tuple, ge=0)
    """Indices of the affected neurons within the layer."""
    factor: float = param(0.5, ge=0.0)
    """``drift``: multiplier of every device's weight (conductance decay: < 1)."""
    offset: float = param(0.2, unit="weight")
    """``bias``: added to every device's weight."""
    fraction: float = param(0.5, gt=0.0, le=1.0)
    """``stuck``: fraction of each neuron's devices (weights and bias) that are stuck."""
    value: float = param(0.0, unit="weight")
    """``stuck``: the weight a stuck device holds."""


@dataclass(frozen=True)
class ConditionParams(Params):
    """A condition of a chip: the faults it has (none: the fresh chip)."""

    name: str = "condition"
    """Name of the condition (kept in the activity record)."""
    seed: int = param(0, ge=0)
    """Seed of the draw of which devices are stuck."""
    faults: tuple[FaultParams, ...] = param(default_factory=tuple)
    """The faulty neurons."""


FRESH = ConditionParams(name="fresh")
"""The condition without faults."""


def load_condition(path, overrides=()) -> ConditionParams:
    """Read and validate a condition file, applying ``--set`` style overrides."""
    from devsim.config import load
    return load(path, ConditionParams, overrides)


def _device_slots(layer_shapes, param_offsets, layer: int, neuron: int) -> np.ndarray:
    """Flat parameter indices of one neuron's devices: its weights, then its bias."""
    n_out, n_in = layer_shapes[layer]
    start = param_offsets[layer]
    return np.concatenate([start + neuron * n_in + np.arange(n_in),
                           [start + n_out * n_in + neuron]])


def fault_delta(condition: ConditionParams, params: np.ndarray, layer_shapes,
                param_offsets, source: str = "<condition>") -> np.ndarray:
    """The flat parameter write that turns ``params`` into the faulty chip's request.
    A fault naming a layer or neuron the network lacks is a :class:`ConfigError`."""
    from devsim.config import ConfigError
    delta = np.zeros_like(params)
    rng = np.random.default_rng(condition.seed)
    errors = []
    for i, fault in enumerate(condition.faults):
        if fault.layer >= len(layer_shapes):
            errors.append(f"{source}: faults[{i}].layer: must be < {len(layer_shapes)} "
                          f"(the network's layers), got {fault.layer}")
            continue
        n_out = layer_shapes[fault.layer][0]
        for j, neuron in enumerate(fault.neurons):
            if neuron >= n_out:
                errors.append(f"{source}: faults[{i}].neurons[{j}]: must be < {n_out} "
                              f"(layer {fault.layer}'s neurons), got {neuron}")
                continue
            slots = _device_slots(layer_shapes, param_offsets, fault.layer, neuron)
            held = params[slots] + delta[slots]
            if fault.effect == "drift":
                delta[slots] += (fault.factor - 1.0) * held
            elif fault.effect == "bias":
                delta[slots] += fault.offset
            else:
                stuck = slots[rng.random(len(slots)) < fault.fraction]
                delta[stuck] = fault.value - params[stuck]
    if errors:
        raise ConfigError(errors)
    return delta


def record_activity(trace, conditions=(FRESH,), *, chip_seed: int | None = None,
                    overrides=(), inputs: str = "all", samples: int = 0, sample_seed: int = 0,
                    noisy: bool = False, sources=()) -> list[ActivityRecord]:
    """Node activity of the trained chip of ``trace`` (a path or a read trace), one
    record per condition of ``conditions``.

    One chip is built and programmed; each condition's faults are then written on top
    of what the chip holds after the previous conditions' (a chip that degrades), and
    its activity recorded, so ``[FRESH, faulty]`` gives before and after on the same
    devices, with fresh read noise in every recording. ``chip_seed``: build another
    chip of the same design (its own device variation, programming and read noise);
    default the trace's seed. ``overrides``: ``--set`` style changes to the trace's
    config before the chip is built (say ``network.device.prog_noise=0.01``: deploy
    the trained parameters to a noisier chip than the one trained). ``inputs``: which
    inputs of the trace's data set to run (``all``, ``train``, ``test``); ``samples``:
    that many of them, drawn without replacement by ``sample_seed`` (0: all).
    ``noisy``: let the chip's intrinsic node noise act. ``sources``: the file each
    condition came from, for error messages.
    """
    from devsim import RunConfig, build, read_trace
    from devsim.config import ConfigError, dump, loads
    if inputs not in INPUTS:
        raise ConfigError([f"inputs: must be one of {', '.join(INPUTS)}, got {inputs!r}"])
    trace = read_trace(trace) if isinstance(trace, (str, Path)) else trace
    if len(trace.snapshots.get("step", ())) == 0:
        raise ConfigError([f"{trace.path}: the trace holds no parameter snapshot"])
    config = loads(trace.config_yaml, RunConfig, source=f"{Path(trace.path).name}:config_yaml",
                   overrides=list(overrides))
    built = build(config)
    seed = config.seed if chip_seed is None else chip_seed
    bench = built.bench if seed == config.seed else build(config.replace(seed=seed)).bench
    hardware = bench.chip
    x, y = _inputs(built.data, inputs, samples, sample_seed)
    hardware.write(trace.snapshots["params"][-1] - bench.read_params())
    if "decorrelation" in trace.snapshots:
        _program_decorrelation(hardware, trace.snapshots["decorrelation"][-1])
    widths = [n_out for n_out, _ in hardware.layer_shapes]
    layer = np.concatenate([np.full(n_out, i) for i, n_out in enumerate(widths)])
    neuron = np.concatenate([np.arange(n_out) for n_out in widths])
    records = []
    for i, condition in enumerate(conditions):
        if condition.faults:
            source = sources[i] if i < len(sources) else "<condition>"
            hardware.write(fault_delta(condition, bench.read_params(),
                                       hardware.layer_shapes, hardware.param_offsets, source))
        probe = hardware.probe(x, y, noisy=noisy)
        attrs = {"condition": condition.name, "condition_yaml": dump(condition),
                 "source": str(trace.path), "chip_seed": int(seed), "inputs": inputs,
                 "samples": int(len(x)), "noisy": bool(noisy), "order": i}
        records.append(ActivityRecord(np.concatenate(probe.preactivations, axis=1), layer,
                                      neuron, attrs))
    return records


def _inputs(data, which: str, samples: int, seed: int):
    """The inputs and targets a recording runs."""
    from devsim.config import ConfigError
    parts = {"all": ((data.x_train, data.x_test), (data.y_train, data.y_test)),
             "train": ((data.x_train,), (data.y_train,)), "test": ((data.x_test,), (data.y_test,))}
    xs, ys = parts[which]
    x, y = np.concatenate(xs), np.concatenate(ys)
    if samples:
        if samples > len(x):
            raise ConfigError([f"samples: must be <= {len(x)} (the {which} inputs), "
                               f"got {samples}"])
        rows = np.sort(np.random.default_rng(seed).choice(len(x), samples, replace=False))
        x, y = x[rows], y[rows]
    return x, y


def _program_decorrelation(hardware, flat: np.ndarray) -> None:
    """Set the decorrelation matrices R_l to the trained ones (flattened, concatenated)."""
    current = hardware.read_decorrelation()
    deltas, start = [], 0
    for matrix in current:
        target = flat[start:start + matrix.size].reshape(matrix.shape)
        deltas.append(target - matrix)
        start += matrix.size
    hardware.write_decorrelation(deltas)

