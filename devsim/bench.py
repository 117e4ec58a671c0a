"""The experimenter's side of the chip: what a lab bench sees that a controller must not.

A :class:`Bench` holds the network and offers the chip's controller-side interface as
:attr:`Bench.chip` (:class:`devsim.hardware.Hardware`), which is all an estimator gets.
Beside it, the bench reads the parameters the devices really hold, gives the ideal
float twin with exact gradients (backpropagation baselines and diagnostics, OUTSIDE
THE RULE), totals the devices' meters, sets the clock for drift, and evaluates the
network.

Evaluation reads a fork of the network (:meth:`Bench.outputs`): its devices and neurons
continue from the chip's state on streams of their own, so that how often a run
evaluates never changes what training sees, and evaluation reads do not count as
training steps or in the chip's meters.
"""
from __future__ import annotations

import copy

import numpy as np

from devsim.device import ClockedArray
from devsim.hardware import Hardware
from devsim.network import Network


class Bench:
    """A network of devices on the lab bench, with its chip interface."""

    def __init__(self, network: Network, loss: str):
        self._network = network
        self.chip = Hardware(network, loss)
        """The controller-side interface: all an estimator may use."""
        self.eval_reads = 0
        """Inferences spent on evaluation, kept apart from training steps."""
        self._evaluations = 0

    @property
    def network_params(self):
        """The configuration the chip was built from (its data sheet, not its state)."""
        return self._network.params

    @property
    def network(self) -> Network:
        return self._network

    def read_params(self) -> np.ndarray:
        """The parameters the devices hold now (flat layout)."""
        return self._network.read()

    def exact_layers(self) -> tuple[np.ndarray, ...] | None:
        """Every layer's live parameters where every layer is an exact float array
        (:meth:`devsim.device.DeviceArray.exact_parameters`) with a bias, so that a write
        lands as ``flat += step`` on each, for executors that run the chip's windows in
        compiled form; None otherwise."""
        net = self._network
        flats = tuple(d.exact_parameters() for d in net.devices)
        if any(f is None for f in flats) or len(flats) != len(net.params.layers):
            return None
        return flats if all(layer.bias for layer in net.params.layers) else None

    def exact_decorrelation(self) -> tuple[np.ndarray, ...] | None:
        """The live decorrelation matrices R_l in front of the layers' inputs (None where
        the chip has none), for executors that run the chip's windows and the
        decorrelation rule in compiled form: a write lands as ``r += delta`` on each."""
        matrices = self._network.decorrelation
        return None if matrices is None else tuple(matrices)

    def count_reads(self, probes: int) -> None:
        """Meter ``probes`` reads on every layer: what the layers' forward calls would
        have metered for probes a compiled executor ran on :meth:`exact_layers`."""
        for device in self._network.devices:
            device.meter.reads += probes

    def state(self) -> dict[str, np.ndarray]:
        """What a trace snapshot stores: the parameters and, if present, the decorrelation
        matrices R_l (flattened and concatenated)."""
        state = {"params": self.read_params()}
        if self._network.decorrelation is not None:
            state["decorrelation"] = np.concatenate([r.ravel() for r in
                                                     self._network.decorrelation])
        return state

    def reference(self):
        """The ideal float twin of this network: OUTSIDE THE RULE, for baselines and
        diagnostics (backpropagation, cosine to the true gradient) only."""
        from devsim.reference import DecorrelatedModel, IdealModel
        net = self._network
        model = IdealModel(net.layers, net.activations, self.chip.loss)
        if net.decorrelation is None:
            return model
        return DecorrelatedModel(model, [r.copy() for r in net.decorrelation])

    def meter(self) -> dict:
        """Totals of device activity in training: reads, pulses, seconds and joules,
        summed over the weight arrays and any metered neurons or noise sources (each
        reports the time its own operations took; parallel components are not merged)."""
        net = self._network
        parts = list(net.devices) + list(net.activations) + [net.node_noise]
        meters = [p.meter for p in parts if getattr(p, "meter", None) is not None]
        return {"reads": sum(m.reads for m in meters), "pulses": sum(m.pulses for m in meters),
                "time_s": sum(m.time_s for m in meters),
                "energy_j": sum(m.energy_j for m in meters)}

    def set_time(self, seconds: float) -> int:
        """Read the chip ``seconds`` after programming: every device that models time
        (conductance drift, accumulated 1/f noise) moves there. Returns how many did."""
        timed = [d for d in self._network.devices if isinstance(d, ClockedArray)]
        for device in timed:
            device.set_time(seconds)
        return len(timed)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Network outputs for evaluation, read on a fork of the network (see the module
        docstring); counted in :attr:`eval_reads`."""
        self._evaluations += 1
        self.eval_reads += x.shape[0]
        return self._fork(self._evaluations).run(x).outputs

    def _fork(self, stream: int) -> Network:
        """A copy of the network whose devices and neurons draw from evaluation stream
        ``stream`` (:meth:`devsim.device.DeviceArray.forked`)."""
        fork = copy.copy(self._network)
        fork.devices = [d.forked(stream) for d in self._network.devices]
        fork.activations = [a.forked(stream) for a in self._network.activations]
        fork._buffers = {}
        fork._chain = fork._compiled_pass()
        return fork
