"""Input decorrelation: the controller's local rule for the matrices R in front of each layer.

With ``network.decorrelation: true`` every layer sees R_l x instead of its input x
(R_l starts as the identity; on a chip it is another crossbar). After each batch the
controller moves R_l by the rule of Ahmad et al. used in DNP/DANP (Dalm, van Gerven,
Ahmad, arXiv 2310.00965) and by Koenders et al. (arXiv 2412.12783):

    R_l <- R_l - alpha * offdiag(<z z^T>) R_l,     z = R_l x  (the layer's measured input)

where ``<.>`` is the mean over the batch and ``offdiag`` zeroes the diagonal. Its fixed
points have ``<z_i z_j> = 0`` for i != j: decorrelated inputs, which make the node
perturbation estimates less noisy (their variance grows with input correlations). The
rule uses only the layer's inputs and R itself, not the cost.

Its products go through :func:`decorrelation_delta`, a compiled kernel on NumPy's own
BLAS that the compiled executors (:mod:`trainer.compiled_kernels`) call too, so a
window gives the same bits either way (NumPy's ``z.T @ z`` may take another BLAS
routine, whose sums round differently).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devsim import blas
from devsim.dense import CBLAS, correlate
from devsim.hardware import Hardware
from devsim.params import ParamError


def offdiagonal_correlation(z: np.ndarray) -> np.ndarray:
    """``<z z^T>`` over the rows of ``z`` (B, n) with the diagonal set to zero."""
    c = z.T @ z / z.shape[0]
    np.fill_diagonal(c, 0.0)
    return c


@njit(cache=True, nogil=True)
def decorrelation_delta(z, r, lr, out, cblas):
    """``out`` = -lr offdiag(<z z^T>) R for one layer: its inputs ``z`` (B, n)
    C-contiguous, R (n, n); ``cblas`` from :func:`devsim.blas.entry_points`. The same
    roundings as :func:`offdiagonal_correlation` scaled by -lr, then times R, with each
    product's sums in BLAS's order for its shape."""
    batch, n = z.shape
    correlation = np.empty((n, n))
    correlate(z, z, correlation, np.empty(n), cblas)  # z^T z (and column sums, unused)
    for i in range(n):
        for j in range(n):
            correlation[i, j] = -lr * (correlation[i, j] / batch if i != j else 0.0)
    blas.matmul(correlation, r, False, out, cblas)


def decorrelation_deltas(inputs: list[np.ndarray], matrices: list[np.ndarray],
                         lr: float) -> list[np.ndarray]:
    """The changes ``-lr offdiag(<z z^T>) R`` of each layer's R from its measured inputs z."""
    if not blas.AVAILABLE:
        return [-lr * offdiagonal_correlation(z) @ r
                for z, r in zip(inputs, matrices, strict=True)]
    deltas = []
    for z, r in zip(inputs, matrices, strict=True):
        deltas.append(np.empty_like(r))
        decorrelation_delta(np.ascontiguousarray(z, dtype=np.float64),
                            np.ascontiguousarray(r, dtype=np.float64), lr, deltas[-1], CBLAS)
    return deltas


def decorrelate(hardware: Hardware, inputs: list[np.ndarray], lr: float) -> None:
    """Apply one step of the rule to every layer's R (nothing when ``lr`` is 0)."""
    if lr > 0.0:
        hardware.write_decorrelation(
            decorrelation_deltas(inputs, hardware.read_decorrelation(), lr))


def check_decorrelation(hardware: Hardware, lr: float) -> None:
    """Reject a decorrelation rate for a chip that has no R matrices."""
    if lr > 0.0 and not hardware.capabilities.decorrelation:
        raise ParamError(("decorrelation_lr",),
                         "needs decorrelation matrices on the chip (network.decorrelation: true)")
