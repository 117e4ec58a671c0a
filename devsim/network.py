"""A forward-only network of dense layers, each realised on a device model.

The network owns the flat layouts the rest of devsim speaks in: parameters
``[W1.ravel(), b1, W2.ravel(), b2, ...]`` and nodes (pre-activations)
``[a1, a2, ...]``. It evaluates T probes per call, layer by layer, each device
batched over the probes.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from devsim import parallel
from devsim.activations import ActivationParams, Sigmoid
from devsim.device import (DeviceParams, IntegerArray, NoiseSourceParams, RowSplitArray,
                           layer_size)
from devsim.losses import LOSSES
from devsim.params import ParamError, Params, param


def ideal_device() -> DeviceParams:
    """The default device of a network: the ideal float device (``type: ideal``)."""
    return DeviceParams.members()["ideal"]()


@dataclass(frozen=True)
class LayerParams(Params):
    """One dense layer: its width, non-linearity and (optionally) its own device."""

    units: int = param(ge=1)
    """Number of neurons (outputs of the layer)."""
    activation: ActivationParams = field(default_factory=Sigmoid)
    """Non-linearity applied to the pre-activations (name or ``{type: ..., ...}``)."""
    device: DeviceParams | None = None
    """Device holding this layer's weights; defaults to ``network.device``."""
    bias: bool = True
    """Whether the layer has a trainable bias. Without one the bias stays at its initial
    zero: writes to and weight perturbations of its slots are dropped (the flat layout
    keeps the slots, so every layer has the same ``[W.ravel(), b]`` shape)."""


@dataclass(frozen=True)
class NetworkParams(Params):
    """The network: layers in order (the last is the output), devices, loss, init."""

    layers: tuple[LayerParams, ...] = param(default_factory=tuple)
    """Dense layers from input to output; input width comes from the data."""
    device: DeviceParams = field(default_factory=ideal_device)
    """Device model of every layer that does not name its own."""
    loss: str = param("mse", choices=LOSSES)
    """Cost reported per inference: ``mse`` (mean over outputs) or ``cross_entropy``."""
    init: str = param("glorot_uniform", choices=("glorot_uniform", "glorot_normal", "he_normal"))
    """Weight initialisation scheme (biases start at zero)."""
    init_gain: float = param(1.0, gt=0.0)
    """Multiplier on the initial weights."""
    node_noise: NoiseSourceParams | None = None
    """Intrinsic noise the chip adds to every pre-activation in a noisy pass (none if unset)."""
    decorrelation: bool = False
    """Put a square matrix R (identity at start; another crossbar in hardware, ideal float
    here) in front of every layer, so the layer sees R x; the controller updates R."""

    def validate(self):
        if not self.layers:
            raise ParamError(("layers",), "must list at least one layer")
        for i, layer in enumerate(self.layers):
            device = layer.device or self.device
            if device.integer_io and not layer.activation.grid_preserving:
                allowed = sorted(kind for kind, cls in ActivationParams.members().items()
                                 if cls.grid_preserving)
                raise ParamError(("layers", i, "activation"),
                                 f"a layer on device type {device.kind!r} passes integer "
                                 f"tensors and needs an activation that maps its output grid "
                                 f"onto itself ({', '.join(allowed)}), got "
                                 f"{layer.activation.kind!r}")


def init_weights(scheme: str, gain: float, n_out: int, n_in: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Initial (n_out, n_in) weights under a named scheme."""
    if scheme == "glorot_uniform":
        limit = np.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-limit, limit, size=(n_out, n_in))
    elif scheme == "glorot_normal":
        w = rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), size=(n_out, n_in))
    else:
        w = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_out, n_in))
    return gain * w


class Pass(NamedTuple):
    """What one batched pass produced: outputs, and for each layer it ran (when recorded)
    that layer's input and pre-activation."""

    outputs: np.ndarray
    inputs: list[np.ndarray]
    preactivations: list[np.ndarray]


class Seeded(NamedTuple):
    """Integer Rademacher directions drawn inside an integer device's kernel: every input
    row runs ``count`` times, the layer's weights and biases moved by ``mu_weight`` and
    ``mu_bias`` LSBs along directions ``first, ..., first + count - 1`` of ``key``
    (:meth:`devsim.device.IntegerArray.forward_q_rademacher`)."""

    key: np.uint64
    first: int
    count: int
    mu_weight: int
    mu_bias: int


class Network:
    """Layers of devices and activations, evaluated for T probes at once."""

    def __init__(self, params: NetworkParams, n_inputs: int,
                 init_rng: np.random.Generator, device_rng: np.random.Generator):
        self.params = params
        widths = [n_inputs] + [layer.units for layer in params.layers]
        self.shapes = tuple((widths[i + 1], widths[i]) for i in range(len(params.layers)))
        self.devices, self.activations = [], []
        for (n_out, n_in), layer in zip(self.shapes, params.layers):
            w = init_weights(params.init, params.init_gain, n_out, n_in, init_rng)
            device = layer.device or params.device
            self.devices.append(device.build(w, np.zeros(n_out), device_rng))
            self.activations.append(layer.activation.build(n_out, device_rng))
        sizes = [layer_size(s) for s in self.shapes]
        self.param_offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.node_offsets = np.concatenate([[0], np.cumsum([s[0] for s in self.shapes])])
        self.node_noise = (params.node_noise.build(self.n_nodes, device_rng)
                           if params.node_noise is not None else None)
        self.decorrelation = ([np.eye(n_in) for _, n_in in self.shapes]
                              if params.decorrelation else None)
        self._buffers = {}  # (layer, thread) -> pre-activation array reused by passes
        self._chain = self._compiled_pass()  # compiled passes, if the devices offer them
        self._bias_slots = [slice(self.param_offsets[i + 1] - n_out, self.param_offsets[i + 1])
                            for i, ((n_out, _), layer) in enumerate(zip(self.shapes, params.layers))
                            if not layer.bias]

    @property
    def stateful(self) -> bool:
        """Whether a pass changes the state of a device or neuron (stochastic devices
        carrying their level from probe to probe): its probes then run in order, never
        split across threads (a stateful part parallelises over its devices instead)."""
        return (any(d.stateful for d in self.devices)
                or any(a.stateful for a in self.activations))

    @property
    def n_params(self) -> int:
        return int(self.param_offsets[-1])

    @property
    def n_nodes(self) -> int:
        return int(self.node_offsets[-1])

    def run(self, x: np.ndarray, node_perturbation: np.ndarray | None = None,
            weight_perturbation: np.ndarray | None = None, record: bool = False,
            start: int = 0, seeded: Seeded | None = None) -> Pass:
        """Evaluate T probes: rows of ``x`` through layers ``start, start + 1, ...`` (``x``
        is layer ``start``'s input), with rows of the perturbations, whose columns are the
        nodes and parameters of the layers run (the flat layouts from that layer on).

        ``record`` keeps each layer's input and pre-activation. ``seeded`` runs every row
        ``count`` times through layer ``start`` with integer directions drawn in its kernel
        (T * count output rows, sample-major). The probes go through one layer loop, cut
        into parts of whole blocks run on threads where the devices allow it
        (:mod:`devsim.parallel`), or through the devices' compiled pass where they offer
        one and the call needs nothing it lacks.
        """
        h = np.ascontiguousarray(x, dtype=np.float64)
        if weight_perturbation is not None and self._bias_slots:
            weight_perturbation = self._drop_bias(weight_perturbation, start)
        if (self._chain is not None and start == 0 and not record and seeded is None
                and weight_perturbation is None and self.decorrelation is None):
            return Pass(self._chain.run(h, node_perturbation, self.node_offsets), [], [])
        inputs, preacts = [], []
        split = (not record and seeded is None and not self.stateful
                 and all(isinstance(d, RowSplitArray) for d in self.devices[start:]))
        calls = [d.begin_forward(len(h)) for d in self.devices[start:]] if split else None
        threads = parallel.row_threads(len(h)) if split else 1
        with parallel.single_threaded_blas():
            if threads == 1:
                out = self._layers(h, 0, start, calls, node_perturbation, weight_perturbation,
                                   seeded, (inputs, preacts) if record else None)
                return Pass(np.asarray(out, dtype=np.float64), inputs, preacts)
            out = np.empty((len(h), self.shapes[-1][0]))

            def rows(t0, t1):
                out[t0:t1] = self._layers(h[t0:t1], t0, start, calls, node_perturbation,
                                          weight_perturbation, None, None)

            parallel.run_split(rows, len(h), threads)
        return Pass(out, inputs, preacts)

    def _layers(self, h, first, start, calls, node_perturbation, weight_perturbation,
                seeded, recorded):
        """Rows ``first, first + 1, ...`` of a pass (inputs ``h``) through the layers from
        ``start``: the one layer loop every pass goes through. ``calls``: the opened calls
        of row-split devices (None: whole calls to ``forward``); ``recorded``: lists to
        append each layer's input and pre-activation to (None: not recorded, and
        hidden layers write into arrays kept between passes)."""
        rows = len(h)
        last = len(self.devices) - 1
        node0, param0 = self.node_offsets[start], self.param_offsets[start]
        for i in range(start, len(self.devices)):
            device, act = self.devices[i], self.activations[i]
            if self.decorrelation is not None:
                h = parallel.matmul(h, self.decorrelation[i].T,
                                    np.empty((len(h), self.shapes[i][1])), first)
            node = _columns(node_perturbation, first, rows, self.node_offsets[i] - node0,
                            self.node_offsets[i + 1] - node0)
            wgt = _columns(weight_perturbation, first, rows, self.param_offsets[i] - param0,
                           self.param_offsets[i + 1] - param0)
            if i == start and seeded is not None:
                bias = self.params.layers[i].bias  # an absent bias is never perturbed
                a = self._seeded_layer(device, h, seeded if bias else seeded._replace(mu_bias=0))
            elif calls is not None:
                buffer = None if i == last else self._buffer(i, rows)
                a = device.forward_rows(calls[i - start], h, first, node, wgt, out=buffer)
                if i != last and a is not buffer:
                    self._buffers[i, threading.get_ident()] = a
            else:
                a = device.forward(h, node, wgt)
            if recorded is not None:
                recorded[0].append(h)
                recorded[1].append(a)
                h = act(a)
            else:
                h = act.in_place(a)  # a is ours (devices return fresh or kept arrays)
        return h

    @staticmethod
    def _seeded_layer(device, h, seeded: Seeded) -> np.ndarray:
        """Pre-activations of every row of ``h`` run ``seeded.count`` times with the
        integer device's in-kernel directions (sample-major)."""
        if not isinstance(device, IntegerArray):
            raise ValueError("seeded directions need a layer on an integer device")
        x_q = device.quantize_input(h)
        return device.dequantize_output(np.concatenate([
            device.forward_q_rademacher(np.repeat(x_q[t:t + 1], seeded.count, axis=0),
                                        seeded.key, seeded.first, seeded.mu_weight,
                                        seeded.mu_bias)
            for t in range(len(x_q))]))

    def _buffer(self, layer: int, rows: int) -> np.ndarray | None:
        """The first ``rows`` rows of this thread's kept array for ``layer``, if it has one
        that large."""
        kept = self._buffers.get((layer, threading.get_ident()))
        return kept[:rows] if kept is not None and len(kept) >= rows else None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_buffers"] = {}  # work arrays, keyed by this process's threads
        state["_chain"] = None  # holds this process's addresses of the device arrays
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._chain = self._compiled_pass()

    def _compiled_pass(self):
        """The device model's compiled whole-network pass over these layers (see
        :meth:`devsim.device.DeviceParams.compiled_pass`), where all layers share one
        device model that offers one and it accepts them; else None."""
        kinds = {type(layer.device or self.params.device) for layer in self.params.layers}
        if len(kinds) != 1:
            return None
        return kinds.pop().compiled_pass(self.devices, self.activations)

    def write(self, update: np.ndarray) -> None:
        """Send a flat parameter update to each layer's device."""
        if self._bias_slots:
            update = self._drop_bias(update)
        for i, device in enumerate(self.devices):
            device.write(update[self.param_offsets[i]:self.param_offsets[i + 1]])

    def read(self) -> np.ndarray:
        """The flat parameters the devices hold now."""
        return np.concatenate([device.read() for device in self.devices])

    def use_devices(self, devices: list) -> None:
        """Realise the layers on other device arrays of the same shapes (say, the int8
        layers of a post-training quantization); activations and layouts stay."""
        shapes = tuple(tuple(d.shape) for d in devices)
        if shapes != self.shapes:
            raise ValueError(f"devices have shapes {shapes}, the network {self.shapes}")
        self.devices = list(devices)
        self._chain = None  # the layers' params no longer describe these devices

    def _drop_bias(self, flat: np.ndarray, start: int = 0) -> np.ndarray:
        """A copy of a flat parameter vector (or rows of them) of the layers from
        ``start`` on, with the slots of absent biases set to zero."""
        flat = flat.copy()
        shift = self.param_offsets[start]
        for slots in self._bias_slots:
            if slots.start >= shift:
                flat[..., slots.start - shift:slots.stop - shift] = 0.0
        return flat

    def write_decorrelation(self, deltas: list[np.ndarray]) -> None:
        """Add ``deltas[l]`` to the decorrelation matrix in front of layer l."""
        for matrix, delta in zip(self.decorrelation, deltas, strict=True):
            if delta.shape != matrix.shape:
                raise ValueError(f"decorrelation update has shape {delta.shape}, "
                                 f"expected {matrix.shape}")
            matrix += delta


def _columns(perturbation, first, rows, lo, hi):
    """Rows ``first .. first + rows`` and columns ``lo .. hi`` of a perturbation, or None
    where there is none or it ends before ``hi`` (it covers only earlier layers)."""
    if perturbation is None or perturbation.shape[1] < hi:
        return None
    return perturbation[first:first + rows, lo:hi]
