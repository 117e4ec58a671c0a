"""Neuron non-linearities, including the MGD logistic with neuron-to-neuron variation.

Each activation is a parameter class (YAML ``activation: {type: ...}`` or just the
name) that builds a callable for a layer of ``n`` neurons. ``derivative`` serves the
reference backpropagation baseline only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devsim.params import Params, param


@dataclass(frozen=True)
class ActivationParams(Params, family="activation"):
    """Base of the activation functions; select one with ``type:``."""

    def build(self, n: int, rng: np.random.Generator) -> "Activation":
        return Activation(self._f, self._df)

    @staticmethod
    def _f(z):
        raise NotImplementedError

    @staticmethod
    def _df(z):
        raise NotImplementedError


class Activation:
    """A built activation: ``act(z)`` and ``act.derivative(z)`` over (T, n) arrays."""

    def __init__(self, f, df):
        self._f, self._df = f, df

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self._f(z)

    def derivative(self, z: np.ndarray) -> np.ndarray:
        return self._df(z)


def _sigmoid(z):
    """The logistic 1 / (1 + exp(-z)) in the dtype of ``z``, with one allocation (fresh
    arrays cost page faults at large batches); NumPy's SIMD exp makes this 2-3x faster
    than the tanh form. exp(-z) overflows to inf for very negative z, giving exactly 0."""
    with np.errstate(over="ignore"):
        s = np.negative(z)
        np.exp(s, out=s)
    s += 1.0
    np.reciprocal(s, out=s)
    return s


@dataclass(frozen=True)
class Sigmoid(ActivationParams, kind="sigmoid"):
    """The logistic function 1 / (1 + exp(-z))."""

    _f = staticmethod(_sigmoid)

    @staticmethod
    def _df(z):
        s = _sigmoid(z)
        return s * (1.0 - s)


@dataclass(frozen=True)
class Tanh(ActivationParams, kind="tanh"):
    """The hyperbolic tangent."""

    _f = staticmethod(np.tanh)

    @staticmethod
    def _df(z):
        return 1.0 - np.tanh(z) ** 2


@dataclass(frozen=True)
class Identity(ActivationParams, kind="identity"):
    """No non-linearity (a linear layer)."""

    @staticmethod
    def _f(z):
        return z

    @staticmethod
    def _df(z):
        return np.ones_like(z)


@dataclass(frozen=True)
class ReLU(ActivationParams, kind="relu"):
    """max(z, 0)."""

    @staticmethod
    def _f(z):
        return np.maximum(z, 0.0)

    @staticmethod
    def _df(z):
        return (z > 0).astype(z.dtype)


@dataclass(frozen=True)
class LeakyReLU(ActivationParams, kind="leaky_relu"):
    """z for z > 0, slope * z otherwise."""

    slope: float = param(0.01, ge=0.0, le=1.0)
    """Slope for negative inputs."""

    def build(self, n, rng):
        a = self.slope
        return Activation(lambda z: np.where(z > 0, z, a * z),
                          lambda z: np.where(z > 0, 1.0, a))


@dataclass(frozen=True)
class Logistic(ActivationParams, kind="logistic"):
    """The MGD neuron L / (1 + exp(-k (z - x0))) + y0, each parameter varying per neuron.

    Every neuron draws its own L, k, x0, y0 once, from a Gaussian with the given mean
    and ``*_spread`` standard deviation: the neuron-to-neuron variation of McCaughan
    et al. (2023).
    """

    L: float = 1.0
    """Output swing (mean over neurons)."""
    k: float = 1.0
    """Gain (mean over neurons)."""
    x0: float = 0.0
    """Input offset (mean over neurons)."""
    y0: float = 0.0
    """Output offset (mean over neurons)."""
    L_spread: float = param(0.0, ge=0.0)
    """Standard deviation of L across neurons."""
    k_spread: float = param(0.0, ge=0.0)
    """Standard deviation of k across neurons."""
    x0_spread: float = param(0.0, ge=0.0)
    """Standard deviation of x0 across neurons."""
    y0_spread: float = param(0.0, ge=0.0)
    """Standard deviation of y0 across neurons."""

    def build(self, n, rng):
        L, k, x0, y0 = (m + s * rng.standard_normal(n) for m, s in (
            (self.L, self.L_spread), (self.k, self.k_spread),
            (self.x0, self.x0_spread), (self.y0, self.y0_spread)))

        def f(z):
            return L * _sigmoid(k * (z - x0)) + y0

        def df(z):
            s = _sigmoid(k * (z - x0))
            return L * k * s * (1.0 - s)

        return Activation(f, df)
