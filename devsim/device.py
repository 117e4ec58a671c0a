"""What every device model provides: a parameter family and the dense-array contract.

A device model realises one dense layer's weight matrix ``W`` (n_out x n_in) and bias
``b`` (n_out) in hardware. It is batched: ``forward`` evaluates T probes at once, each
with its own input row and, optionally, its own additive weight perturbation (applied
where the physics would, e.g. as a conductance offset) or node perturbation (an
injected current at the pre-activation). ``write`` takes a *requested* parameter change
and applies what the device's write physics lets land.

Flat parameter layout of one layer, shared with the network: ``[W.ravel(), b]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from devsim.params import Params


@dataclass(frozen=True)
class DeviceParams(Params, family="device"):
    """Base of all device parameter classes; select one in YAML with ``type:``."""

    integer_io: ClassVar[bool] = False
    """Whether the device's layers pass integer tensors (an int8 MCU): the activation
    between two of its layers must then map its output grid onto itself
    (:attr:`devsim.activations.ActivationParams.grid_preserving`)."""

    def memory(self, shapes, methods, queries: int):
        """The memory a network of layers ``shapes[l] = (n_out, n_in)`` needs on this
        device, layer l trained by ``methods[l]`` (``"zo_weight"``, ``"zo_node"``,
        ``"bp"``, or None for a frozen layer; ``methods`` None: inference only) with
        ``queries`` perturbations per zeroth-order step; raises
        :class:`~devsim.params.ParamError` on the budget field it exceeds. None where the
        model keeps no account of memory."""
        return None

    @staticmethod
    def compiled_pass(devices: list, activations: list):
        """A whole-network pass of these layers (all on this device model) compiled into
        one call, or None where the model has none or cannot run these layers; an
        object with ``run(x, node_perturbation, node_offsets) -> outputs``."""
        return None

    def build(self, weights: np.ndarray, bias: np.ndarray,
              rng: np.random.Generator) -> "DenseDevice":
        """Realise ``weights`` and ``bias`` on a new device array."""
        raise NotImplementedError


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


class DenseDevice(Protocol):
    """The contract a device model's array object fulfils."""

    shape: tuple[int, int]
    meter: Meter

    def forward(self, x: np.ndarray, node_perturbation: np.ndarray | None = None,
                weight_perturbation: np.ndarray | None = None) -> np.ndarray:
        """Pre-activations (T, n_out) for inputs ``x`` (T, n_in), as a new array the
        caller owns (the network may compute the activation in it).

        ``node_perturbation`` is (T, n_out); ``weight_perturbation`` is
        (T, n_out*n_in + n_out) in the flat layout.
        """

    def write(self, delta: np.ndarray) -> None:
        """Request a parameter change (flat layout); the device decides what lands."""

    def read(self) -> np.ndarray:
        """The parameters the array currently holds (flat layout), for traces."""


class RowSplitDevice(DenseDevice, Protocol):
    """A device whose forward call can be cut into parts of probe rows that run at the
    same time (see :mod:`devsim.parallel`): what :meth:`forward` computes for a call,
    its parts compute row for row, with the same noise."""

    def begin_forward(self, n_probe: int) -> object:
        """Open a call of ``n_probe`` probes (meter it, reserve its noise draws); the
        handle goes to :meth:`forward_rows`."""

    def forward_rows(self, call: object, x: np.ndarray, first: int,
                     node_perturbation: np.ndarray | None = None,
                     weight_perturbation: np.ndarray | None = None,
                     out: np.ndarray | None = None) -> np.ndarray:
        """Pre-activations of probes ``first, first + 1, ...`` of the opened call, whose
        rows of input and perturbations are given; written into ``out`` (and returned)
        when it has their shape and type, else into a new array."""


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


class NoiseSource(Protocol):
    """Produces the noise of T successive samples at every node; may carry state
    (a telegraph device's current level) from one call to the next."""

    def sample(self, n_probes: int) -> np.ndarray:
        """(n_probes, n_nodes) noise to add to the pre-activations."""
