"""A forward-only network of dense layers, each realised on a device model.

The network owns the flat layouts the rest of devsim speaks in: parameters
``[W1.ravel(), b1, W2.ravel(), b2, ...]`` and nodes (pre-activations)
``[a1, a2, ...]``. It evaluates T probes per call, layer by layer, each device
batched over the probes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from devices import DeviceParams, IdealParams, NoiseSourceParams
from devices.base import layer_size
from devsim.activations import ActivationParams, Sigmoid
from devsim.losses import LOSSES
from devsim.params import ParamError, Params, param


@dataclass(frozen=True)
class LayerParams(Params):
    """One dense layer: its width, non-linearity and (optionally) its own device."""

    units: int = param(ge=1)
    """Number of neurons (outputs of the layer)."""
    activation: ActivationParams = field(default_factory=Sigmoid)
    """Non-linearity applied to the pre-activations (name or ``{type: ..., ...}``)."""
    device: DeviceParams | None = None
    """Device holding this layer's weights; defaults to ``network.device``."""


@dataclass(frozen=True)
class NetworkParams(Params):
    """The network: layers in order (the last is the output), devices, loss, init."""

    layers: tuple[LayerParams, ...] = param(default_factory=tuple)
    """Dense layers from input to output; input width comes from the data."""
    device: DeviceParams = field(default_factory=IdealParams)
    """Device model of every layer that does not name its own."""
    loss: str = param("mse", choices=LOSSES)
    """Cost reported per inference: ``mse`` (mean over outputs) or ``cross_entropy``."""
    init: str = param("glorot_uniform", choices=("glorot_uniform", "glorot_normal", "he_normal"))
    """Weight initialisation scheme (biases start at zero)."""
    init_gain: float = param(1.0, gt=0.0)
    """Multiplier on the initial weights."""
    node_noise: NoiseSourceParams | None = None
    """Intrinsic noise the chip adds to every pre-activation in a noisy pass (none if unset)."""

    def validate(self):
        if not self.layers:
            raise ParamError(("layers",), "must list at least one layer")


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
    """What one batched pass produced: outputs, and per layer its inputs and pre-activations."""

    outputs: np.ndarray
    inputs: list[np.ndarray]
    preactivations: list[np.ndarray]


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

    @property
    def n_params(self) -> int:
        return int(self.param_offsets[-1])

    @property
    def n_nodes(self) -> int:
        return int(self.node_offsets[-1])

    def run(self, x: np.ndarray, node_perturbation: np.ndarray | None = None,
            weight_perturbation: np.ndarray | None = None, record: bool = False) -> Pass:
        """Evaluate T probes: rows of ``x`` with rows of the (flat) perturbations."""
        inputs, preacts = [], []
        h = np.ascontiguousarray(x, dtype=np.float64)
        for i, (device, act) in enumerate(zip(self.devices, self.activations)):
            node = wgt = None
            if node_perturbation is not None:
                node = node_perturbation[:, self.node_offsets[i]:self.node_offsets[i + 1]]
            if weight_perturbation is not None:
                wgt = weight_perturbation[:, self.param_offsets[i]:self.param_offsets[i + 1]]
            a = device.forward(h, node, wgt)
            if record:
                inputs.append(h)
                preacts.append(a)
            h = act(a)
        return Pass(h, inputs, preacts)

    def write(self, update: np.ndarray) -> None:
        """Send a flat parameter update to each layer's device."""
        for i, device in enumerate(self.devices):
            device.write(update[self.param_offsets[i]:self.param_offsets[i + 1]])

    def read(self) -> np.ndarray:
        """The flat parameters the devices hold now."""
        return np.concatenate([device.read() for device in self.devices])
