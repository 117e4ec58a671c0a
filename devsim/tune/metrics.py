"""What a study can optimise or constrain: named metrics of a finished run.

A metric is read from a run's summary (accuracies, time to target, the device meter's
energy, time, pulses and reads, an MCU's memory), from its trace (``scalar:NAME``: the
last logged value of a scalar column) or from its config (``config:KEY``: the value at a
key path, e.g. ``config:network.device.adc_bits`` to trade accuracy against ADC bits).
Each has a natural direction and a label with its unit for tables and plots.
"""
from __future__ import annotations

import math
from dataclasses import fields
from typing import NamedTuple

from devsim.params import Params


class Metric(NamedTuple):
    """How a named metric is read and shown."""

    direction: str
    """``maximize`` or ``minimize``: which way is better."""
    label: str
    """Axis label, without the unit."""
    unit: str = ""
    """Unit: an SI symbol (``J``, ``s``: axes then read 12 uJ, 3 ms) or a word."""


METRICS = {
    "final_test_accuracy": Metric("maximize", "final test accuracy"),
    "best_test_accuracy": Metric("maximize", "best test accuracy"),
    "final_train_accuracy": Metric("maximize", "final train accuracy"),
    "final_test_cost": Metric("minimize", "final test cost", "loss"),
    "steps_to_target": Metric("minimize", "time to target accuracy", "hardware steps"),
    "energy_j": Metric("minimize", "device energy per training run", "J"),
    "hardware_time_s": Metric("minimize", "device time per training run", "s"),
    "pulses": Metric("minimize", "programming pulses per training run"),
    "reads": Metric("minimize", "device reads per training run"),
    "sram_bytes": Metric("minimize", "SRAM", "bytes"),
    "flash_bytes": Metric("minimize", "flash", "bytes"),
    "wall_seconds": Metric("minimize", "simulation wall time", "s"),
}
"""Metrics read from a run's summary."""

PREFIXES = ("scalar:", "config:")
"""Metric families named by a suffix: a trace scalar column, a config key path."""

EVALUATED = {"final_test_accuracy": "test_accuracy", "best_test_accuracy": "test_accuracy",
             "final_test_cost": "test_cost"}
"""Metrics a run evaluates as it goes (the evaluation column each is followed by), so a
pruner can judge a trial before it ends."""


class MetricUnavailable(ValueError):
    """A run that does not report the metric asked of it (a failed trial's reason)."""


def check_name(name: str) -> str | None:
    """Why ``name`` is not a metric, or None if it is one."""
    if name in METRICS or any(name.startswith(p) and len(name) > len(p) for p in PREFIXES):
        return None
    return (f"unknown metric {name!r}; known: {', '.join(METRICS)}, scalar:COLUMN, "
            f"config:KEY.PATH")


def direction(name: str) -> str:
    """The natural direction of metric ``name`` (config values and scalars: minimize)."""
    return METRICS[name].direction if name in METRICS else "minimize"


def key_path(text: str) -> tuple:
    """``"network.layers[0].units"`` -> ``("network", "layers", 0, "units")``."""
    from devsim.config import ConfigError, parse_overrides
    try:
        return parse_overrides([f"{text}=0"])[0][0]
    except ConfigError:
        raise ValueError(f"cannot read key path {text!r}") from None


def lookup(config: Params, path: tuple):
    """The value at ``path`` in ``config``; KeyError if there is none."""
    node = config
    for key in path:
        if isinstance(key, int):
            if not isinstance(node, tuple) or key >= len(node):
                raise KeyError(key)
            node = node[key]
        elif isinstance(node, Params) and key in {f.name for f in fields(node)}:
            node = getattr(node, key)
        elif isinstance(node, Params) and key == "type" and node.kind:
            node = node.kind
        else:
            raise KeyError(key)
    return node


def unit(config: Params, path: tuple) -> str | None:
    """The declared unit of the field at ``path`` (``param(unit=...)``), if any."""
    try:
        parent = lookup(config, path[:-1])
    except KeyError:
        return None
    for f in fields(parent) if isinstance(parent, Params) else ():
        if f.name == path[-1]:
            return (f.metadata or {}).get("unit")
    return None


def label(name: str, config: Params | None = None) -> tuple[str, str]:
    """Axis label and unit of metric ``name`` (a config key's unit from its schema, if
    ``config`` is given)."""
    if name in METRICS:
        return METRICS[name].label, METRICS[name].unit
    kind, rest = name.split(":", 1)
    if kind == "scalar":
        return f"last logged {rest.replace('_', ' ')}", ""
    return rest, (unit(config, key_path(rest)) or "") if config is not None else ""


def value(name: str, summary: dict, config: Params, trace_path=None) -> float:
    """Metric ``name`` of a finished run (its summary, config and trace file);
    :class:`MetricUnavailable` if the run does not report it. A target accuracy never
    reached counts as infinitely many steps."""
    final = summary.get("final", {})
    simple = {"final_test_accuracy": lambda: final["test_accuracy"],
              "best_test_accuracy": lambda: summary["best_test_accuracy"],
              "final_train_accuracy": lambda: final["train_accuracy"],
              "final_test_cost": lambda: final["test_cost"],
              "energy_j": lambda: summary["device"]["energy_j"],
              "hardware_time_s": lambda: summary["device"]["time_s"],
              "pulses": lambda: summary["device"]["pulses"],
              "reads": lambda: summary["device"]["reads"],
              "sram_bytes": lambda: summary["memory"]["sram_bytes"],
              "flash_bytes": lambda: summary["memory"]["flash_bytes"],
              "wall_seconds": lambda: summary["wall_seconds"]}
    if name in simple:
        try:
            return float(simple[name]())
        except KeyError:
            why = {"sram_bytes": "reports no memory (only MCU devices account it)",
                   "flash_bytes": "reports no memory (only MCU devices account it)"}
            raise MetricUnavailable(f"{name}: this run {why.get(name, 'does not report it')}") from None
    if name == "steps_to_target":
        if not config.train.target_accuracy:
            raise MetricUnavailable("steps_to_target: set train.target_accuracy")
        steps = summary.get("steps_to_target")
        return math.inf if steps is None else float(steps)
    kind, rest = name.split(":", 1)
    if kind == "config":
        try:
            found = lookup(config, key_path(rest))
        except KeyError:
            raise MetricUnavailable(f"{name}: the config has no key {rest}") from None
        if isinstance(found, bool) or not isinstance(found, (int, float)):
            raise MetricUnavailable(f"{name}: {rest} is {found!r}, not a number")
        return float(found)
    from devsim.trace import read_trace
    column = read_trace(trace_path).scalars.get(rest)
    if column is None or not len(column):
        raise MetricUnavailable(f"{name}: the trace logs no scalar {rest!r}")
    return float(column[-1])
