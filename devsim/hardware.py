"""The hardware interface: the chip as the training controller sees it.

A controller may choose inputs, inject perturbations into parameters (weight
perturbation) or into node pre-activations (node perturbation), read the scalar
cost of every inference, read the local signals a synapse or neuron circuit has
(its layer input, its node's pre-activation) and request parameter writes, which
go through each device's write physics. It never sees a gradient, a Jacobian or
the device equations. Every call is batched: T probes in, T costs out, and every
probe is one counted hardware step.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from devsim.losses import loss_function
from devsim.network import Network


class Probe(NamedTuple):
    """Costs of T probes plus the local signals node-perturbation circuits see.

    ``inputs[l]`` is layer l's input (T, n_in) and ``preactivations[l]`` its
    pre-activation (T, n_out), both as measured during the probe.
    """

    costs: np.ndarray
    inputs: list[np.ndarray]
    preactivations: list[np.ndarray]


class Hardware:
    """A network of devices behind the controller-side interface."""

    supports = frozenset({"weights", "nodes"})
    """Perturbation ports this chip offers."""

    def __init__(self, network: Network, loss: str):
        self._network = network
        self._loss_name = loss
        self._loss = loss_function(loss)
        self.steps = 0
        """Hardware steps so far: one per training inference (probe)."""
        self.eval_reads = 0
        """Inferences spent on evaluation, kept apart from training steps."""

    # ---- what the controller knows about the chip's layout
    @property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """(n_out, n_in) of each layer."""
        return self._network.shapes

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector (weights then bias, per layer)."""
        return self._network.n_params

    @property
    def n_nodes(self) -> int:
        """Number of perturbable nodes (all pre-activations, output layer included)."""
        return self._network.n_nodes

    @property
    def param_offsets(self) -> np.ndarray:
        """Start of each layer's slice in the flat parameter vector (plus the end)."""
        return self._network.param_offsets

    @property
    def node_offsets(self) -> np.ndarray:
        """Start of each layer's slice in the flat node vector (plus the end)."""
        return self._network.node_offsets

    @property
    def loss(self) -> str:
        return self._loss_name

    @property
    def network_params(self):
        """The configuration the chip was built from (its data sheet, not its state)."""
        return self._network.params

    @property
    def decorrelated(self) -> bool:
        """Whether a decorrelation matrix R sits in front of every layer's input."""
        return self._network.decorrelation is not None

    # ---- what the controller may do
    def cost(self, x: np.ndarray, y: np.ndarray, *, node_perturbation=None,
             weight_perturbation=None, noisy: bool = False) -> np.ndarray:
        """Costs (T,) of T probes: input rows ``x``, targets ``y``, optional perturbations."""
        return self.probe(x, y, node_perturbation=node_perturbation,
                          weight_perturbation=weight_perturbation, noisy=noisy,
                          local=False).costs

    def probe(self, x: np.ndarray, y: np.ndarray, *, node_perturbation=None,
              weight_perturbation=None, noisy: bool = False, local: bool = True) -> Probe:
        """Like :meth:`cost`, also returning each layer's input and pre-activation.

        ``noisy=True`` lets the chip's intrinsic node noise (``network.node_noise``)
        act during this pass; the controller never sees the noise itself.
        """
        self._check_batch(x, node_perturbation, self.n_nodes, "node_perturbation")
        self._check_batch(x, weight_perturbation, self.n_params, "weight_perturbation")
        if noisy:
            if self._network.node_noise is None:
                raise ValueError("noisy pass requested but network.node_noise is not set")
            noise = self._network.node_noise.sample(x.shape[0])
            node_perturbation = noise if node_perturbation is None else noise + node_perturbation
        out = self._network.run(x, node_perturbation, weight_perturbation, record=local)
        self.steps += x.shape[0]
        return Probe(self._loss(out.outputs, y), out.inputs, out.preactivations)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Network outputs for evaluation; counted in ``eval_reads``, not ``steps``."""
        self.eval_reads += x.shape[0]
        return self._network.run(x).outputs

    def write(self, update: np.ndarray) -> None:
        """Request the flat parameter change ``update``; devices decide what lands."""
        if update.shape != (self.n_params,):
            raise ValueError(f"update has shape {update.shape}, expected ({self.n_params},)")
        self._network.write(update)

    def read_decorrelation(self) -> list[np.ndarray]:
        """Copies of the decorrelation matrices R_l, one (n_in, n_in) per layer; the
        controller wrote every change to them, so it may know them."""
        self._require_decorrelation()
        return [r.copy() for r in self._network.decorrelation]

    def write_decorrelation(self, deltas: list[np.ndarray]) -> None:
        """Add ``deltas[l]`` to R_l for every layer (the controller's decorrelation rule)."""
        self._require_decorrelation()
        self._network.write_decorrelation(deltas)

    def _require_decorrelation(self):
        if self._network.decorrelation is None:
            raise ValueError("this network has no decorrelation matrices "
                             "(set network.decorrelation: true)")

    def read_params(self) -> np.ndarray:
        """The parameters the devices hold, for traces and the reference baseline only."""
        return self._network.read()

    def meter(self) -> dict:
        """Totals of device activity: reads, pulses, seconds and joules, summed over the
        weight arrays and any metered neurons or noise sources (each reports the time
        its own operations took; components that run in parallel are not merged)."""
        net = self._network
        parts = list(net.devices) + list(net.activations) + [net.node_noise]
        meters = [p.meter for p in parts if getattr(p, "meter", None) is not None]
        return {"reads": sum(m.reads for m in meters), "pulses": sum(m.pulses for m in meters),
                "time_s": sum(m.time_s for m in meters),
                "energy_j": sum(m.energy_j for m in meters)}

    # ---- integer ports and suffix execution (int8 devices, quantized zeroth order)
    @property
    def param_lsb(self) -> np.ndarray | None:
        """Real value of one LSB of every flat parameter on a chip whose parameters are
        integers (None otherwise): multiples of it land exactly as perturbations and writes."""
        devices = self._network.devices
        if not all(hasattr(d, "param_lsb") for d in devices):
            return None
        return np.concatenate([d.param_lsb for d in devices])

    @property
    def node_lsb(self) -> np.ndarray | None:
        """Real value of one LSB of every node (a layer's integer output), or None."""
        devices = self._network.devices
        if not all(hasattr(d, "output_lsb") for d in devices):
            return None
        return np.concatenate([np.full(d.shape[0], d.output_lsb) for d in devices])

    def probe_suffix(self, layer: int, inputs: np.ndarray, y: np.ndarray, *,
                     node_perturbation=None, weight_perturbation=None) -> np.ndarray:
        """Costs (T,) of layers ``layer``.. run from that layer's recorded input
        ``inputs`` (T, n_in) (``probe(...).inputs[layer]``), perturbing layer ``layer``
        only: its nodes (T, n_out) or its parameters (T, layer size). One counted step
        per row; device meters count only the layers that ran."""
        n_out, n_in = self.layer_shapes[layer]
        self._check_batch(inputs, node_perturbation, n_out, "node_perturbation")
        self._check_batch(inputs, weight_perturbation, n_out * n_in + n_out,
                          "weight_perturbation")
        out = self._network.run_suffix(layer, inputs, node_perturbation, weight_perturbation)
        self.steps += inputs.shape[0]
        return self._loss(out, y)

    def cost_seeded(self, layer: int, inputs: np.ndarray, y: np.ndarray, key, first: int,
                    count: int, mu_weight: int, mu_bias: int) -> np.ndarray:
        """Costs (T, count): every row of layer ``layer``'s recorded input run ``count``
        times, with the layer's integer weights and biases moved by ``mu_weight`` and
        ``mu_bias`` LSBs along Rademacher directions first, ..., first + count - 1 drawn
        inside the kernel. Direction p gives flat parameter i of the layer the sign
        ``devsim.crng.sign(key, p * d + i)`` (d the layer's size), so the controller
        regenerates directions from the key instead of storing them."""
        if not hasattr(self._network.devices[layer], "forward_q_rademacher"):
            raise ValueError(f"layer {layer}'s device draws no seeded perturbations")
        out = self._network.run_suffix(layer, inputs,
                                       seeded=(key, first, count, mu_weight, mu_bias))
        self.steps += out.shape[0]
        return self._loss(out, np.repeat(y, count, axis=0)).reshape(-1, count)

    def set_time(self, seconds: float) -> int:
        """Read the chip ``seconds`` after programming: every device that models time
        (conductance drift, accumulated 1/f noise) moves there. Returns how many did."""
        timed = [d for d in self._network.devices if hasattr(d, "set_time")]
        for device in timed:
            device.set_time(seconds)
        return len(timed)

    def reference(self):
        """The ideal float twin of this network: OUTSIDE THE RULE, for baselines and
        diagnostics (backpropagation, cosine to the true gradient) only."""
        from devsim.reference import IdealModel
        model = IdealModel(self._network.shapes, self._network.activations, self._loss_name)
        if self._network.decorrelation is None:
            return model
        return _DecorrelatedModel(model, self.read_decorrelation())

    @staticmethod
    def _check_batch(x, perturbation, width, name):
        if perturbation is not None and perturbation.shape != (x.shape[0], width):
            raise ValueError(f"{name} has shape {perturbation.shape}, "
                             f"expected ({x.shape[0]}, {width})")


class _DecorrelatedModel:
    """The ideal model of a network whose layer l sees R_l x: it is the plain model with
    weights W_l R_l, and the chain rule gives dC/dW_l = (dC/d(W_l R_l)) R_l^T."""

    def __init__(self, model, matrices: list[np.ndarray]):
        self._model, self._matrices = model, matrices
        self.shapes, self.offsets = model.shapes, model.offsets
        self.activations, self.loss = model.activations, model.loss

    def _map(self, params: np.ndarray, transpose: bool) -> np.ndarray:
        out = params.copy()
        for (n_out, n_in), start, r in zip(self.shapes, self.offsets, self._matrices):
            w = out[start:start + n_out * n_in].reshape(n_out, n_in)
            w[...] = w @ (r.T if transpose else r)
        return out

    def forward(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self._model.forward(self._map(params, False), x)

    def costs(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._model.costs(self._map(params, False), x, y)

    def gradient(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Gradient of the mean cost with respect to the stored W_l and b_l."""
        return self._map(self._model.gradient(self._map(params, False), x, y), True)
