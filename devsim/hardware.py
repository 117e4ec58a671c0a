"""The hardware interface: the chip as the training controller sees it.

A controller may choose inputs, inject perturbations into parameters (weight
perturbation) or into node pre-activations (node perturbation), read the scalar cost of
every inference, read the local signals a synapse or neuron circuit has (its layer
input, its node's pre-activation) and request parameter writes, which go through each
device's write physics. It never sees a gradient, a Jacobian, the device equations or
the parameters the devices hold. What an experimenter needs beside the chip (true
parameters, reference gradients, meters, the clock, evaluation) is :class:`devsim.bench.Bench`,
which estimators never get.

Everything goes through one batched call, :meth:`Hardware.run`: a :class:`Request` of T
probes in, a :class:`Result` of T costs (and the local signals asked for) out, every
probe one counted hardware step. What a chip offers beyond plain probes is declared in
:class:`Capabilities`, never found by probing its attributes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from devsim.device import IntegerArray
from devsim.losses import loss_function
from devsim.network import Network, Seeded

__all__ = ["Hardware", "Request", "Result", "Capabilities", "IntegerPorts", "Seeded"]


class Request(NamedTuple):
    """T probes for the chip to run, one row each.

    ``x`` holds the inputs of layer ``start`` (0: the network's inputs; a later layer:
    the suffix of the network runs from that layer's recorded input); ``y`` the targets.
    Perturbations have one row per probe and, as columns, the nodes or parameters of the
    layers that run (the chip's flat layouts from layer ``start`` on), or of the first
    of them only (whole layers: the later ones run unperturbed). ``noisy`` lets the
    chip's intrinsic node noise act; ``record`` asks for each layer's input and
    pre-activation, the local signals of its synapse and neuron circuits. ``seeded``
    (integer chips) runs every row ``count`` times with integer directions drawn in the
    kernel of layer ``start`` (T * count costs)."""

    x: np.ndarray
    y: np.ndarray
    node_perturbation: np.ndarray | None = None
    weight_perturbation: np.ndarray | None = None
    noisy: bool = False
    record: bool = False
    start: int = 0
    seeded: Seeded | None = None

    @property
    def probes(self) -> int:
        """Hardware steps this request costs."""
        return len(self.x) * (self.seeded.count if self.seeded is not None else 1)


class Result(NamedTuple):
    """What the chip reports for a request: costs (T,) (``seeded``: (T, count)) and, when
    recorded, each layer's input (T, n_in) and pre-activation (T, n_out) in order."""

    costs: np.ndarray
    inputs: list[np.ndarray]
    preactivations: list[np.ndarray]


class IntegerPorts(NamedTuple):
    """What an integer chip (every layer with parameters on an
    :class:`~devsim.device.IntegerArray`) reports of its arithmetic: multiples of these
    least significant bits land exactly as perturbations and writes."""

    param_lsb: np.ndarray
    """Real value of one LSB of every flat parameter."""
    node_lsb: np.ndarray
    """Real value of one LSB of every node (a layer's integer output)."""


@dataclass(frozen=True)
class Capabilities:
    """What a chip offers the controller beyond probes of its inputs."""

    ports: frozenset[str]
    """Perturbation ports: ``"nodes"`` (pre-activations), ``"weights"`` (parameters)."""
    noisy_nodes: bool
    """Whether its intrinsic node noise can act in a pass (``Request.noisy``)."""
    decorrelation: bool
    """Whether a decorrelation matrix R sits in front of every layer's input."""
    integer: IntegerPorts | None
    """Integer LSB ports and in-kernel seeded directions, where every layer with
    parameters is integer (pooling and flatten run where the layer before them runs)."""


class Hardware:
    """A network of devices behind the controller-side interface."""

    def __init__(self, network: Network, loss: str):
        self._network = network
        self._loss_name = loss
        self._loss = loss_function(loss)
        self._steps = 0
        weighted = [d for d in network.devices if d.n_params]
        integer = None
        if weighted and all(isinstance(d, IntegerArray) for d in weighted):
            integer = IntegerPorts(
                np.concatenate([d.param_lsb for d in weighted]),
                np.concatenate([np.full(d.n_nodes, d.output_lsb) for d in weighted]))
        self.capabilities = Capabilities(
            ports=frozenset({"weights", "nodes"}), noisy_nodes=network.node_noise is not None,
            decorrelation=network.decorrelation is not None, integer=integer)

    # ---- the chip's layout
    @property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """(rows, columns) of each layer's parameter matrix, whose flat layout is
        ``[W.ravel(), b]``: (n_out, n_in) for a dense layer, the unrolled kernel of a
        convolution, (0, 0) for a layer without parameters (pooling, flatten)."""
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
    def steps(self) -> int:
        """Hardware steps so far: one per probe the chip has run."""
        return self._steps

    def local_gradient(self, layer: int, node_signal: np.ndarray, x: np.ndarray) -> np.ndarray:
        """What the synapse circuits of layer ``layer`` form locally from a signal at its
        nodes (T, its nodes) and the layer's inputs ``x`` (T, its inputs, as recorded):
        each parameter's sum over the probes of (its node's signal) x (its own input); a
        convolution's shared weight also sums over the output positions it serves. Flat
        ``[dW.ravel(), db]`` of the layer."""
        return self._network.local_gradient(layer, node_signal, x)

    # ---- what the controller may do
    def run(self, request: Request) -> Result:
        """Run a request's probes (see :class:`Request`) and report their costs."""
        x, start = request.x, request.start
        if not 0 <= start < len(self.layer_shapes):
            raise ValueError(f"start layer {start} is not a layer of this chip")
        n_out = self._network.n_outputs
        if np.shape(request.y) != (x.shape[0], n_out):
            raise ValueError(f"y has shape {np.shape(request.y)}, expected ({x.shape[0]}, "
                             f"{n_out}): a target row per probe")
        nodes = self.n_nodes - self.node_offsets[start]
        _check_rows(x, request.node_perturbation, self.node_offsets[start:], "node_perturbation")
        _check_rows(x, request.weight_perturbation, self.param_offsets[start:],
                    "weight_perturbation")
        node = request.node_perturbation
        if request.noisy:
            if self._network.node_noise is None:
                raise ValueError("noisy pass requested but network.node_noise is not set")
            noise = self._network.node_noise.sample(x.shape[0])[:, self.n_nodes - nodes:]
            if node is not None:
                noise[:, :node.shape[1]] += node
            node = noise
        if request.seeded is not None and self.capabilities.integer is None:
            raise ValueError("seeded directions need a chip whose layers are all integer")
        out = self._network.run(x, node, request.weight_perturbation, record=request.record,
                                start=start, seeded=request.seeded)
        self.account(request.probes)
        y = request.y
        if request.seeded is not None:
            y = np.repeat(y, request.seeded.count, axis=0)
            costs = self._loss(out.outputs, y).reshape(-1, request.seeded.count)
        else:
            costs = self._loss(out.outputs, y)
        return Result(costs, out.inputs, out.preactivations)

    def account(self, probes: int) -> None:
        """Count ``probes`` hardware steps: every probe any execution path runs on this
        chip is counted here (:meth:`run`, and executors that run probes in compiled
        form)."""
        self._steps += probes

    def probe(self, x: np.ndarray, y: np.ndarray, *, node_perturbation=None,
              weight_perturbation=None, noisy: bool = False, local: bool = True) -> Result:
        """:meth:`run` of one request from the inputs, recording the local signals."""
        return self.run(Request(x, y, node_perturbation, weight_perturbation, noisy, local))

    def cost(self, x: np.ndarray, y: np.ndarray, *, node_perturbation=None,
             weight_perturbation=None, noisy: bool = False) -> np.ndarray:
        """Costs (T,) of T probes from the inputs (:meth:`run` without local signals)."""
        return self.run(Request(x, y, node_perturbation, weight_perturbation, noisy)).costs

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


def _check_rows(x, perturbation, offsets, name):
    """A perturbation must have a row per probe and cover whole layers from the first
    one run (``offsets``: its layers' starts in the flat layout, and the end)."""
    if perturbation is None:
        return
    widths = [int(o - offsets[0]) for o in offsets[1:]]
    if (perturbation.ndim != 2 or perturbation.shape[0] != x.shape[0]
            or perturbation.shape[1] not in widths):
        raise ValueError(f"{name} has shape {perturbation.shape}, expected "
                         f"({x.shape[0]}, {widths[-1]}) (or the width of the first "
                         f"layers run: {', '.join(map(str, widths[:-1])) or 'none'})")
