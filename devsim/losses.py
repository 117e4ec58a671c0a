"""Per-probe costs: the scalar the hardware reports for each inference.

Targets are float rows (one-hot for classification), so every loss takes
``(outputs (T, n), targets (T, n))`` and returns ``(T,)`` costs. ``gradient``
(d cost / d outputs) serves the reference backpropagation baseline only.
"""
from __future__ import annotations

import numpy as np

LOSSES = ("mse", "cross_entropy")


def mse(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean squared error over the outputs of each probe."""
    d = outputs - targets
    return np.einsum("ti,ti->t", d, d) / outputs.shape[1]


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def cross_entropy(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Softmax cross-entropy of the outputs (taken as logits) against target rows."""
    return -np.einsum("ti,ti->t", targets, _log_softmax(outputs))


def loss_function(name: str):
    """The per-probe cost function called ``name``."""
    return {"mse": mse, "cross_entropy": cross_entropy}[name]


def loss_gradient(name: str, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """d cost / d outputs for each probe (reference baseline only)."""
    if name == "mse":
        return 2.0 * (outputs - targets) / outputs.shape[1]
    p = np.exp(_log_softmax(outputs))
    return p * targets.sum(axis=1, keepdims=True) - targets
