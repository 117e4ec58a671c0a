"""Accuracy after drift: a trained network programmed afresh onto its chip and read at
times after programming.

:func:`evaluate_drift` takes the trained parameters of a run trace (its last parameter
snapshot, or the checkpoint of an interrupted run when that is further along), rebuilds
the chip the trace's config describes, and for each repeat programs the parameters onto
new device arrays with the repeat's own random stream: programming noise, the drift
exponents and every later draw (1/f noise at each read time, read noise) are the
repeat's. The test set is then read at each time after programming
(:meth:`devsim.bench.Bench.set_time`), in the order given. Global drift compensation is
the devices' own (``drift_compensation``: an all-ones calibration read at programming
time against the same read at time t scales the outputs, as aihwkit's
``GlobalDriftCompensation`` does); ``compensation`` switches it on or off for every
layer whose device has it.

What the repeats vary is what a chip programmed again would vary; the table reports the
mean and spread over them (:class:`DriftTable`).
"""
from __future__ import annotations

import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devsim.config import ConfigError

__all__ = ["TIME_UNITS", "parse_times", "trained_parameters", "evaluate_drift", "DriftTable"]

TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
              "y": 365.25 * 86400.0}
"""Units of read times (``y``: a Julian year of 365.25 days)."""
_TIME = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


def parse_times(text: str) -> list[tuple[str, float]]:
    """``"1s,1h,1d,1y"`` -> ``[("1s", 1.0), ("1h", 3600.0), ...]``: times after
    programming (a bare number is seconds); each must be > 0."""
    times = []
    for item in text.split(","):
        m = _TIME.match(item)
        if not m:
            raise ConfigError([f"--at: cannot read a time in {item.strip()!r} (write e.g. "
                               f"1s,1h,1d,1y)"])
        value, unit = float(m.group(1)), m.group(2) or "s"
        if unit not in TIME_UNITS:
            raise ConfigError([f"--at: unknown time unit {unit!r} in {item.strip()!r}; "
                               f"use {', '.join(TIME_UNITS)}"])
        if value <= 0:
            raise ConfigError([f"--at: times must be > 0, got {item.strip()!r}"])
        times.append((item.strip(), value * TIME_UNITS[unit]))
    return times


@dataclass
class DriftTable:
    """Accuracy (classification) and test cost after drift: one row per repeat, one
    column per read time."""

    trace: str
    labels: list[str]
    seconds: np.ndarray
    cost: np.ndarray
    """(repeats, times) mean test cost."""
    accuracy: np.ndarray | None
    """(repeats, times) test accuracy; None for a regression task."""
    compensation: str
    """Global drift compensation: ``on``, ``off`` or ``mixed`` over the layers, ``none``
    where no device offers it."""
    seed: int
    step: int
    """Hardware step of the trained parameters."""
    source: str = ""
    """Where the parameters came from (the last snapshot or a checkpoint)."""
    timed: bool = True
    """Whether any device models time (drift); if not, every time reads the same chip."""

    @property
    def repeats(self) -> int:
        return self.cost.shape[0]

    def rows(self) -> list[dict]:
        """One dict per time: mean, standard deviation (over repeats, ddof 1), min and
        max of accuracy (where classified) and test cost."""
        out = []
        for j, (label, seconds) in enumerate(zip(self.labels, self.seconds)):
            row = {"time": label, "seconds": float(seconds)}
            for name, values in (("accuracy", self.accuracy), ("cost", self.cost)):
                if values is None:
                    continue
                v = values[:, j]
                row.update({f"{name}_mean": float(v.mean()),
                            f"{name}_std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                            f"{name}_min": float(v.min()), f"{name}_max": float(v.max())})
            out.append(row)
        return out

    def text(self) -> str:
        """The table as aligned text with a header line saying what was done."""
        head = (f"{self.trace}: parameters of step {self.step:,} ({self.source}), "
                f"{self.repeats} repeats (programming, drift and read noise drawn afresh "
                f"each, seed {self.seed}), drift compensation {self.compensation}")
        rows = self.rows()
        keys = [k for k in rows[0] if k not in ("time", "seconds")]
        lines = [head, f"{'time':<8} {'seconds':>12} " + " ".join(f"{k:>13}" for k in keys)]
        for row in rows:
            lines.append(f"{row['time']:<8} {row['seconds']:>12.6g} "
                         + " ".join(f"{row[k]:>13.4f}" if k.startswith("accuracy")
                                    else f"{row[k]:>13.4g}" for k in keys))
        return "\n".join(lines)

    def write_csv(self, path) -> Path:
        """The rows as CSV (a header line, then one line per time)."""
        rows = self.rows()
        path = Path(path)
        lines = [",".join(rows[0])]
        lines += [",".join(str(v) for v in row.values()) for row in rows]
        path.write_text("\n".join(lines) + "\n")
        return path

    def plot(self, path) -> Path:
        """Accuracy (else test cost) against time after programming, log axis: the mean
        over repeats with its standard deviation as error bars, min to max shaded."""
        from devsim.plot import pyplot
        plt = pyplot()
        name = "accuracy" if self.accuracy is not None else "cost"
        values = self.accuracy if self.accuracy is not None else self.cost
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        mean = values.mean(axis=0)
        std = values.std(axis=0, ddof=1) if self.repeats > 1 else np.zeros_like(mean)
        ax.fill_between(self.seconds, values.min(axis=0), values.max(axis=0), alpha=0.2,
                        label="min to max")
        ax.errorbar(self.seconds, mean, yerr=std, marker="o", capsize=3,
                    label=f"mean +- std, {self.repeats} repeats")
        for label, x, y in zip(self.labels, self.seconds, mean):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(0, 8),
                        ha="center", fontsize=8)
        ax.set(xscale="log", xlabel="time after programming (s)", ylabel=f"test {name}",
               title=f"{Path(self.trace).name}: drift compensation {self.compensation}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def trained_parameters(trace) -> tuple[np.ndarray, np.ndarray | None, int, str]:
    """(flat parameters, decorrelation matrices flattened or None, hardware step, where
    from) of a read trace: its last parameter snapshot, or the checkpoint beside an
    interrupted run's trace (``<trace>.ckpt``) when that is further along."""
    from devsim import checkpoint
    snapshots = trace.snapshots
    have = len(snapshots.get("step", ()))
    params = snapshots["params"][-1] if have else None
    decorrelation = snapshots["decorrelation"][-1] if have and "decorrelation" in snapshots else None
    step, source = (int(snapshots["step"][-1]), "last snapshot") if have else (-1, "")
    path = Path(trace.path)
    final = path.with_name(path.name.removesuffix(".partial"))
    ckpt = checkpoint.checkpoint_path(final)
    if not trace.complete and ckpt.is_file():
        try:
            training, _, _ = checkpoint.load(ckpt, trace.config_yaml)
        except checkpoint.CheckpointMismatch as exc:
            raise ConfigError([str(exc)]) from None
        bench = training.bench
        if bench.chip.steps > step:
            state = bench.state()
            params, decorrelation = state["params"], state.get("decorrelation")
            step, source = bench.chip.steps, f"checkpoint {ckpt.name}"
    if params is None:
        raise ConfigError([f"{trace.path}: the trace holds no trained parameters (no "
                           f"parameter snapshot, no checkpoint)"])
    return np.asarray(params, dtype=float), decorrelation, step, source


def _with_compensation(network, on: bool | None):
    """The network config with every layer device's ``drift_compensation`` set to ``on``
    (None: as trained), and the resulting setting over the layers' devices."""
    devices = [layer.device or network.device for layer in network.layers]
    has = [hasattr(d, "drift_compensation") for d in devices]
    if on is not None and not any(has):
        kinds = sorted({d.kind for d in devices})
        raise ConfigError([f"--compensation: the trace's devices ({', '.join(kinds)}) have no "
                           f"drift compensation"])
    if on is not None:
        def switched(device):
            if device is None or not hasattr(device, "drift_compensation"):
                return device
            return device.replace(drift_compensation=on)
        network = network.replace(device=switched(network.device), layers=tuple(
            layer.replace(device=switched(layer.device)) for layer in network.layers))
        devices = [layer.device or network.device for layer in network.layers]
    states = {d.drift_compensation for d, h in zip(devices, has) if h}
    return network, ("none" if not states else "mixed" if len(states) > 1
                     else "on" if states.pop() else "off")


def _program(config, n_inputs: int, params: np.ndarray, decorrelation, rng):
    """A network of the config's devices holding ``params``, programmed with ``rng``."""
    from devsim.device import split_flat
    from devsim.network import Network
    network = Network(config.network, n_inputs, rng, rng)
    devices = []
    for i, (shape, layer) in enumerate(zip(network.shapes, config.network.layers)):
        w, b = split_flat(params[network.param_offsets[i]:network.param_offsets[i + 1]], shape)
        devices.append((layer.device or config.network.device).build(w.copy(), b.copy(), rng))
    network.use_devices(devices)
    if decorrelation is not None and network.decorrelation is not None:
        deltas, start = [], 0
        for matrix in network.decorrelation:
            deltas.append(decorrelation[start:start + matrix.size].reshape(matrix.shape) - matrix)
            start += matrix.size
        network.write_decorrelation(deltas)
    return network


def evaluate_drift(trace, times, *, compensation: bool | None = None, repeats: int = 10,
                   seed: int | None = None, overrides=()) -> DriftTable:
    """Test accuracy and cost of the trained parameters of ``trace`` (a path or a read
    trace) at each of ``times`` (``[(label, seconds)]`` or a string for
    :func:`parse_times`) after programming, over ``repeats`` fresh programmings of the
    trace's chip. Repeat r draws from its own stream of ``seed`` (default: the run's
    seed). ``overrides``: ``--set`` style changes to the trace's config (another chip to
    deploy to, say ``network.device.prog_noise=2``)."""
    from devsim import read_trace
    from devsim.bench import Bench
    from devsim.config import loads
    from devsim.params import ParamError
    from devsim.rng import stream
    from devsim.runconfig import RunConfig
    from devsim.runner import evaluate
    if isinstance(times, str):
        times = parse_times(times)
    if repeats < 1:
        raise ConfigError([f"--repeats: must be >= 1, got {repeats}"])
    trace = read_trace(trace) if isinstance(trace, (str, Path)) else trace
    params, decorrelation, step, source = trained_parameters(trace)
    config = loads(trace.config_yaml, RunConfig, source=f"{Path(trace.path).name}:config_yaml",
                   overrides=list(overrides))
    network, setting = _with_compensation(config.network, compensation)
    config = config.replace(network=network)
    seed = config.seed if seed is None else seed
    try:
        data = config.data.load(stream(config.seed, "data"))
    except ParamError as exc:
        raise ConfigError([f"{trace.path}: {exc.under(('data',))}"]) from None
    labels, seconds = [t[0] for t in times], np.array([t[1] for t in times], dtype=float)
    cost = np.empty((repeats, len(times)))
    accuracy = np.empty((repeats, len(times))) if data.is_classification else None
    timed = True
    for r in range(repeats):
        rng = np.random.default_rng(np.random.SeedSequence(
            seed, spawn_key=(zlib.crc32(b"evaluate"), r)))
        bench = Bench(_program(config, data.n_inputs, params, decorrelation, rng),
                      config.network.loss)
        for j, t in enumerate(seconds):
            timed = bench.set_time(float(t)) > 0
            metrics = evaluate(bench, data.x_test, data.y_test, data.labels_test)
            cost[r, j] = metrics["cost"]
            if accuracy is not None:
                accuracy[r, j] = metrics["accuracy"]
    if not timed:
        warnings.warn(f"{trace.path}: no device of the chip models time (drift): every "
                      f"time reads the same chip")
    return DriftTable(str(trace.path), labels, seconds, cost, accuracy, setting, seed, step,
                      source, timed)
