"""The float dense layer: ``x W^T + b`` with per-probe perturbations, as the ideal device
computes it, and the local products its synapses form.

:func:`forward` is the ideal device's pass (its products in canonical blocks of probes,
:func:`devsim.parallel.matmul`); :func:`affine_block` is the same arithmetic on one
block from compiled code (NumPy's own BLAS through :mod:`devsim.blas`), so that a compiled
executor running whole update windows (:mod:`trainer.compiled`) gets the device's bits.
:func:`local_gradient` (dW = signal^T x, db = column sums of the signal; every dense array's
:meth:`~devsim.device.DeviceArray.local_gradient`) and its kernel :func:`correlate` are
shared the same way; their sums run in a fixed order.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devsim import blas, parallel

CBLAS = blas.entry_points()
"""This process's BLAS entry points, the ``cblas`` argument of the compiled kernels."""


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


@njit(cache=True, nogil=True)
def column_sums(a, out):
    """``out[k]`` = sum over rows t of a[t, k], summed in row order."""
    out[:] = 0.0
    for t in range(a.shape[0]):
        for k in range(a.shape[1]):
            out[k] += a[t, k]


@njit(cache=True, nogil=True)
def correlate(signal, x, out_w, out_b, cblas):
    """A dense layer's local products: ``out_w`` (n_out, n_in) = signal^T x and ``out_b``
    (n_out,) = the column sums of ``signal`` (T, n_out); ``x`` (T, n_in) C-contiguous."""
    steps, n_out = signal.shape
    transposed = np.empty((n_out, steps))
    for t in range(steps):
        for j in range(n_out):
            transposed[j, t] = signal[t, j]
    blas.matmul(transposed, x, False, out_w, cblas)
    column_sums(signal, out_b)


def local_gradient(signal: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Flat ``[dW.ravel(), db]`` of a dense layer: dW = signal^T x, db = sum_t signal, for
    the node signal (T, n_out) and the layer's inputs x (T, n_in)."""
    n_out, n_in = signal.shape[1], x.shape[1]
    out = np.empty(n_out * (n_in + 1))
    w, b = out[:n_out * n_in].reshape(n_out, n_in), out[n_out * n_in:]
    x = np.ascontiguousarray(x, dtype=np.float64)
    if blas.AVAILABLE:
        correlate(signal, x, w, b, CBLAS)
    else:
        np.matmul(signal.T, x, out=w)
        column_sums(signal, b)
    return out
