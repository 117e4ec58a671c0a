"""The float dense layer: ``x W^T + b`` with per-probe perturbations, as the ideal device
computes it.

:func:`forward` is the ideal device's pass (its products in canonical blocks of probes,
:func:`devsim.parallel.matmul`); :func:`affine_block` is the same arithmetic on one
block from compiled code (NumPy's own BLAS through :mod:`devsim.blas`), so that a compiled
executor running whole update windows (:mod:`trainer.compiled`) gets the device's bits.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devsim import blas, parallel


@njit(cache=True, nogil=True)
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


def forward(w, b, x, node_perturbation=None, weight_perturbation=None):
    """Batched affine map with optional per-probe weight and node perturbations (the
    product made in canonical blocks of probes, :func:`devsim.parallel.matmul`)."""
    out = parallel.matmul(x, w.T, np.empty((x.shape[0], w.shape[0])))
    out += b
    if weight_perturbation is not None:
        add_weight_perturbation(x, np.ascontiguousarray(weight_perturbation), w.shape[0], out)
    if node_perturbation is not None:
        out += node_perturbation
    return out


@njit(cache=True, nogil=True)
def affine_block(flat, n_out, x, node, weights, out, cblas):
    """One canonical block of :func:`forward` into ``out`` (rows, n_out): ``flat`` the
    layer's parameters [W.ravel(), b]; ``node`` (rows, n_out) and ``weights`` (rows,
    len(flat)) the perturbations, or arrays with no rows for none."""
    n_in = x.shape[1]
    w = flat[:n_out * n_in].reshape((n_out, n_in))
    blas.matmul(x, w, True, out, cblas)
    bias = n_out * n_in
    for t in range(out.shape[0]):
        for j in range(n_out):
            out[t, j] += flat[bias + j]
    if weights.shape[0]:
        add_weight_perturbation(x, weights, n_out, out)
    if node.shape[0]:
        for t in range(out.shape[0]):
            for j in range(n_out):
                out[t, j] += node[t, j]
