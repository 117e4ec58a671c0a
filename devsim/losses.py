"""Per-probe costs: the scalar the hardware reports for each inference.

Targets are float rows (one-hot for classification), so every loss takes
``(outputs (T, n), targets (T, n))`` and returns ``(T,)`` float64 costs. The costs are
compiled kernels (:func:`mse_rows`, :func:`cross_entropy_rows`, dispatched by
:func:`loss_rows`) that the chip and compiled executors share, each row summed in
order. :func:`loss_gradient_rows` (d cost / d outputs, :func:`loss_gradient` from
Python) serves the reference backpropagation baseline only.
"""
from __future__ import annotations

import numpy as np
from numba import njit

LOSSES = ("mse", "cross_entropy")
"""Loss names; a loss's index here is its code in :func:`loss_rows`."""


@njit(cache=True, nogil=True)
def mse_rows(outputs, targets, costs):
    """``costs[t]`` = mean over j of (outputs[t, j] - targets[t, j])^2."""
    n = outputs.shape[1]
    for t in range(outputs.shape[0]):
        acc = 0.0
        for j in range(n):
            d = np.float64(outputs[t, j]) - targets[t, j]
            acc += d * d
        costs[t] = acc / n


@njit(cache=True, nogil=True)
def cross_entropy_rows(outputs, targets, costs):
    """``costs[t]`` = -sum_j targets[t, j] log softmax(outputs[t])_j."""
    n = outputs.shape[1]
    for t in range(outputs.shape[0]):
        top = np.float64(outputs[t, 0])
        for j in range(1, n):
            top = max(top, np.float64(outputs[t, j]))
        total = 0.0
        for j in range(n):
            total += np.exp(np.float64(outputs[t, j]) - top)
        log_total = np.log(total)
        acc = 0.0
        for j in range(n):
            acc += targets[t, j] * ((np.float64(outputs[t, j]) - top) - log_total)
        costs[t] = -acc


@njit(cache=True, nogil=True)
def loss_rows(code, outputs, targets, costs):
    """Loss ``LOSSES[code]`` of every row into ``costs``."""
    if code == 0:
        mse_rows(outputs, targets, costs)
    else:
        cross_entropy_rows(outputs, targets, costs)


def mse(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean squared error over the outputs of each probe."""
    costs = np.empty(len(outputs))
    mse_rows(outputs, np.ascontiguousarray(targets, dtype=np.float64), costs)
    return costs


def cross_entropy(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Softmax cross-entropy of the outputs (taken as logits) against target rows."""
    costs = np.empty(len(outputs))
    cross_entropy_rows(outputs, np.ascontiguousarray(targets, dtype=np.float64), costs)
    return costs


def loss_function(name: str):
    """The per-probe cost function called ``name``."""
    return {"mse": mse, "cross_entropy": cross_entropy}[name]


@njit(cache=True, nogil=True)
def loss_gradient_rows(code, outputs, targets, out):
    """d cost / d outputs of loss ``LOSSES[code]`` for every row into ``out``: for
    ``mse`` 2 (o - y) / n, for ``cross_entropy`` softmax(o) sum(y) - y."""
    n = outputs.shape[1]
    for t in range(outputs.shape[0]):
        if code == 0:
            for j in range(n):
                out[t, j] = 2.0 * (outputs[t, j] - targets[t, j]) / n
            continue
        top = outputs[t, 0]
        for j in range(1, n):
            top = max(top, outputs[t, j])
        total, mass = 0.0, 0.0
        for j in range(n):
            total += np.exp(outputs[t, j] - top)
            mass += targets[t, j]
        log_total = np.log(total)
        for j in range(n):
            out[t, j] = np.exp((outputs[t, j] - top) - log_total) * mass - targets[t, j]


def loss_gradient(name: str, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """d cost / d outputs for each probe (reference baseline only)."""
    out = np.empty(outputs.shape)
    loss_gradient_rows(LOSSES.index(name), np.ascontiguousarray(outputs, dtype=np.float64),
                       np.ascontiguousarray(targets, dtype=np.float64), out)
    return out
