"""The ideal float device: exact weights, no noise, writes land as asked.

It is the reference every noisy device is checked against: with all of its
non-idealities switched off, a noisy model must reproduce these outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices.conv import IdealConv2D, IdealDepthwise
from devsim.dense import forward as dense_forward
from devsim.device import DeviceArray, DeviceParams, Meter, split_flat


@dataclass(frozen=True)
class IdealParams(DeviceParams, kind="ideal"):
    """Noise-free float64 weights; writes apply the requested change exactly."""

    def build(self, weights, bias, rng):
        return IdealDense(weights, bias)

    def build_conv(self, geometry, weights, bias, rng):
        return IdealConv2D(geometry, weights, bias)

    def build_depthwise(self, geometry, weights, bias, rng):
        return IdealDepthwise(geometry, weights, bias)


class IdealDense(DeviceArray):
    """A weight matrix held exactly in float64."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray):
        self.shape = weights.shape
        self._flat = np.concatenate([weights.ravel(), bias]).astype(np.float64)
        self.meter = Meter()

    @property
    def w(self) -> np.ndarray:
        """Weights, a view into the flat parameters (views are rebuilt, not stored, so a
        pickled device keeps writes and reads on the same memory)."""
        return split_flat(self._flat, self.shape)[0]

    @property
    def b(self) -> np.ndarray:
        """Bias, a view into the flat parameters."""
        return split_flat(self._flat, self.shape)[1]

    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        self.meter.reads += x.shape[0]
        return dense_forward(self.w, self.b, x, node_perturbation, weight_perturbation)

    def write(self, delta):
        self._flat += delta

    def read(self):
        return self._flat.copy()

    def exact_parameters(self):
        return self._flat
