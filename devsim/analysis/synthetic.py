"""The synthetic set-up of Mohan et al. (NIPS 2012, JMLR 2014): two sparse precision
matrices that differ in the whole rows and columns of a few perturbed nodes."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["PerturbedPair", "perturbed_pair", "sample"]


class PerturbedPair(NamedTuple):
    """Two true precision matrices and the nodes whose rows and columns differ."""

    theta1: np.ndarray
    theta2: np.ndarray
    perturbed: np.ndarray


def _random_entries(rng: np.random.Generator, shape, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, size=shape) * rng.choice((-1.0, 1.0), size=shape)


def perturbed_pair(p: int, n_perturbed: int, rng: np.random.Generator, *,
                   density: float = 0.1, low: float = 0.3, high: float = 0.6,
                   row_density: float = 1.0) -> PerturbedPair:
    """A base network with a fraction ``density`` of non-zero off-diagonal entries
    drawn from U[low, high] with random signs (condition 2), and a copy whose
    ``n_perturbed`` randomly chosen nodes have their rows and columns redrawn the same
    way, each entry non-zero with probability ``row_density`` (condition 1). Both are
    symmetric and get the same (|lambda_min| + 0.1) I added, lambda_min the smaller of
    their least eigenvalues, so they differ only in the perturbed rows and columns."""
    if not 0 <= n_perturbed <= p:
        raise ValueError(f"n_perturbed must be in [0, {p}], got {n_perturbed}")
    upper = np.triu(_random_entries(rng, (p, p), low, high)
                    * (rng.random((p, p)) < density), k=1)
    base = upper + upper.T
    nodes = np.sort(rng.choice(p, size=n_perturbed, replace=False))
    changed = base.copy()
    for j in nodes:
        row = _random_entries(rng, p, low, high) * (rng.random(p) < row_density)
        row[j] = 0.0
        changed[j, :] = row
        changed[:, j] = row
    least = min(np.linalg.eigvalsh(base)[0], np.linalg.eigvalsh(changed)[0])
    shift = (abs(least) + 0.1) * np.eye(p)
    return PerturbedPair(changed + shift, base + shift, nodes)


def sample(theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws (n, p) from N(0, theta^-1)."""
    chol = np.linalg.cholesky(np.linalg.inv(theta))
    return rng.standard_normal((n, len(theta))) @ chol.T
