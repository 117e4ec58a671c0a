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

from devsim import blas, crng, parallel

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


@njit(cache=True, nogil=True)
def add_zero_weight_perturbation(x, out):
    """:func:`add_weight_perturbation` of all-zero rows, without reading them: each
    row's sum is 0 + sum_i 0 * x[t, i] (+0.0, or NaN where x[t] is not finite), the same
    for every output, and adding it turns -0.0 into +0.0 as the device's pass does."""
    n_probe, n_in = x.shape
    for t in range(n_probe):
        acc = 0.0
        for i in range(n_in):
            acc += 0.0 * x[t, i]
        for j in range(out.shape[1]):
            out[t, j] += acc


@njit(cache=True, nogil=True)
def add_code_perturbation(x, key, counters, offset, amplitude, n_out, out):
    """:func:`add_weight_perturbation` of random sign codes made on the fly: probe t's
    flat [dW_t, db_t] is amplitude * crng.sign(key, counters[t] + offset + k) (none
    where counters[t] < 0).

    The same bits as adding the materialised codes (``amplitude * sign`` times x is
    +-(amplitude x) exactly), without a (probes x parameters) array: MGD on the weights
    of a large layer would otherwise stream hundreds of MB per window. Rows go in fours
    so that four independent sums hide the adder's latency; each sum keeps its order.
    """
    n_probe, n_in = x.shape
    scaled, acc = np.empty(n_in), np.empty(4)
    one = np.uint64(1)
    for t in range(n_probe):
        if counters[t] < 0:
            continue
        first = counters[t] + offset
        for i in range(n_in):
            scaled[i] = amplitude * x[t, i]
        bias_at = first + n_out * n_in
        for j0 in range(0, n_out, 4):
            j1 = min(n_out, j0 + 4)
            for j in range(j0, j1):
                acc[j - j0] = -amplitude if crng.sign_bits(key, bias_at + j) & one else amplitude
            if j1 - j0 == 4:
                _add_signed_rows4(key, first + j0 * n_in, n_in, scaled, acc)
            else:
                for j in range(j0, j1):
                    acc[j - j0] = _add_signed_row(key, first + j * n_in, scaled, acc[j - j0])
            for j in range(j0, j1):
                out[t, j] += acc[j - j0]


@njit(cache=True, nogil=True, inline="always")
def _add_signed_row(key, first, values, acc):
    """acc + sum over i of values[i] signed by crng.sign(key, first + i), in order."""
    n = values.shape[0]
    one = np.uint64(1)
    for i0 in range(0, n, 64):
        word = crng.sign_bits(key, first + i0)
        for i in range(i0, min(n, i0 + 64)):
            acc += -values[i] if (word >> np.uint64(i - i0)) & one else values[i]
    return acc


@njit(cache=True, nogil=True, inline="always")
def _add_signed_rows4(key, first, stride, values, acc):
    """:func:`_add_signed_row` for four rows at once (row r's signs from first + r
    stride), each sum in its own order."""
    n = values.shape[0]
    one = np.uint64(1)
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    for i0 in range(0, n, 64):
        w0 = crng.sign_bits(key, first + i0)
        w1 = crng.sign_bits(key, first + stride + i0)
        w2 = crng.sign_bits(key, first + 2 * stride + i0)
        w3 = crng.sign_bits(key, first + 3 * stride + i0)
        chunk = values[i0:i0 + 64]
        for i in range(chunk.shape[0]):
            b = np.uint64(i)
            v = chunk[i]
            a0 += -v if (w0 >> b) & one else v
            a1 += -v if (w1 >> b) & one else v
            a2 += -v if (w2 >> b) & one else v
            a3 += -v if (w3 >> b) & one else v
    acc[0], acc[1], acc[2], acc[3] = a0, a1, a2, a3


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
