"""The trainer's reductions as compiled kernels, shared by every executor.

The plain ask/tell loop calls these from Python and the compiled executor
(:mod:`trainer.compiled`) from its own kernels, so both make the same roundings and a
window gives the same bits either way. Each sums in a fixed order (NumPy's sums and
norms pick theirs by array size and CPU). The synapses' local products are the chip's
(:func:`devsim.dense.correlate` for dense layers).
"""
from __future__ import annotations

import numpy as np
from numba import njit


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
def weighted_rows(a, weights, out):
    """``out[k]`` = sum over rows t of weights[t] * a[t, k], summed in row order."""
    out[:] = 0.0
    for t in range(a.shape[0]):
        w = weights[t]
        for k in range(a.shape[1]):
            out[k] += w * a[t, k]
