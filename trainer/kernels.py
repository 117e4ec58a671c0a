"""The trainer's arithmetic as compiled kernels, shared by every executor.

The plain ask/tell loop calls these from Python and the compiled executor
(:mod:`trainer.compiled`) from its own kernels, so both make the same roundings and a
window gives the same bits either way. Reductions run in a fixed order (NumPy's sums
and norms pick theirs by array size and CPU); the products of :func:`correlate` are
NumPy's own BLAS (:mod:`devsim.blas`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devsim import blas

CBLAS = blas.entry_points()
"""This process's BLAS entry points, the ``cblas`` argument of :func:`correlate`."""


@njit(cache=True, nogil=True)
def norm(v):
    """The Euclidean norm of a 1-D array, summed in order (inf where it overflows)."""
    acc = 0.0
    for i in range(v.shape[0]):
        acc += v[i] * v[i]
    return np.sqrt(acc)


@njit(cache=True, nogil=True)
def mean(v):
    """The mean of a 1-D array, summed in order."""
    acc = 0.0
    for i in range(v.shape[0]):
        acc += v[i]
    return acc / v.shape[0]


@njit(cache=True, nogil=True)
def row_squares(a, out):
    """``out[t]`` = sum over k of a[t, k]^2, summed in order."""
    for t in range(a.shape[0]):
        acc = 0.0
        for k in range(a.shape[1]):
            acc += a[t, k] * a[t, k]
        out[t] = acc


@njit(cache=True, nogil=True)
def column_sums(a, out):
    """``out[k]`` = sum over rows t of a[t, k], summed in row order."""
    out[:] = 0.0
    for t in range(a.shape[0]):
        for k in range(a.shape[1]):
            out[k] += a[t, k]


@njit(cache=True, nogil=True)
def correlate(signal, x, out_w, out_b, cblas):
    """One layer's local estimate: ``out_w`` (n_out, n_in) = signal^T x and ``out_b``
    (n_out,) = the column sums of ``signal`` (T, n_out); ``x`` (T, n_in) C-contiguous."""
    steps, n_out = signal.shape
    transposed = np.empty((n_out, steps))
    for t in range(steps):
        for j in range(n_out):
            transposed[j, t] = signal[t, j]
    blas.matmul(transposed, x, False, out_w, cblas)
    column_sums(signal, out_b)


def layer_gradient(offsets: np.ndarray, node_signal: np.ndarray,
                   inputs: list[np.ndarray]) -> np.ndarray:
    """Each synapse's local estimate from its node's signal and its own input.

    For every layer: dW = node_signal_l^T @ x_l, db = sum_t node_signal_l; the
    sum over the window's steps of (node estimate) x (presynaptic input); ``offsets``
    are the chip's node offsets.
    """
    sizes = [(offsets[i + 1] - offsets[i]) * (x.shape[1] + 1) for i, x in enumerate(inputs)]
    out = np.empty(sum(sizes))
    at = 0
    for i, x in enumerate(inputs):
        n_out, n_in = offsets[i + 1] - offsets[i], x.shape[1]
        signal = node_signal[:, offsets[i]:offsets[i + 1]]
        w = out[at:at + n_out * n_in].reshape(n_out, n_in)
        b = out[at + n_out * n_in:at + sizes[i]]
        if blas.AVAILABLE:
            correlate(signal, np.ascontiguousarray(x, dtype=np.float64), w, b, CBLAS)
        else:
            np.matmul(signal.T, x, out=w)
            column_sums(signal, b)
        at += sizes[i]
    return out
