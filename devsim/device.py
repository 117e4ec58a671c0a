"""What a device model is: a parameter family and the array contract its layers fulfil.

A device model realises one dense layer's weight matrix ``W`` (n_out x n_in) and bias
``b`` (n_out) in hardware. Its parameter class (a member of the ``device`` family)
builds a :class:`DeviceArray`, which is batched: ``forward`` evaluates T probes at
once, each with its own input row and, optionally, its own additive weight perturbation
(applied where the physics would, e.g. as a conductance offset) or node perturbation
(an injected current at the pre-activation). ``write`` takes a *requested* parameter
change and applies what the device's write physics lets land.

What a device offers beyond that is declared by the classes it derives from, never
probed by name or attribute: :class:`RowSplitArray` (a call's probe rows may run in
parts at once), :class:`ClockedArray` (it is read at a time after programming: drift),
:class:`IntegerArray` (integer tensors with LSB ports, bit-exact kernels). Arrays whose
reads change their state (a stochastic device carrying its level from probe to probe)
set :attr:`DeviceArray.stateful`, and execution then keeps their probes in order.

The contract tables (``tests/test_contract_devices.py``) check every registered model,
plugins included, against this module's promises.

Flat parameter layout of one layer, shared with the network: ``[W.ravel(), b]``.
"""
from __future__ import annotations

import abc
import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from devsim.params import Params


@dataclass(frozen=True)
class DeviceParams(Params, family="device"):
    """Base of all device parameter classes; select one in YAML with ``type:``."""

    integer_io: ClassVar[bool] = False
    """Whether the device's layers pass integer tensors (an int8 MCU): the activation
    between two of its layers must then map its output grid onto itself
    (:attr:`devsim.activations.ActivationParams.grid_preserving`)."""

    def build(self, weights: np.ndarray, bias: np.ndarray,
              rng: np.random.Generator) -> "DeviceArray":
        """Realise ``weights`` and ``bias`` on a new device array."""
        raise NotImplementedError

    def without_nonidealities(self) -> "DeviceParams":
        """This device with every non-ideality it models switched off (noise, variation,
        faults, drift, converters, levels), so that it computes what the ideal device
        computes, within its array's :meth:`DeviceArray.ideal_error_bound`; a model with
        nothing to switch off returns itself."""
        return self

    def build_conv(self, geometry, weights: np.ndarray, bias: np.ndarray,
                   rng: np.random.Generator) -> "DeviceArray | None":
        """A 2-D convolution of this model (``geometry`` a
        :class:`~devsim.conv_geometry.ConvGeometry`, ``weights`` the unrolled kernel
        (c_out, kh*kw*c_in)), or None: the kernel is then unrolled onto an array
        :meth:`build` makes (:class:`devsim.array_layers.ArrayConv2D`)."""
        return None

    def build_depthwise(self, geometry, weights: np.ndarray, bias: np.ndarray,
                        rng: np.random.Generator) -> "DeviceArray | None":
        """A depthwise convolution of this model (kernel (c_in*dm, kh*kw)), or None: one
        array per input channel from :meth:`build`
        (:class:`devsim.array_layers.ArrayDepthwise`)."""
        return None

    def build_pool(self, kind: str, geometry) -> "DeviceArray | None":
        """Pooling (``avg_pool`` or ``max_pool``) on this model's outputs, or None: in
        float (:class:`devsim.array_layers.FloatPool`)."""
        return None

    def memory(self, layers, methods, queries: int):
        """The memory a network of ``layers`` (:class:`devsim.layers.LayerShape`, in
        order) needs on this device, layer l trained by ``methods[l]`` (``"zo_weight"``,
        ``"zo_node"``, ``"bp"``, or None for a frozen layer; ``methods`` None: inference
        only) with ``queries`` perturbations per zeroth-order step; raises
        :class:`~devsim.params.ParamError` on the budget field it exceeds. None where the
        model keeps no account of memory."""
        return None

    @staticmethod
    def compiled_pass(devices: list, activations: list):
        """A whole-network pass of these layers (all on this device model) compiled into
        one call, or None where the model has none or cannot run these layers; an
        object with ``run(x, node_perturbation, node_offsets) -> outputs``."""
        return None


@dataclass
class Meter:
    """Hardware activity a device has accumulated: operations, time and energy."""

    reads: int = 0
    """Probe evaluations (one per input row per forward call)."""
    pulses: int = 0
    """Programming pulses applied by writes."""
    time_s: float = 0.0
    """Device time spent, in seconds (0 where the model gives no timing)."""
    energy_j: float = 0.0
    """Energy spent, in joules (0 where the model gives no energy)."""


class DeviceArray(abc.ABC):
    """One layer's weights on a device model (what :meth:`DeviceParams.build` returns)."""

    shape: tuple[int, int]
    """(n_out, n_in) of the layer."""
    meter: Meter
    """What the array has done: reads, pulses, seconds, joules."""
    stateful: ClassVar[bool] = False
    """Whether a read changes the array's state, so that probes must run in order."""

    @abc.abstractmethod
    def forward(self, x: np.ndarray, node_perturbation: np.ndarray | None = None,
                weight_perturbation: np.ndarray | None = None) -> np.ndarray:
        """Pre-activations (T, n_out) for inputs ``x`` (T, n_in), as a new array the
        caller owns (the network may compute the activation in it).

        ``node_perturbation`` is (T, n_out); ``weight_perturbation`` is
        (T, n_out*n_in + n_out) in the flat layout.
        """

    @abc.abstractmethod
    def write(self, delta: np.ndarray) -> None:
        """Request a parameter change (flat layout); the device decides what lands."""

    @abc.abstractmethod
    def read(self) -> np.ndarray:
        """The parameters the array currently holds (flat layout)."""

    @property
    def n_params(self) -> int:
        return layer_size(self.shape)

    @property
    def n_nodes(self) -> int:
        """Outputs (pre-activations) of one probe: n_out for a dense layer, the output
        map of a convolution."""
        return self.shape[0]

    def local_gradient(self, node_signal: np.ndarray, x: np.ndarray) -> np.ndarray:
        """What each parameter accumulates from its node's signal (T, n_nodes) and its own
        input (the layer's inputs x, (T, n_in)): the flat ``[dW.ravel(), db]`` of the
        sums over the probes of signal x input, each synapse circuit's local product
        (for a dense layer dW = signal^T x, db = sum of the signal)."""
        from devsim.dense import local_gradient
        return local_gradient(node_signal, x)

    def write_tolerance(self) -> float | np.ndarray:
        """How far (weight units, per flat parameter or one for all) a requested change
        that keeps every parameter within the device's range may land from the request
        on this array when its model is built :meth:`~DeviceParams.without_nonidealities`
        (0: exactly, up to float rounding); the contract tables write, read back and hold
        the array to it."""
        return 0.0

    def forked(self, stream: int) -> "DeviceArray":
        """A copy of this array, in its present state, whose reads draw their noise from
        stream ``stream`` of its own (evaluation reads on a fork must not change what
        training sees next). The default deep copy continues this array's streams; a
        model with counter-based noise re-keys them."""
        return copy.deepcopy(self)

    def ideal_error_bound(self, x: np.ndarray) -> float | np.ndarray:
        """How far (pre-activation units; per probe and output, or one for all) this
        array's outputs for inputs ``x`` may lie from the ideal device's with the same
        parameters, when its model is built :meth:`~DeviceParams.without_nonidealities`
        (0: equal up to float rounding)."""
        return 0.0

    def exact_parameters(self) -> np.ndarray | None:
        """The live float64 parameters [W.ravel(), b] when this array's forward is exactly
        :func:`devsim.dense.forward` of them, it meters one read per probe and nothing
        else, and a write lands as ``flat += delta`` (the ideal device); None otherwise.
        Compiled executors run the windows of such layers in their own kernels
        (:mod:`trainer.compiled`), writing these parameters in place."""
        return None


class RowSplitArray(DeviceArray):
    """An array whose forward call can be cut into parts of probe rows that run at the
    same time (see :mod:`devsim.parallel`): what :meth:`forward` computes for a call,
    its parts compute row for row, with the same noise."""

    @abc.abstractmethod
    def begin_forward(self, n_probe: int) -> object:
        """Open a call of ``n_probe`` probes (meter it, reserve its noise draws); the
        handle goes to :meth:`forward_rows`."""

    @abc.abstractmethod
    def forward_rows(self, call: object, x: np.ndarray, first: int,
                     node_perturbation: np.ndarray | None = None,
                     weight_perturbation: np.ndarray | None = None,
                     out: np.ndarray | None = None) -> np.ndarray:
        """Pre-activations of probes ``first, first + 1, ...`` of the opened call, whose
        rows of input and perturbations are given; written into ``out`` (and returned)
        when it has their shape and type, else into a new array."""


class ClockedArray(DeviceArray):
    """An array read at a time after programming (conductance drift, 1/f noise)."""

    @abc.abstractmethod
    def set_time(self, seconds: float) -> None:
        """Read the array ``seconds`` after programming from now on."""


class IntegerArray(DeviceArray):
    """An array of integer tensors (int8 weights, int32 biases, int8 activations): its
    perturbation and write ports land exactly on whole least significant bits (LSBs)."""

    @property
    @abc.abstractmethod
    def param_lsb(self) -> np.ndarray:
        """Real value of one LSB of every flat parameter."""

    @property
    @abc.abstractmethod
    def output_lsb(self) -> float:
        """Real value of one LSB of the layer's output."""

    @abc.abstractmethod
    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """The integer tensor of real inputs ``x``."""

    @abc.abstractmethod
    def dequantize_output(self, y_q: np.ndarray) -> np.ndarray:
        """Real values of integer outputs ``y_q``."""

    @abc.abstractmethod
    def forward_q_rademacher(self, x_q: np.ndarray, key, first_probe: int, mu_weight: int,
                             mu_bias: int) -> np.ndarray:
        """Integer outputs of integer inputs ``x_q``, probe t run with the layer's weights
        and biases moved by ``mu_weight`` / ``mu_bias`` LSBs along the Rademacher
        direction ``first_probe + t`` drawn in the kernel from ``key``: flat parameter i
        gets the sign ``devsim.crng.sign(key, p * d + i)`` (d the layer's size)."""


def layer_size(shape: tuple[int, int]) -> int:
    """Number of flat parameters of a layer of this (n_out, n_in) shape."""
    return shape[0] * shape[1] + shape[0]


def split_flat(flat: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Views ``(W, b)`` of a layer's flat parameter vector."""
    n_out, n_in = shape
    return flat[: n_out * n_in].reshape(n_out, n_in), flat[n_out * n_in:]


@dataclass(frozen=True)
class NoiseSourceParams(Params, family="noise"):
    """Base of intrinsic node-noise sources: physical noise a chip adds to its
    pre-activations during a noisy pass, which the controller cannot observe."""

    def build(self, n_nodes: int, rng: np.random.Generator) -> "NoiseSource":
        raise NotImplementedError


class NoiseSource(abc.ABC):
    """Produces the noise of T successive samples at every node."""

    stateful: ClassVar[bool] = False
    """Whether the source carries state from sample to sample (a telegraph device's
    current level), so that its samples must be drawn in order."""

    @abc.abstractmethod
    def sample(self, n_probes: int) -> np.ndarray:
        """(n_probes, n_nodes) noise to add to the pre-activations."""
