"""A forward-only network of layers (dense, convolution, pooling, flatten: :mod:`devsim.layers`),
each realised on a device model.

The network owns the flat layouts the rest of devsim speaks in: parameters
``[W1.ravel(), b1, W2.ravel(), b2, ...]`` (each layer's parameter matrix: a dense
layer's weights, a convolution's unrolled kernel; nothing for pooling and flatten) and
nodes (pre-activations) ``[a1, a2, ...]`` (a dense layer's outputs, a convolution's
output map; nothing for pooling and flatten). It evaluates T probes per call, layer by
layer, each device batched over the probes.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from devsim import parallel
from devsim.activations import ActivationParams
from devsim.device import (DeviceParams, IntegerArray, NoiseSourceParams, RowSplitArray,
                           layer_size)
from devsim.layers import LayerParams, LayerShape, NetworkLayerParams, layer_shapes
from devsim.losses import LOSSES
from devsim.params import ParamError, Params, param

__all__ = ["Network", "NetworkParams", "LayerParams", "Pass", "Seeded", "ideal_device",
           "init_weights"]


def ideal_device() -> DeviceParams:
    """The default device of a network: the ideal float device (``type: ideal``)."""
    return DeviceParams.members()["ideal"]()


@dataclass(frozen=True)
class NetworkParams(Params):
    """The network: layers in order (the last is the output), devices, loss, init."""

    layers: tuple[NetworkLayerParams, ...] = param(default_factory=tuple)
    """Layers from input to output (``type:``, see the layer types; ``dense`` when absent)."""
    input_shape: tuple[int, ...] = param(default_factory=tuple, ge=1)
    """Shape of one input: ``[H, W, C]`` (an image, NHWC) for a network that starts on a
    map (convolution, pooling); empty for a flat input as wide as the data's."""
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
        if len(self.input_shape) not in (0, 3):
            raise ParamError(("input_shape",), f"must be [H, W, C] (or empty for a flat "
                                               f"input), got {list(self.input_shape)}")
        for i, layer in enumerate(self.layers):
            device = self.device_of(i)
            if (layer.has_params and device.integer_io
                    and not layer.nonlinearity().grid_preserving):
                allowed = sorted(kind for kind, cls in ActivationParams.members().items()
                                 if cls.grid_preserving)
                raise ParamError(("layers", i, "activation"),
                                 f"a layer on device type {device.kind!r} passes integer "
                                 f"tensors and needs an activation that maps its output grid "
                                 f"onto itself ({', '.join(allowed)}), got "
                                 f"{layer.nonlinearity().kind!r}")
            if layer.kind != "dense" and not self.input_shape:
                raise ParamError(("input_shape",), f"layers[{i}] ({layer.kind}) needs a map: "
                                                   f"give the input's [H, W, C]")
            if layer.kind != "dense" and self.decorrelation:
                raise ParamError(("decorrelation",), f"needs dense layers only (one square "
                                                     f"matrix per input vector), but layers[{i}] "
                                                     f"is {layer.kind}")
        if self.input_shape:
            layer_shapes(self.layers, self.input_shape)

    def device_of(self, layer: int) -> DeviceParams:
        """The device layer ``layer`` runs on: its own, else ``device``; a layer without
        parameters (pooling, flatten) runs where the layer before it runs."""
        for spec in reversed(self.layers[:layer + 1]):
            if spec.has_params:
                return spec.device or self.device
        return self.device

    def shapes(self, n_inputs: int) -> list[LayerShape]:
        """Every layer's :class:`~devsim.layers.LayerShape` for inputs of ``n_inputs``
        values; :class:`ParamError` where they do not fit (``input_shape`` or a layer)."""
        in_shape = self.input_shape or (n_inputs,)
        if math.prod(in_shape) != n_inputs:
            raise ParamError(("input_shape",), f"must hold the data's {n_inputs} inputs, got "
                                               f"{list(in_shape)} ({math.prod(in_shape)})")
        return layer_shapes(self.layers, in_shape)


def init_weights(scheme: str, gain: float, shape: tuple[int, int], fans: tuple[int, int],
                 rng: np.random.Generator) -> np.ndarray:
    """Initial weights of matrix ``shape`` under a named scheme, for weights of ``fans``
    = (fan in, fan out) (a dense layer's (n_in, n_out))."""
    fan_in, fan_out = fans
    if scheme == "glorot_uniform":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    elif scheme == "glorot_normal":
        w = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    else:
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
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
        self.layers = tuple(params.shapes(n_inputs))
        """Each layer's :class:`~devsim.layers.LayerShape`."""
        self.shapes = tuple(shape.matrix for shape in self.layers)
        """(rows, columns) of each layer's parameter matrix ((0, 0): none)."""
        self.devices, self.activations = [], []
        for i, (spec, shape) in enumerate(zip(params.layers, self.layers)):
            w = b = None
            if spec.has_params:
                w = init_weights(params.init, params.init_gain, shape.matrix, shape.fans,
                                 init_rng)
                b = np.zeros(shape.matrix[0])
            self.devices.append(spec.build(shape, params.device_of(i), w, b, device_rng))
            self.activations.append(spec.nonlinearity().build(shape.n_out, device_rng))
        sizes = [layer_size(s) for s in self.shapes]
        self.param_offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.node_offsets = np.concatenate([[0], np.cumsum([d.n_nodes for d in self.devices])])
        self.node_noise = (params.node_noise.build(self.n_nodes, device_rng)
                           if params.node_noise is not None else None)
        self.decorrelation = ([np.eye(n_in) for _, n_in in self.shapes]
                              if params.decorrelation else None)
        self._buffers = {}  # (layer, thread) -> pre-activation array reused by passes
        self._chain = self._compiled_pass()  # compiled passes, if the devices offer them
        self._bias_slots = [slice(self.param_offsets[i + 1] - n_out, self.param_offsets[i + 1])
                            for i, ((n_out, _), layer) in enumerate(zip(self.shapes, params.layers))
                            if layer.has_params and not layer.bias]

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

    @property
    def n_inputs(self) -> int:
        return self.layers[0].n_in

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_out

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
            out = np.empty((len(h), self.n_outputs))

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
                recorded[1].append(a if device.n_nodes else a[:, :0])  # no nodes: none
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
        if any(layer.kind != "dense" for layer in self.params.layers):
            return None
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

    def local_gradient(self, layer: int, node_signal: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Layer ``layer``'s flat parameter vector of local products of its nodes' signal
        (T, its nodes) and its inputs x (:meth:`devsim.device.DeviceArray.local_gradient`)."""
        return self.devices[layer].local_gradient(node_signal, x)

    def use_devices(self, devices: list) -> None:
        """Realise the layers on other device arrays of the same shapes (say, the int8
        layers of a post-training quantization); activations and layouts stay."""
        shapes = tuple(tuple(d.shape) for d in devices)
        nodes = [d.n_nodes for d in devices]
        if shapes != self.shapes or nodes != [d.n_nodes for d in self.devices]:
            raise ValueError(f"devices have shapes {shapes} and {nodes} nodes, the network "
                             f"{self.shapes} and {[d.n_nodes for d in self.devices]}")
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
