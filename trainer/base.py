"""The estimator seam: turn observed cost changes into a gradient estimate.

An estimator sees one update window at a time: the inputs and targets the
controller presents at each hardware step (each sample held ``tau_x`` steps), and
the :class:`~devsim.hardware.Hardware` to probe. It decides which perturbations to
inject and which passes to run, reads only costs and local signals, and returns an
:class:`Estimate` that any optimizer in :mod:`trainer.optim` can consume.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, NamedTuple

import numpy as np

from devsim.hardware import Hardware
from devsim.params import Params


class Window(NamedTuple):
    """What the controller presents during one update window of T steps."""

    x: np.ndarray
    """Inputs, one row per step (T, n_in)."""
    y: np.ndarray
    """Targets, one row per step (T, n_out)."""
    new_sample: np.ndarray
    """True on the first step of each newly presented sample (T,)."""


class Estimate(NamedTuple):
    """A gradient estimate and what was observed while forming it."""

    gradient: np.ndarray
    """Flat estimate in the hardware's parameter layout."""
    cost: float
    """Mean cost of the inferences the estimate was formed from."""
    info: Mapping[str, float] = MappingProxyType({})
    """Extra diagnostic scalars, named as in :meth:`EstimatorParams.diagnostics`."""


class Footprint(NamedTuple):
    """How an estimator trains each layer, in the terms of device memory accounts."""

    methods: tuple[str | None, ...]
    """Per layer: ``"zo_weight"``, ``"zo_node"``, ``"bp"``, or None for a frozen layer."""
    queries: int = 1
    """Perturbations per zeroth-order step whose losses are kept."""


@dataclass(frozen=True)
class EstimatorParams(Params, family="estimator"):
    """Base of the gradient estimators; select one with ``type:``."""

    def build(self, hardware: Hardware, rng: np.random.Generator) -> "Estimator":
        raise NotImplementedError

    def footprint(self, n_layers: int) -> "Footprint | None":
        """What training keeps in the chip's memory, for devices that account memory
        (an MCU): each layer's method and the queries per zeroth-order step; None where
        this estimator is not modelled (counted as inference only)."""
        return None

    def diagnostics(self) -> tuple[str, ...]:
        """Names of the extra scalars every :class:`Estimate` of this estimator reports
        in ``info`` (the trace declares its columns from them up front)."""
        return ()


class Estimator:
    """Forms one estimate per update window; may keep state between windows."""

    def estimate(self, hardware: Hardware, window: Window) -> Estimate:
        raise NotImplementedError


def layer_gradient(hardware: Hardware, node_signal: np.ndarray,
                   inputs: list[np.ndarray]) -> np.ndarray:
    """Each synapse's local estimate from its node's signal and its own input.

    For every layer: dW = node_signal_l^T @ x_l, db = sum_t node_signal_l; the
    sum over the window's steps of (node estimate) x (presynaptic input).
    """
    parts = []
    offsets = hardware.node_offsets
    for i, x in enumerate(inputs):
        g = node_signal[:, offsets[i]:offsets[i + 1]]
        parts.append((g.T @ x).ravel())
        parts.append(g.sum(axis=0))
    return np.concatenate(parts)
