"""The ideal float device: exact weights, no noise, writes land as asked.

It is the reference every noisy device is checked against: with all of its
non-idealities switched off, a noisy model must reproduce these outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from devices.conv import IdealConv2D, IdealDepthwise
from devsim import parallel
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


@njit(cache=True)
def add_weight_perturbation(x, perturbation, n_out, out):
    """out[t] += dW_t @ x[t] + db_t, with (dW_t, db_t) row t of the flat ``perturbation``.

    The per-probe part of (W + dW_t) x_t: the shared ``W x`` is one GEMM outside.
    """
    n_probe, n_in = x.shape
    bias0 = n_out * n_in
    for t in range(n_probe):
        for j in range(n_out):
            acc = perturbation[t, bias0 + j]
            row = j * n_in
            for i in range(n_in):
                acc += perturbation[t, row + i] * x[t, i]
            out[t, j] += acc


def add_weight_perturbation_np(x, perturbation, n_out, out):
    """NumPy twin of :func:`add_weight_perturbation`."""
    n_probe, n_in = x.shape
    dw = perturbation[:, : n_out * n_in].reshape(n_probe, n_out, n_in)
    out += np.einsum("tji,ti->tj", dw, x) + perturbation[:, n_out * n_in:]


def dense_forward(w, b, x, node_perturbation, weight_perturbation):
    """Batched affine map with optional per-probe weight and node perturbations (the
    product made in canonical blocks of probes, :func:`devsim.parallel.matmul`)."""
    out = parallel.matmul(x, w.T, np.empty((x.shape[0], w.shape[0])))
    out += b
    if weight_perturbation is not None:
        add_weight_perturbation(x, np.ascontiguousarray(weight_perturbation), w.shape[0], out)
    if node_perturbation is not None:
        out += node_perturbation
    return out


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
